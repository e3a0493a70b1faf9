"""PyTorch → ONNX, then checked: the full checker, strict shape inference, and no BatchNormalization left."""

from __future__ import annotations

import collections
import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from rbench._io import write_bytes_atomic
from rbench.errors import BadInputError, first_line


@dataclass(frozen=True)
class ExportConfig:
    """How to write the ONNX graph.

    Opset 17 is served by torch's TorchScript-based exporter: the dynamo exporter emits opset 18 at least, and its
    down-conversion of ResNet's Reduce ops to 17 fails.
    """

    opset: int = 17
    dynamic_batch: bool = True
    simplify: bool = False
    input_name: str = "input"
    output_name: str = "logits"


#: Opsets this exporter writes: per-channel Q/DQ needs 13, and torch's TorchScript-based exporter stops at 20.
MIN_OPSET, MAX_OPSET = 13, 20


def validate_export_config(config: ExportConfig) -> None:
    """Refuse settings the exporter cannot honour, before any model is built."""
    if not MIN_OPSET <= config.opset <= MAX_OPSET:
        raise BadInputError(f"--opset {config.opset} is not supported; choose {MIN_OPSET} to {MAX_OPSET}")


def export_onnx(
    module: nn.Module, input_shape: tuple[int, ...], config: ExportConfig = ExportConfig()
) -> onnx.ModelProto:
    """Export an eval-mode module and return the checked model (nothing is written to disk)."""
    names = [config.input_name, config.output_name]
    dynamic_axes = {name: {0: "batch"} for name in names} if config.dynamic_batch else None
    validate_export_config(config)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module.eval(),
            (torch.zeros(1, *input_shape),),
            buffer,
            input_names=[config.input_name],
            output_names=[config.output_name],
            dynamic_axes=dynamic_axes,
            opset_version=config.opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    if config.simplify:
        model = simplify(model)
    model = check_model(model)
    remaining = op_histogram(model).get("BatchNormalization", 0)
    if remaining:
        raise RuntimeError(f"export left {remaining} BatchNormalization node(s) in the graph; folding failed")
    return model


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and dead-node elimination with onnxslim."""
    import onnxslim

    return onnxslim.slim(model)


def check_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """``onnx.checker`` with ``full_check`` and strict, type-checked shape inference; returns the inferred model."""
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    write_bytes_atomic(path, model.SerializeToString())


def load_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load and check an ONNX file; a missing, empty, truncated or garbage file is a ``BadInputError``."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"ONNX model not found: {path}")
    if path.stat().st_size == 0:
        raise BadInputError(f"ONNX model {path} is empty")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError and friends
        first = first_line(exc)
        raise BadInputError(f"{path} is not a valid ONNX model: {first}") from None
    if not model.graph.node:
        raise BadInputError(f"{path} is not a valid ONNX model: its graph has no nodes")
    return model


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type, most frequent first."""
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())
