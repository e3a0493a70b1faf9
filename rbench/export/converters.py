"""How ``rbench export`` makes each reduced precision's file from the FP32 graph: one ``Converter`` per exported
precision of ``rbench.precisions`` (a test holds the two in step), in one table.

A converter holds its settings type, whether it calibrates on images, the conversion, how the file is saved and
described in the manifest, and the ``rbench export`` options that make it again. A backend-tuned variant
(``int8-u8s8``, ``int8-nncf``) derives its settings from its precision's (``int8``: the same calibration images).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rbench._io import sha256_file
from rbench.errors import unknown_choice
from rbench.export.precision import (
    Fp16Config,
    Int8Config,
    _array_sha,
    _jsonable,
    check_qdq_symmetric,
    to_fp16,
    to_int8,
    validate_int8,
)
from rbench.progress import Progress, Silent


@dataclass(frozen=True)
class Converter:
    precision: str
    settings: type
    calibrates: bool
    convert: Callable[..., Any]  # (fp32_path, settings, data, input_name, progress) -> the model
    record: Callable[[Any, np.ndarray | None], dict[str, Any]]  # (settings, data) -> the manifest's settings
    cli_args: Callable[[dict[str, Any]], list[str]]  # (recorded settings) -> rbench export options
    validate: Callable[[Any], None] = lambda settings: None
    derive: Callable[[Any], Any] | None = None  # a variant's settings from its precision's
    needs: tuple[str, ...] = ()  # modules the conversion imports (its extra: their name)
    onnx: bool = True  # an ONNX file (else OpenVINO IR: .xml and .bin)

    def default(self) -> Any:
        base = self.settings()
        return self.derive(base) if self.derive is not None else base

    def make(
        self, fp32_path: Path, settings: Any, data: np.ndarray | None, input_name: str, progress: Progress = Silent()
    ) -> Any:
        """The checked model of this precision made from the FP32 ONNX at ``fp32_path``."""
        model = self.convert(fp32_path, settings, data, input_name, progress)
        if not self.onnx:
            return model
        from rbench.export.onnx_export import check_model

        return check_model(model)

    def save(self, model: Any, path: Path) -> None:
        if self.onnx:
            from rbench.export.onnx_export import save_onnx

            save_onnx(model, path)
            return
        from rbench.export.openvino_ir import save_ir

        save_ir(model, path)

    def entry(self, path: Path, model: Any, settings: dict[str, Any]) -> dict[str, Any]:
        """The manifest entry of the file: name, digests, node counts, the settings that made it."""
        from rbench.export.artifact import precision_entry

        if self.onnx:
            return precision_entry(path, model, settings)
        from rbench.export.openvino_ir import ir_histogram

        ops = ir_histogram(path)
        extra = {path.with_suffix(".bin").name: sha256_file(path.with_suffix(".bin"))}
        return {"file": path.name, "sha256": sha256_file(path), "nodes": sum(ops.values()), "ops": ops,
                "settings": settings, "extra_files": extra}  # fmt: skip


def _fp16(fp32_path: Path, settings: Fp16Config, data: Any, input_name: str, progress: Progress) -> onnx.ModelProto:
    progress.step("converting to FP16")
    return to_fp16(onnx.load(str(fp32_path)), settings)


def _int8(fp32_path: Path, settings: Int8Config, data: Any, input_name: str, progress: Progress) -> onnx.ModelProto:
    kind = "symmetric" if settings.activations == "int8" else "uint8 asymmetric"
    progress.step(
        f"calibrating INT8, {kind} activations ({settings.method}, {len(data)} images from {settings.calibration})",
        total=len(data),
    )
    model = to_int8(fp32_path, data, settings, input_name, progress)
    if settings.activations == "int8":
        check_qdq_symmetric(model)
    return model


def _nncf(fp32_path: Path, settings: Int8Config, data: Any, input_name: str, progress: Progress) -> Any:
    from rbench.export.openvino_ir import nncf_quantize

    return nncf_quantize(fp32_path, data, settings, input_name, progress)


def _int8_args(settings: dict[str, Any]) -> list[str]:
    if not settings:
        return []
    args = ["--calibration", str(settings["calibration"]), "--calib-method", settings["method"]]
    return [*args, "--calib-samples", str(settings["samples"]), "--seed", str(settings["seed"])]


def _int8_record(settings: Int8Config, data: np.ndarray | None) -> dict[str, Any]:
    return _jsonable({**asdict(settings), "cache_dir": None, "calibration_sha256": _array_sha(data)})


def _u8s8(settings: Int8Config) -> Int8Config:
    """ONNX Runtime's CPU variant: uint8 activations, the portable graph's FP32 ops kept. Measured worst cosine on
    the photos, resnet20: 0.99823 so, 0.99334 with every op quantized, 0.99461 for the portable s8 graph; on
    ResNet-50 (the issue's interleaved run) 0.99645 so, against 0.99476 with every op quantized, which ran 1.3x
    faster (2.83x and 3.60x ONNX Runtime FP32): the accurate choice still clears 2.5x."""
    return replace(settings, activations="uint8")


def _nncf_settings(settings: Int8Config) -> Int8Config:
    """NNCF's variant, its classifier (MatMul) and first convolution kept in FP32: on resnet20 the worst cosine on
    the photos is 0.983 so, 0.914 with every op quantized (which fails the CIFAR bound), 0.987 with the mixed
    preset."""
    return replace(settings, quantizer="nncf", keep_fp32_ops=("MatMul",), keep_first_conv=True)


CONVERTERS: dict[str, Converter] = {
    c.precision: c
    for c in (
        Converter(
            "fp16",
            Fp16Config,
            False,
            _fp16,
            lambda settings, data: _jsonable(asdict(settings)),
            lambda recorded: ["--io", "fp16"] if recorded.get("keep_io_types") is False else [],
        ),
        Converter("int8", Int8Config, True, _int8, _int8_record, _int8_args, validate_int8),
        Converter("int8-u8s8", Int8Config, True, _int8, _int8_record, _int8_args, validate_int8, derive=_u8s8),
        Converter(
            "int8-nncf",
            Int8Config,
            True,
            _nncf,
            _int8_record,
            _int8_args,
            validate_int8,
            derive=_nncf_settings,
            needs=("nncf",),
            onnx=False,
        ),
    )
}


def converter(precision: str) -> Converter:
    try:
        return CONVERTERS[precision]
    except KeyError:
        raise unknown_choice("reduced precision", precision, CONVERTERS) from None


def resolve_settings(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Settings for every converter: those given, a variant's derived from its precision's where that was given
    (``int8-u8s8`` calibrates like the ``int8`` asked for), else the defaults."""
    from rbench.precisions import PRECISIONS

    given = dict(given or {})
    found = {}
    for name, c in CONVERTERS.items():
        base = PRECISIONS[name].variant_of
        if name in given:
            found[name] = given[name]
        elif base in given and c.derive is not None:
            found[name] = c.derive(given[base])
        else:
            found[name] = c.default()
    return found


def available(precisions: list[str]) -> tuple[list[str], list[str]]:
    """``precisions`` split into those whose converter can run here and why each other cannot (a missing library,
    naming its extra)."""
    import importlib.util

    runs, notes = [], []
    for p in precisions:
        missing = [m for m in CONVERTERS[p].needs if importlib.util.find_spec(m) is None] if p in CONVERTERS else []
        if missing:
            notes.append(f"{p} not made: {missing[0]} is not installed: pip install 'rbench[{missing[0]}]'")
        else:
            runs.append(p)
    return runs, notes
