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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rbench._io import sha256_bytes, sha256_file
from rbench.errors import BadInputError, unknown_choice
from rbench.progress import Progress, Silent

#: Ops kept in FP32 in the FP16 graph. Empty by measurement: on the default ResNet-50 the worst cosine on the photos is
#: 0.9999964 with none and 0.9999963 to 0.9999965 with GlobalAveragePool, Gemm, Add or all three blocked, while
#: blocking Add adds 48 Cast nodes.
FP16_FP32_OPS: tuple[str, ...] = ()
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: Ops left unquantized in the INT8 graph: the classifier and the pooling that feeds it. The pooled features are a
#: large common part plus a small part that decides the class, and 8 bits over the whole range erase the latter; so
#: the classifier's input must stay FP32 too, not only its weights (a quantized GlobalAveragePool or Flatten output
#: would put Q/DQ back in front of the Gemm). Measured on the photos, percentile calibration on 64 augmented photos,
#: worst cosine against PyTorch FP32: resnet20 0.977 with only Gemm kept, 0.989 with its input kept too.
INT8_FP32_OPS: tuple[str, ...] = ("Gemm", "GlobalAveragePool", "Flatten")
#: Calibration images whose activations ONNX Runtime holds at once before folding them into its ranges or histograms
#: (its ``CalibStridedMinMax`` chunks, which every calibrator honours). Unchunked it keeps every activation of every
#: image: the ResNet-50 export peaked at 8.5 GB RSS with 64 images. Its ``CalibMaxIntermediateOutputs`` is no help:
#: the histogram calibrators ignore it and, in ONNX Runtime 1.32, the MinMax one discards the chunks it bounds.
CALIB_CHUNK = 8


@dataclass(frozen=True)
class Fp16Config:
    keep_io_types: bool = True  # --io fp16 sets this to False
    op_block_list: tuple[str, ...] = FP16_FP32_OPS


@dataclass(frozen=True)
class Int8Config:
    """Static INT8 quantization settings.

    ``calibration`` is ``"photos"`` (random crops and flips of the built-in photos), ``"digits"`` (scikit-learn's
    digits, training split) or a folder of images; ``samples`` images are drawn from it. ``"auto"``: the training
    data of a checkpoint rbench trained (``calibration_for``), else the photos.
    """

    method: str = "percentile"
    calibration: str = "auto"
    samples: int = 64
    seed: int = 0
    percentile: float = 99.999
    keep_fp32_ops: tuple[str, ...] = INT8_FP32_OPS
    #: The first convolution reads the normalized image, whose range is set by a few extreme pixels; measured on
    #: resnet20 it takes the worst cosine from 0.989 to 0.994 (resnet18: 0.9967 to 0.9969) for one FP32 layer.
    keep_first_conv: bool = True
    cache_dir: Path | None = None  # None: no calibration cache
    #: ``int8``: symmetric int8 activations, zero-point 0 (TensorRT's parser needs it); ``uint8``: asymmetric uint8
    #: activations (ONNX Runtime's U8S8, its fast path on x86 CPUs with VNNI)
    activations: str = "int8"
    #: ``onnxruntime``: ``quantize_static`` to QDQ; ``nncf``: NNCF on the OpenVINO model, ``preset`` its preset
    quantizer: str = "onnxruntime"
    preset: str = "performance"


def to_fp16(model: onnx.ModelProto, config: Fp16Config = Fp16Config()) -> onnx.ModelProto:
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per weight below FP16's smallest subnormal, clamped
        return float16.convert_float_to_float16(
            model, keep_io_types=config.keep_io_types, op_block_list=list(config.op_block_list) or None
        )


def calibration_data(config: Int8Config, preprocess: Any) -> np.ndarray:
    """The calibration batch, preprocessed exactly like inference input (NCHW float32)."""
    from rbench.data import augmented_photos, load_images, preprocess_batch

    if config.calibration in ("photos", "auto"):  # auto without a trained checkpoint: the photos
        return augmented_photos(config.samples, preprocess, seed=config.seed)
    if config.calibration == "digits":
        from rbench.data import digits_images

        images = digits_images(split="train", limit=config.samples, seed=config.seed)
        return preprocess_batch(images, preprocess)
    images = load_images(config.calibration).images  # flat or DIR/<class>/<image>, as --images
    if len(images) >= config.samples:  # spread over the whole set: a class tree is sorted by class
        chosen = np.linspace(0, len(images) - 1, config.samples).round().astype(int)
        items = list(images.items())
        return preprocess_batch(dict(items[i] for i in chosen), preprocess)
    return augmented_photos(config.samples, preprocess, seed=config.seed, images=images)


def calibration_for(config: Int8Config, trained: dict | None) -> Int8Config:
    """``calibration="auto"`` made concrete: a model rbench trained is calibrated on its own training data (digits'
    training split of the same seed, or the training folder, where it still exists); any other on the photos."""
    from dataclasses import replace

    if config.calibration != "auto":
        return config
    source = (trained or {}).get("dataset") or {}
    if source.get("name") == "digits":
        return replace(config, calibration="digits", seed=int(source.get("seed", 0)))
    if source.get("train") and Path(source["train"]).is_dir():
        return replace(config, calibration=source["train"])
    return replace(config, calibration="photos")


def validate_int8(config: Int8Config) -> None:
    """Reject bad settings before any work is done."""
    if config.method not in CALIBRATION_METHODS:
        raise unknown_choice("calibration method", config.method, CALIBRATION_METHODS)
    if not 1 <= config.samples <= 100_000:
        raise BadInputError(f"--calib-samples must be between 1 and 100000, got {config.samples}")
    if not 0 < config.percentile <= 100:
        raise BadInputError(f"calibration percentile must be in (0, 100], got {config.percentile}")
    if config.seed < 0:
        raise BadInputError(f"--seed must be 0 or more, got {config.seed}")
    if config.activations not in ("int8", "uint8") or config.preset not in ("performance", "mixed"):
        raise BadInputError(f"INT8 activations int8 or uint8, preset performance or mixed; got {config}")
    source = config.calibration
    if source not in ("photos", "digits", "auto"):
        from rbench.data import check_image_folder

        check_image_folder(source, "calibration data ('photos', 'digits' or a folder of images)")


def to_int8(
    model_path: Path,
    data: np.ndarray,
    config: Int8Config,
    input_name: str = "input",
    progress: Progress = Silent(),
) -> onnx.ModelProto:
    """QDQ-quantize the FP32 model at ``model_path`` with calibration ``data``; returns the quantized model.

    ``progress`` advances by one per calibration image ONNX Runtime consumes.
    """
    validate_int8(config)
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config.method]
    symmetric = config.activations == "int8"
    extra: dict[str, Any] = {
        "ActivationSymmetric": symmetric,
        "WeightSymmetric": True,
        "CalibStridedMinMax": _chunk(len(data)),
    }
    if config.method == "percentile":
        extra["CalibPercentile"] = config.percentile
    cache = _cache_path(model_path, data, config)
    excluded = fp32_nodes(onnx.load(str(model_path), load_external_data=False), config)
    with tempfile.TemporaryDirectory(prefix="rbench-int8-") as tmp, quiet():
        out = Path(tmp) / "model.int8.onnx"
        quantize_static(
            str(model_path),
            str(out),
            _reader(data, input_name, progress),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=excluded,
            extra_options=extra,
            calibration_cache_path=cache,
        )
        return onnx.load(str(out))


def _reader(data: np.ndarray, input_name: str, progress: Progress) -> Any:
    """ONNX Runtime's calibration data reader over ``data``, one image at a time, advancing ``progress``."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """One image at a time, over the range ONNX Runtime's chunking sets."""

        def __init__(self) -> None:
            self.set_range(0, len(data))

        def __len__(self) -> int:
            return len(data)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter([data[i : i + 1] for i in range(start_index, end_index)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            progress.advance()
            return {input_name: batch}

    return Reader()


def _chunk(samples: int, limit: int = CALIB_CHUNK) -> int:
    """The largest chunk of at most ``limit`` images that divides ``samples`` (ONNX Runtime needs it to divide)."""
    return next(n for n in range(min(limit, samples), 0, -1) if samples % n == 0)


def fp32_nodes(model: onnx.ModelProto, config: Int8Config) -> list[str]:
    """Names of the nodes ``config`` keeps in FP32: its op types, and the first convolution if asked."""
    nodes = [n.name for n in model.graph.node if n.op_type in config.keep_fp32_ops]
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    return nodes + convs[:1] if config.keep_first_conv else nodes


@contextlib.contextmanager
def quiet(logger: str | None = None) -> Iterator[None]:
    """A quantizer's chatter kept off stdout and its log (ONNX Runtime's calibrators print progress to stdout and
    log advice to the root logger; NNCF logs its statistics collection to ``nncf``)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(level)


def calibration_key(model_path: Path, data: np.ndarray, config: Int8Config) -> str:
    """SHA-256 of the model, the calibration data and every setting that changes the ranges."""
    digest = hashlib.sha256()
    digest.update(sha256_file(model_path).encode())
    digest.update(_array_sha(data).encode())
    digest.update(str(data.shape).encode())
    # not the activation type: ONNX Runtime's calibrator collects the same signed histograms for int8 and uint8
    # activations and the quantizer alone makes them symmetric (the portable graph's and U8S8's cached ranges of one
    # resnet20 export were byte-identical), so the two share one calibration
    settings = {
        k: v for k, v in asdict(config).items() if k in ("method", "percentile", "keep_fp32_ops", "keep_first_conv")
    }
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


def _array_sha(data: np.ndarray) -> str:
    return sha256_bytes(np.ascontiguousarray(data).tobytes())


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, os.PathLike) else v)
        for k, v in settings.items()
    }
