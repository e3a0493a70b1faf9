"""OpenVINO's own INT8: NNCF's post-training quantization of the FP32 model, saved as OpenVINO IR in the artifact.

``nncf.quantize`` on the OpenVINO model read from the artifact's FP32 ONNX, calibrated on the same images as the
portable INT8 graph, with the performance preset (symmetric weights and activations) and the classifier and first
convolution kept in FP32 (``rbench.export.converters``, measured). The IR is ``model.int8-nncf.xml`` with its
weights in ``model.int8-nncf.bin`` beside it.
"""

from __future__ import annotations

import collections
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from rbench.errors import missing_dependency
from rbench.export.precision import quiet
from rbench.progress import Progress


def nncf_quantize(fp32_path: Path, data: np.ndarray, settings: Any, input_name: str, progress: Progress) -> Any:
    """The NNCF-quantized OpenVINO model of the FP32 ONNX at ``fp32_path``, calibrated on ``data`` (NCHW float32)."""
    if importlib.util.find_spec("nncf") is None:
        raise missing_dependency("nncf", "nncf")
    import nncf
    import openvino as ov

    progress.step(f"quantizing with NNCF ({settings.preset} preset, {len(data)} images from {settings.calibration})")
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    model = ov.Core().read_model(str(fp32_path))
    dataset = nncf.Dataset([{input_name: data[i : i + 1]} for i in range(len(data))])
    convolutions = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    kept = nncf.IgnoredScope(
        types=list(settings.keep_fp32_ops), names=convolutions[:1] if settings.keep_first_conv else [], validate=False
    )
    with quiet("nncf"):
        return nncf.quantize(model, dataset, preset=presets[settings.preset], subset_size=len(data), ignored_scope=kept)


def save_ir(model: Any, path: Path) -> None:
    """``path`` (``.xml``) and its ``.bin`` beside it (the export writes into a temporary artifact folder that is
    renamed into place whole, so neither is ever seen half-written)."""
    import openvino as ov

    ov.save_model(model, str(path), compress_to_fp16=False)


def ir_histogram(path: Path) -> dict[str, int]:
    """Op count per type of an IR, most frequent first (as the ONNX files' ``ops``)."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    return dict(collections.Counter(op.get_type_name() for op in model.get_ordered_ops()).most_common())
