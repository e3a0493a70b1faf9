"""``rbench export``: model → folded ONNX → checked → parity-tested → artifact directory, all or nothing.

Everything is written into a hidden temporary directory beside the destination and renamed into place at the end, so
a failure (bad weights, a broken export) leaves nothing in ``artifacts/``.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rbench._io import make_dir_public, sha256_bytes, sha256_file, write_json_atomic
from rbench.bench.parity import ParityReport, artifact_parity
from rbench.errors import BadInputError
from rbench.export.artifact import (
    MANIFEST,
    PRECISION_FILES,
    SCHEMA_VERSION,
    WEIGHTS_FILE,
    Artifact,
    precision_entry,
)
from rbench.export.fold import fold_batchnorm
from rbench.export.onnx_export import ExportConfig, export_onnx, save_onnx
from rbench.export.precision import Fp16Config, Int8Config, add_precisions, validate_int8
from rbench.models import create_model, get_spec
from rbench.models.weights import state_dict_sha256

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelConfig:
    """Which model and which weights."""

    name: str = "resnet50"
    weights: str = "random"
    seed: int = 0
    num_classes: int | None = None  # None: the model's own (1000 ImageNet, 10 CIFAR)
    options: dict[str, Any] = field(default_factory=dict)  # builder options such as shortcut="B"


@dataclass
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    parity: dict[str, ParityReport]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.parity.values())


def export_artifact(
    model_config: ModelConfig = ModelConfig(),
    export_config: ExportConfig = ExportConfig(),
    out: str | os.PathLike[str] = "artifacts",
    precisions: Sequence[str] = ("fp32",),
    progress: Progress = lambda step: None,
    fp16: Fp16Config = Fp16Config(),
    int8: Int8Config = Int8Config(),
) -> ExportResult:
    """Export one model into ``out/<model>-<digest>/`` and check its parity; returns where and how well."""
    spec = get_spec(model_config.name)
    for precision in precisions:
        if precision not in PRECISION_FILES:
            raise BadInputError(f"unsupported precision {precision!r}; choose from {', '.join(PRECISION_FILES)}")
    if "int8" in precisions:
        validate_int8(int8)
    progress(f"building {spec.name} ({model_config.weights} weights)")
    model = create_model(
        spec.name,
        weights=model_config.weights,
        seed=model_config.seed,
        num_classes=model_config.num_classes,
        **model_config.options,
    )
    progress("folding BatchNorm into convolutions")
    fold = fold_batchnorm(model)
    progress(f"exporting ONNX (opset {export_config.opset})")
    onnx_model = export_onnx(fold.module, spec.input_shape, export_config)

    out = Path(out)
    created_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.name}-", dir=out))
    try:
        save_onnx(onnx_model, tmp / PRECISION_FILES["fp32"])
        _save_weights(model, tmp / WEIGHTS_FILE)
        num_classes = model_config.num_classes or spec.num_classes
        manifest = _manifest(
            spec, model_config, export_config, model, tmp / WEIGHTS_FILE, num_classes, fold.folded, fold.unfolded
        )
        manifest["precisions"]["fp32"] = precision_entry(tmp / PRECISION_FILES["fp32"], onnx_model)
        write_json_atomic(tmp / MANIFEST, manifest)
        artifact = Artifact.open(tmp)
        extra = [p for p in precisions if p != "fp32"]
        if extra:
            artifact = add_precisions(artifact, extra, progress, fp16, int8)
        reports = {}
        for precision in artifact.precisions:
            progress(f"checking {precision} parity on ONNX Runtime against PyTorch")
            reports[precision] = artifact_parity(artifact, "ort", precision)
            artifact.manifest["precisions"][precision]["parity"] = reports[precision].to_dict()
        write_json_atomic(tmp / MANIFEST, artifact.manifest)
        final = out / f"{spec.name}-{sha256_bytes(onnx_model.SerializeToString())[:12]}"
        make_dir_public(tmp)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_out and not any(out.iterdir()):
            out.rmdir()
        raise
    return ExportResult(final, artifact.manifest, reports)


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    from rbench._io import atomic_path

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def _manifest(
    spec: Any,
    model_config: ModelConfig,
    export_config: ExportConfig,
    model: torch.nn.Module,
    weights_path: Path,
    num_classes: int,
    folded: list[str],
    unfolded: list[str],
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": {
            "name": spec.name,
            "family": spec.family,
            "num_classes": num_classes,
            "options": model_config.options,
            "input_name": export_config.input_name,
            "output_name": export_config.output_name,
            "input_shape": ["batch" if export_config.dynamic_batch else 1, *spec.input_shape],
            "preprocess": asdict(spec.preprocess),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "weights": {
            "source": model_config.weights,
            "seed": model_config.seed if model_config.weights == "random" else None,
            "sha256": state_dict_sha256(model.state_dict()),
            "file": WEIGHTS_FILE,
            "file_sha256": sha256_file(weights_path),
        },
        "export": {**asdict(export_config), "bn_folded": len(folded), "bn_unfolded": unfolded},
        "versions": _versions(),
        "precisions": {},
    }


def _versions() -> dict[str, str]:
    from rbench.doctor import package_version

    versions = {name: package_version(name) or "not installed" for name in ("rbench", "onnx", "onnxruntime")}
    return {"python": platform.python_version(), "torch": torch.__version__, **versions}


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, replacing an older ``dst`` (same digest, so the same model) if there is one."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{dst.name}-", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
