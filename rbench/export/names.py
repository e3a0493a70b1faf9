"""The node → PyTorch module map of an artifact's files, recorded in the manifest (``"modules"`` of each precision).

The exporter names ONNX nodes by module scope (``/layer1/layer1.0/conv1/Conv``), and FP16 conversion and both
quantizers keep those names, so each file's nodes read back to their modules (``rbench.models.layers.module_of``).
A quantizer's Q/DQ node, or a Cast, belongs to the layer that consumes its output: the activation quantized in front of
``layer1.0.conv1`` is that convolution's cost.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import onnx

from rbench.models.layers import module_of

#: Nodes a precision conversion adds in front of a layer; each is attributed to the layer it feeds.
CONVERSION_OPS = ("QuantizeLinear", "DequantizeLinear", "Cast", "FakeQuantize", "Convert")


def onnx_modules(model: onnx.ModelProto, modules: Collection[str]) -> dict[str, str]:
    """Every node name of ``model`` → its module path (``""``: the root module, e.g. ``/Flatten``)."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    own = {n.name: module_of(n.name, modules) for n in nodes}
    found: dict[str, str] = {}

    def resolve(node: onnx.NodeProto, depth: int = 0) -> str:
        if node.op_type not in CONVERSION_OPS or depth > 8:
            return own[node.name]
        if node.name in found:
            return found[node.name]
        after = [c for out in node.output for c in consumers.get(out, [])]
        found[node.name] = resolve(after[0], depth + 1) if after else own[node.name]
        return found[node.name]

    return {n.name: resolve(n) for n in nodes}


def ir_modules(path: Path, modules: Collection[str]) -> dict[str, str]:
    """Every op of an OpenVINO IR (its friendly names keep the ONNX node names) → its module path."""
    import openvino as ov

    ops = ov.Core().read_model(str(path)).get_ordered_ops()
    return {op.get_friendly_name(): module_of(op.get_friendly_name(), modules) for op in ops}


def file_modules(path: Path, modules: Collection[str]) -> dict[str, str]:
    """The node → module map of one artifact file, ONNX or OpenVINO IR."""
    if path.suffix == ".xml":
        return ir_modules(path, modules)
    return onnx_modules(onnx.load(str(path), load_external_data=False), modules)
