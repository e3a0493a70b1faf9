"""FP16 and INT8 (QDQ) variants of an artifact's folded FP32 ONNX model.

Precision lives in the ONNX graph, so every backend (ONNX Runtime on CPU, CUDA or TensorRT, and TensorRT's
strongly-typed builder) runs the same graph, and all of it is parity-tested on a CPU.

- FP16: onnxconverter-common's ``convert_float_to_float16`` (what Polygraphy's ``--fp-to-fp16`` uses), inputs and
  outputs kept in FP32 by default.
- INT8: ONNX Runtime's static quantization to QDQ, per-channel symmetric weights and symmetric activations
  (zero-point 0, which TensorRT's ONNX parser requires), calibrated on real images. Calibration ranges are cached
  under a key made of the model's and the data's SHA-256 and the settings, so a change to either recalibrates.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from rbench._io import sha256_bytes, sha256_file, write_json_atomic
from rbench.errors import BadInputError

if TYPE_CHECKING:
    from rbench.export.artifact import Artifact

#: Ops kept in FP32 in the FP16 graph. Empty by measurement: on the default ResNet-50 the worst cosine on the photos is
#: 0.9999964 with none and 0.9999963 to 0.9999965 with GlobalAveragePool, Gemm, Add or all three blocked, while
#: blocking Add adds 48 Cast nodes.
FP16_FP32_OPS: tuple[str, ...] = ()
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: Ops left unquantized in the INT8 graph. The classifier (Gemm) stays FP32: its input, the pooled features, varies
#: little between images around a large common part, and 8 bits for the whole range erase the part that decides the
#: class.
INT8_FP32_OPS: tuple[str, ...] = ("Gemm",)


@dataclass(frozen=True)
class Fp16Config:
    keep_io_types: bool = True  # --io fp16 sets this to False
    op_block_list: tuple[str, ...] = FP16_FP32_OPS


@dataclass(frozen=True)
class Int8Config:
    """Static INT8 quantization settings.

    ``calibration`` is ``"photos"`` (random crops and flips of the built-in photos), ``"digits"`` (scikit-learn's
    digits, training split) or a folder of images; ``samples`` images are drawn from it.
    """

    method: str = "percentile"
    calibration: str = "photos"
    samples: int = 64
    seed: int = 0
    percentile: float = 99.999
    keep_fp32_ops: tuple[str, ...] = INT8_FP32_OPS
    cache_dir: Path | None = None  # None: no calibration cache


def to_fp16(model: onnx.ModelProto, config: Fp16Config = Fp16Config()) -> onnx.ModelProto:
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per weight below FP16's smallest subnormal, clamped
        return float16.convert_float_to_float16(
            model, keep_io_types=config.keep_io_types, op_block_list=list(config.op_block_list) or None
        )


def calibration_data(config: Int8Config, preprocess: Any) -> np.ndarray:
    """The calibration batch, preprocessed exactly like inference input (NCHW float32)."""
    from rbench.data import augmented_photos, load_image_folder, preprocess_batch

    if config.calibration == "photos":
        return augmented_photos(config.samples, preprocess, seed=config.seed)
    if config.calibration == "digits":
        from rbench.data import digits_images

        images = digits_images(split="train", limit=config.samples)
        return preprocess_batch(images, preprocess)
    images = load_image_folder(config.calibration)
    if len(images) >= config.samples:
        return preprocess_batch(dict(list(images.items())[: config.samples]), preprocess)
    return augmented_photos(config.samples, preprocess, seed=config.seed, images=images)


def validate_int8(config: Int8Config) -> None:
    """Reject bad settings before any work is done."""
    if config.method not in CALIBRATION_METHODS:
        raise BadInputError(
            f"unknown calibration method {config.method!r}; choose from {', '.join(CALIBRATION_METHODS)}"
        )
    if config.samples < 1:
        raise BadInputError(f"calibration needs at least 1 sample, got {config.samples}")
    source = config.calibration
    if source not in ("photos", "digits") and not Path(source).is_dir():
        raise BadInputError(f"calibration data must be 'photos', 'digits' or a folder of images; not found: {source}")


def to_int8(model_path: Path, data: np.ndarray, config: Int8Config, input_name: str = "input") -> onnx.ModelProto:
    """QDQ-quantize the FP32 model at ``model_path`` with calibration ``data``; returns the quantized model."""
    validate_int8(config)
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([data[i : i + 1] for i in range(len(data))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config.method]
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if config.method == "percentile":
        extra["CalibPercentile"] = config.percentile
    cache = _cache_path(model_path, data, config)
    excluded = [
        n.name
        for n in onnx.load(str(model_path), load_external_data=False).graph.node
        if n.op_type in config.keep_fp32_ops
    ]
    with tempfile.TemporaryDirectory(prefix="rbench-int8-") as tmp, _quiet():
        out = Path(tmp) / "model.int8.onnx"
        quantize_static(
            str(model_path),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=excluded,
            extra_options=extra,
            calibration_cache_path=cache,
        )
        return onnx.load(str(out))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's calibrators print progress to stdout and log advice to the root logger: keep stdout clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def calibration_key(model_path: Path, data: np.ndarray, config: Int8Config) -> str:
    """SHA-256 of the model, the calibration data and every setting that changes the ranges."""
    digest = hashlib.sha256()
    digest.update(sha256_file(model_path).encode())
    digest.update(_array_sha(data).encode())
    digest.update(str(data.shape).encode())
    settings = {k: v for k, v in asdict(config).items() if k in ("method", "percentile", "keep_fp32_ops")}
    digest.update(repr(sorted(settings.items())).encode())
    return digest.hexdigest()


def _cache_path(model_path: Path, data: np.ndarray, config: Int8Config) -> str | None:
    if config.cache_dir is None:
        return None
    Path(config.cache_dir).mkdir(parents=True, exist_ok=True)
    return str(Path(config.cache_dir) / f"calibration-{calibration_key(model_path, data, config)[:24]}.json")


def check_qdq_symmetric(model: onnx.ModelProto) -> None:
    """Every QuantizeLinear/DequantizeLinear has zero-point 0 (TensorRT's ONNX parser rejects any other)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits.get(node.input[2])
            if zp is not None and np.any(numpy_helper.to_array(zp) != 0):
                raise RuntimeError(f"{node.name}: non-zero zero-point; TensorRT needs symmetric quantization")


def add_precisions(
    artifact: Artifact,
    precisions: list[str],
    progress: Callable[[str], None],
    fp16: Fp16Config = Fp16Config(),
    int8: Int8Config = Int8Config(),
) -> Artifact:
    """Write the requested variants beside ``model.onnx`` and record them in the manifest."""
    from rbench.export.artifact import MANIFEST, PRECISION_FILES, Artifact, precision_entry
    from rbench.export.onnx_export import check_model, save_onnx

    fp32_path = artifact.path / PRECISION_FILES["fp32"]
    fp32 = onnx.load(str(fp32_path))
    manifest = artifact.manifest
    for precision in precisions:
        path = artifact.path / PRECISION_FILES[precision]
        if precision == "fp16":
            progress("converting to FP16")
            model, settings = to_fp16(fp32, fp16), asdict(fp16)
        elif precision == "int8":
            progress(f"calibrating INT8 ({int8.method}, {int8.samples} {int8.calibration} samples)")
            data = calibration_data(int8, artifact.preprocess)
            model = to_int8(fp32_path, data, int8, artifact.input_name)
            check_qdq_symmetric(model)
            settings = {**asdict(int8), "cache_dir": None, "calibration_sha256": _array_sha(data)}
        else:
            raise BadInputError(f"unsupported precision {precision!r}")
        model = check_model(model)
        save_onnx(model, path)
        manifest["precisions"][precision] = {**precision_entry(path, model), "settings": _jsonable(settings)}
    write_json_atomic(artifact.path / MANIFEST, manifest)
    return Artifact.open(artifact.path)


def _array_sha(data: np.ndarray) -> str:
    return sha256_bytes(np.ascontiguousarray(data).tobytes())


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, os.PathLike) else v)
        for k, v in settings.items()
    }
