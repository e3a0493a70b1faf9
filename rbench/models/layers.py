"""One set of layer names for every backend: the PyTorch module path.

Every per-layer tool names layers its own way: ONNX node names (``/layer1/layer1.0/conv1/Conv``), the Q/DQ nodes a
quantizer adds (``/layer1/layer1.0/relu/Relu_output_0_QuantizeLinear``, ``layer1.0.conv1.weight_DequantizeLinear``),
OpenVINO's fused executable nodes, ``torch.profiler``'s module scopes. ``module_of`` reads any of them back to the
module that made it (``layer1.0.conv1``), and ``stage_of``/``block_of`` roll a module up to the stem, ``layer1`` to
``layer4`` and the head, or to its residual block.
"""

from __future__ import annotations

import re
from collections.abc import Collection

#: Stages in network order; a module outside every ``layerN`` is the stem before them or the head after them.
STEM, HEAD = "stem", "head"
_HEAD_MODULES = ("avgpool", "fc", "flatten", "classifier")
_CALL_SUFFIX = re.compile(r"_\d+$")  # the exporter's name for a module's second call: relu_1


def module_of(name: str, modules: Collection[str]) -> str:
    """The module path in ``modules`` that the layer called ``name`` belongs to; ``""`` for the root module.

    ``/layer1/layer1.0/relu_1/Relu`` → ``layer1.0.relu``; ``layer1.0.conv1.weight_DequantizeLinear`` →
    ``layer1.0.conv1``; a name no module matches → ``""``.
    """
    if "_/" in name:  # OpenVINO's Reorder between two layers, named by both: the layer it feeds
        name = name[name.rindex("_/") + 1 :]
    if name.startswith("/"):
        path = ""
        for segment in name.strip("/").split("/")[:-1]:  # the last segment is the op
            candidate = _join(path, segment)
            parent, _, child = segment.partition(".")  # a container's child: /layer1/layer1.0/, /downsample.0/
            if child and (path == parent or path.endswith("." + parent)):
                candidate = _join(path, child)
            if candidate not in modules:
                candidate = _join(path, _CALL_SUFFIX.sub("", segment))
            if candidate not in modules:
                break
            path = candidate
        return path
    # an initializer's or a tensor's name: the longest module path it starts with
    best = ""
    for module in modules:
        if len(module) > len(best) and (name == module or name.startswith(module + ".")):
            best = module
    return best


def stage_of(module: str, position: str = "") -> str:
    """``layer1``..``layerN``, ``stem`` or ``head``. A root-level op (``module == ""``) is placed by ``position``,
    ``"before"`` or ``"after"`` the residual stages (``head`` when unknown)."""
    top = module.split(".", 1)[0]
    if re.fullmatch(r"layer\d+", top):
        return top
    if not module:
        return STEM if position == "before" else HEAD
    return HEAD if top in _HEAD_MODULES else STEM


def block_of(module: str, position: str = "") -> str:
    """The residual block (``layer1.0``) a module belongs to, or its stage outside the blocks."""
    parts = module.split(".")
    if len(parts) >= 2 and re.fullmatch(r"layer\d+", parts[0]):
        return ".".join(parts[:2])
    return stage_of(module, position)


def stage_order(stages: Collection[str]) -> list[str]:
    """Stages in network order: stem, layer1..layerN, head (anything else, "not attributed" say, is left out)."""
    layers = sorted((s for s in stages if re.fullmatch(r"layer\d+", s)), key=lambda s: int(s[len("layer") :]))
    return [s for s in (STEM, *layers, HEAD) if s in stages]


def _join(path: str, segment: str) -> str:
    return f"{path}.{segment}" if path else segment
