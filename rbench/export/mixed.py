"""Layers of a reduced-precision ONNX graph put back in FP32: the graph surgery behind ``rbench debug precision``.

A *layer* is one compute node of the folded FP32 graph (Conv, Gemm, MatMul, Add, pooling) and the ReLU that alone
reads its output (TensorRT, OpenVINO and ONNX Runtime fuse the two). The FP16 converter and both quantizers keep
node names, so each layer is found by name in the reduced graph.

Keeping a layer in FP32 (``keep_fp32``) changes only the graph, which stays typed throughout:

- **INT8 (QDQ):** the layer reads exact inputs (the FP32 tensors before their QuantizeLinear) and FP32 weights and
  bias (copied from the FP32 graph), and its output reaches its consumers without Q/DQ. A strongly typed TensorRT
  builds such a layer in FP32, and ONNX Runtime and OpenVINO run it as a float layer.
- **FP16:** the layer computes in FP32 on FP32 weights, its inputs cast up where they arrive in FP16, and its
  output stays FP32; a consumer of that output computes in FP32 too and casts its own output back to FP16, so a
  value FP16 cannot hold (above 65504) never has to be stored in FP16.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

#: Node types that start a layer; a ReLU that alone reads one's output joins it.
LAYER_OPS = ("Conv", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool", "GlobalAveragePool")
_F32, _F16 = TensorProto.FLOAT, TensorProto.FLOAT16
_FP32 = "fp32/"  # prefix of FP32 copies (initializers, casts) added to a reduced graph


@dataclass(frozen=True)
class Layer:
    """One layer: its nodes (first the compute node), and the FP32 graph's tensor it outputs."""

    name: str  # the compute node's name
    op: str
    nodes: tuple[str, ...]
    output: str  # the FP32 graph's name of the layer's output
    inputs: tuple[str, ...]  # the FP32 graph's activation tensors it reads


def layers(fp32: onnx.ModelProto) -> list[Layer]:
    """The layers of an FP32 graph, in graph (topological) order."""
    inits = {i.name for i in fp32.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in fp32.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    for node in fp32.graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        nodes, output = [node.name], node.output[0]
        after = consumers.get(output, [])
        if len(after) == 1 and after[0].op_type == "Relu":
            nodes.append(after[0].name)
            output = after[0].output[0]
        inputs = tuple(i for i in node.input if i and i not in inits)
        found.append(Layer(node.name, node.op_type, tuple(nodes), output, inputs))
    return found


def kind_of(reduced: onnx.ModelProto) -> str:
    """``int8`` for a QDQ graph, ``fp16`` for a graph with FP16 weights."""
    if any(n.op_type == "QuantizeLinear" for n in reduced.graph.node):
        return "int8"
    if any(i.data_type == TensorProto.FLOAT16 for i in reduced.graph.initializer):
        return "fp16"
    raise ValueError("neither a QDQ (INT8) graph nor an FP16 graph: nothing to keep in FP32")


def keep_fp32(reduced: onnx.ModelProto, fp32: onnx.ModelProto, kept: Iterable[Layer]) -> onnx.ModelProto:
    """A copy of ``reduced`` with the ``kept`` layers in FP32 (module docstring)."""
    kept_nodes = {name for layer in kept for name in layer.nodes}
    out = onnx.ModelProto()
    out.CopyFrom(reduced)
    if not kept_nodes:
        return out
    f_nodes = {n.name: n for n in fp32.graph.node}
    present = {n.name for n in out.graph.node}
    # ReLUs the quantizer absorbed into the uint8 QuantizeLinear after their compute node (zero-point 0 clips as
    # ReLU does), by their FP32 output: a kept layer that reads or writes one gets the ReLU back, in FP32
    absorbed = {n.output[0]: n for n in fp32.graph.node if n.op_type == "Relu" and n.name not in present}
    missing = kept_nodes - present - {n.name for n in absorbed.values()}
    if missing:
        raise ValueError(f"the reduced graph has no node {sorted(missing)[0]!r}: not made from this FP32 graph")
    f_inits = {i.name: i for i in fp32.graph.initializer}
    # the reduced graph's name of each FP32 tensor: by producing node and output index (FP16 renames a few)
    r_nodes = {n.name: n for n in out.graph.node}
    renamed = {}
    for fn in fp32.graph.node:
        if fn.name in r_nodes:
            renamed.update(zip(fn.output, r_nodes[fn.name].output, strict=False))
    producer = {o: n for n in out.graph.node for o in n.output}
    added: dict[str, onnx.TensorProto] = {}
    relus: dict[str, onnx.NodeProto] = {}

    def with_relu(name: str) -> str:
        """The tensor of an absorbed ReLU's FP32 output ``name``: the ReLU put back on its compute node's output."""
        if name not in relus:
            relu = onnx.NodeProto()
            relu.CopyFrom(absorbed[name])
            relu.input[:] = [renamed.get(relu.input[0], relu.input[0])]
            relu.output[:] = [_FP32 + name]  # the quantizer may have given ``name`` to the compute node's output
            relus[name] = relu
        return relus[name].output[0]

    def exact_inputs(name: str) -> list[str]:
        """The kept node's inputs as the FP32 graph has them: its initializers copied in FP32."""
        inputs = []
        for i in f_nodes[name].input:
            if i in f_inits:
                copy = onnx.TensorProto()
                copy.CopyFrom(f_inits[i])
                copy.name = _FP32 + i
                added[copy.name] = copy
                inputs.append(copy.name)
            else:
                inputs.append(with_relu(i) if i in absorbed else renamed.get(i, i))
        return inputs

    if kind_of(reduced) == "int8":
        outputs = {  # a kept layer's output as its consumers must read it
            renamed.get(f_nodes[layer.name].output[0], ""): with_relu(layer.output)
            for layer in kept
            if layer.output in absorbed
        }
        nodes = _keep_int8(out, kept_nodes, exact_inputs, producer, outputs)
    else:
        nodes = _keep_fp16(out, kept_nodes, exact_inputs, producer)
    del out.graph.node[:]
    for node in nodes:
        out.graph.node.append(node)
        out.graph.node.extend(r for r in relus.values() if r.input[0] in node.output)
    out.graph.initializer.extend(added.values())
    del out.graph.value_info[:]  # types changed; ONNX Runtime and OpenVINO infer them again
    _prune(out)
    return out


def _keep_int8(out: onnx.ModelProto, kept: set[str], exact_inputs, producer, outputs: dict[str, str]) -> list:
    nodes = list(out.graph.node)
    for node in nodes:
        if node.name in kept:
            node.input[:] = exact_inputs(node.name)
    # a kept layer's output reaches every consumer without Q/DQ
    bypass = {}
    for q in (n for n in nodes if n.op_type == "QuantizeLinear"):
        source = producer.get(q.input[0])
        if source is not None and source.name in kept:
            bypass[q.output[0]] = outputs.get(q.input[0], q.input[0])
    bypass = {
        dq.output[0]: bypass[dq.input[0]] for dq in nodes if dq.op_type == "DequantizeLinear" and dq.input[0] in bypass
    }
    for node in nodes:
        node.input[:] = [bypass.get(i, i) for i in node.input]
    return nodes


def _keep_fp16(out: onnx.ModelProto, kept: set[str], exact_inputs, producer) -> list[onnx.NodeProto]:
    fp32_out = {o for n in out.graph.node if n.name in kept for o in n.output}
    graph_inputs = {i.name for i in out.graph.input}
    promoted = {
        n.name
        for n in out.graph.node
        if n.name not in kept and n.op_type != "Cast" and any(i in fp32_out for i in n.input)
    }
    types = _types(out)
    nodes: list[onnx.NodeProto] = []
    as_fp32 = {name: name for name in fp32_out | graph_inputs}  # each tensor's FP32 version, once there is one
    for node in out.graph.node:
        if node.name not in kept and node.name not in promoted:
            nodes.append(node)
            continue
        inputs = exact_inputs(node.name)
        for k, name in enumerate(inputs):
            if name.startswith(_FP32) or (name not in as_fp32 and types.get(name) != _F16):
                continue
            if name not in as_fp32:
                as_fp32[name] = _FP32 + name
                nodes.append(helper.make_node("Cast", [name], [_FP32 + name], name=_FP32 + name + "/Cast", to=_F32))
            inputs[k] = as_fp32[name]
        node.input[:] = inputs
        nodes.append(node)
        if node.name in promoted:  # computes in FP32, hands its consumers FP16 as before
            for k, name in enumerate(list(node.output)):
                if types.get(name) != _F16:
                    continue
                node.output[k] = as_fp32[name] = _FP32 + name
                nodes.append(helper.make_node("Cast", [_FP32 + name], [name], name=name + "/Cast", to=_F16))
    return nodes


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Each tensor's element type, by ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model).graph
    values = [*inferred.value_info, *inferred.input, *inferred.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({i.name: i.data_type for i in inferred.initializer})
    return types


def _prune(model: onnx.ModelProto) -> None:
    """Remove nodes nothing reads (the Q/DQ and casts a kept layer no longer uses) and unused initializers."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def with_outputs(model: onnx.ModelProto, names: Collection[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the tensors ``names`` (any type: ONNX Runtime infers them)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    out.graph.output.extend(helper.ValueInfoProto(name=n) for n in names if n not in have)
    return out


def reduced_name(reduced: onnx.ModelProto, fp32: onnx.ModelProto, tensor: str) -> str:
    """The reduced graph's name of an FP32 graph tensor (the same, except where FP16 conversion renamed an output)."""
    r_nodes = {n.name: n for n in reduced.graph.node}
    for fn in fp32.graph.node:
        if tensor in fn.output and fn.name in r_nodes:
            return r_nodes[fn.name].output[list(fn.output).index(tensor)]
    return tensor
