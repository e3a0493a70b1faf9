"""``rbench export``: model → folded ONNX → checked → variants → parity-tested → artifact directory, all or nothing.

Everything is written into a hidden temporary directory beside the destination (named with this process's id) and
renamed into place at the end, so a failure or a signal leaves nothing half-written, and the next export removes
what a killed one left. An artifact keeps the precisions it has: a re-export into the same folder carries every
file over, reuses a precision whose settings are unchanged, and replaces one whose settings changed with a notice.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from rbench._io import (
    check_output_folder,
    make_dir_public,
    remove_stale_temp_dirs,
    sha256_file,
    temp_dir_prefix,
    write_json_atomic,
)
from rbench.data import Preprocess
from rbench.errors import ArtifactError, BadInputError, RbenchError
from rbench.export.artifact import MANIFEST, SCHEMA_VERSION, WEIGHTS_FILE, Artifact, precision_entry
from rbench.export.converters import converter, resolve_settings
from rbench.export.fold import fold_batchnorm
from rbench.export.names import file_modules
from rbench.export.onnx_export import ExportConfig, export_onnx, save_onnx, validate_export_config
from rbench.export.precision import (
    Int8Config,
    calibration_data,
    calibration_for,
)
from rbench.models import ModelConfig, create_model, get_spec, validate_model_config
from rbench.models.weights import state_dict_sha256
from rbench.precisions import EXPORTED, PRECISIONS, get_precision
from rbench.progress import Progress, Silent

__all__ = ["ExportResult", "ModelConfig", "ParityOutcome", "export_artifact"]


class ParityOutcome(Protocol):
    """What the exporter needs of a parity check (``rbench.bench.parity.ParityReport`` is one)."""

    @property
    def passed(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


#: A parity check handed to the exporter by a higher layer: ``(artifact, precision) -> outcome``.
ParityCheck = Callable[[Artifact, str], ParityOutcome]


class Controlled(Protocol):
    """What an accuracy control found for one reduced graph (``rbench.bench.debug.Controlled`` is one)."""

    @property
    def record(self) -> dict[str, Any]: ...  # kept in the precision's manifest entry as ``accuracy``

    @property
    def model(self) -> Any: ...  # the graph to ship instead (layers kept in FP32), or None


#: Accuracy control handed to the exporter by a higher layer: ``(artifact, precision, progress) -> found``, None
#: where it has nothing to say about that precision.
AccuracyControl = Callable[[Artifact, str, Progress], "Controlled | None"]


@dataclass
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    parity: dict[str, ParityOutcome] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # files replaced or reused, temp folders cleaned up

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.parity.values())


def export_artifact(
    model_config: ModelConfig = ModelConfig(),
    export_config: ExportConfig = ExportConfig(),
    out: str | os.PathLike[str] = "artifacts",
    precisions: Sequence[str] = ("fp32",),
    progress: Progress = Silent(),
    settings: Mapping[str, Any] | None = None,
    parity: ParityCheck | None = None,
    into: Path | None = None,
    control: AccuracyControl | None = None,
) -> ExportResult:
    """Export one model into ``out/<model>-<digest>/`` (or ``into``, an artifact folder of this very model being
    completed under the name its user gave it), hold each reduced graph made to its bounds with ``control``, check
    each precision with ``parity``; return where and how well. Every setting is checked before any heavy work."""
    for precision in precisions:
        if not get_precision(precision).exported:
            raise BadInputError(
                f"{precision} is an execution setting on the FP32 model, not a file of its own: "
                f"export fp32 and run it with rbench run --precision {precision}"
            )
    precisions = [p for p in EXPORTED if p in precisions or p == "fp32"]
    validate_model_config(model_config)
    validate_export_config(export_config)
    settings = resolve_settings(settings)  # one settings object per reduced precision
    settings = {
        k: calibration_for(v, model_config.trained) if converter(k).calibrates else v for k, v in settings.items()
    }
    for precision in precisions[1:]:
        converter(precision).validate(settings[precision])
    out = Path(out)
    check_output_folder(out)
    spec = get_spec(model_config.name)
    progress.step(f"building {spec.name} ({model_config.weights} weights)")
    model = create_model(spec.name, **model_config.create_kwargs())
    progress.step("folding BatchNorm into convolutions")
    fold = fold_batchnorm(model)
    progress.step(f"exporting ONNX (opset {export_config.opset})")
    onnx_model = export_onnx(fold.module, spec.input_shape, export_config)
    manifest = _manifest(spec, model_config, export_config, model, fold.folded, fold.unfolded)
    created_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    notices = [f"removed {p.name}, left by an export that was killed" for p in remove_stale_temp_dirs(out)]
    tmp = Path(tempfile.mkdtemp(prefix=temp_dir_prefix("tmp", spec.name), dir=out))
    try:
        final, artifact, reports = _write(
            tmp,
            into or out,
            model,
            onnx_model,
            manifest,
            precisions,
            progress,
            notices,
            settings,
            parity,
            into,
            control,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_out and not any(out.iterdir()):
            out.rmdir()
        raise
    for notice in notices:
        progress.note(notice)
    return ExportResult(final, artifact.manifest, reports, notices)


def _write(
    tmp: Path,
    out: Path,
    model: torch.nn.Module,
    onnx_model: Any,
    manifest: dict[str, Any],
    precisions: list[str],
    progress: Progress,
    notices: list[str],
    chosen: Mapping[str, Any],
    parity: ParityCheck | None,
    into: Path | None = None,
    control: AccuracyControl | None = None,
) -> tuple[Path, Artifact, dict[str, ParityOutcome]]:
    """Fill ``tmp`` with the artifact (keeping what an earlier export of the same model made) and move it into
    place as ``out/<model>-<digest>``, or as ``into``, which must hold this very FP32 model."""
    fp32_path = tmp / PRECISIONS["fp32"].file
    save_onnx(onnx_model, fp32_path)
    _save_weights(model, tmp / WEIGHTS_FILE)
    manifest["weights"]["file_sha256"] = sha256_file(tmp / WEIGHTS_FILE)
    settings = {k: v for k, v in manifest["export"].items() if not k.startswith("bn_")}
    manifest["precisions"]["fp32"] = precision_entry(fp32_path, onnx_model, settings)
    final = into or out / f"{manifest['model']['name']}-{manifest['precisions']['fp32']['sha256'][:12]}"
    previous = _previous(final, manifest, notices)
    if into is not None and previous is None:
        raise ArtifactError(
            f"{into}: its weights no longer export to the FP32 model it records; it cannot be completed in place "
            f"(export it anew: rbench export --weights {into / WEIGHTS_FILE} --precision all)"
        )
    with tempfile.TemporaryDirectory(prefix="rbench-ranges-") as ranges:
        for precision in precisions[1:]:
            settings = _shared_ranges(chosen[precision], Path(ranges))
            _add_precision(tmp, manifest, precision, previous, settings, progress, notices)
    _carry_over(previous, tmp, manifest, set(precisions))
    modules = {name for name, _ in model.named_modules()}
    for entry in manifest["precisions"].values():
        entry.setdefault("modules", file_modules(tmp / entry["file"], modules))
    manifest["precisions"] = {p: manifest["precisions"][p] for p in PRECISIONS if p in manifest["precisions"]}
    write_json_atomic(tmp / MANIFEST, manifest)
    artifact = Artifact.open(tmp)
    if control is not None:
        _control(artifact, precisions[1:], control, progress, modules)
    reports = _check(artifact, parity, progress)
    write_json_atomic(tmp / MANIFEST, artifact.manifest)
    make_dir_public(tmp)
    _replace_dir(tmp, final)
    return final, Artifact(final, artifact.manifest), reports


def _control(
    artifact: Artifact, made: Sequence[str], control: AccuracyControl, progress: Progress, modules: set[str]
) -> None:
    """Each reduced graph of this export held to its bounds by ``control``: what it found goes into the manifest
    entry (``accuracy``, in the artifact's manifest, written with the parity that follows), and the graph it
    returns (layers kept in FP32) replaces the file, with the same settings, so a later export with them reuses
    it."""
    manifest = artifact.manifest
    for precision in made:
        found = control(artifact, precision, progress)
        if found is None:
            continue
        entry = manifest["precisions"][precision]
        if found.model is not None:
            made_by, path = converter(precision), artifact.path / entry["file"]
            made_by.save(found.model, path)
            entry.update(made_by.entry(path, found.model, entry["settings"]), modules=file_modules(path, modules))
        entry["accuracy"] = found.record


def _shared_ranges(settings: Any, cache: Path) -> Any:
    """INT8 settings without a calibration cache get this export's own, so that the portable graph and U8S8
    calibrate once between them (``rbench.export.precision.calibration_key``)."""
    if isinstance(settings, Int8Config) and settings.cache_dir is None:
        return replace(settings, cache_dir=cache)
    return settings


def _previous(final: Path, manifest: dict[str, Any], notices: list[str]) -> Artifact | None:
    """The artifact already at ``final`` when it holds this very FP32 model, so its other files can be kept."""
    if not final.exists():
        return None
    try:
        old = Artifact.open(final)
    except RbenchError as exc:
        notices.append(f"replacing {final.name}: its manifest is unreadable ({exc})")
        return None
    if old.manifest["precisions"]["fp32"]["sha256"] != manifest["precisions"]["fp32"]["sha256"]:
        return None
    if old.manifest["weights"]["sha256"] == manifest["weights"]["sha256"]:
        manifest["weights"]["source"] = old.manifest["weights"]["source"]  # the same weights, named as first given
        manifest["weights"]["seed"] = old.manifest["weights"]["seed"]
    return old


def _add_precision(
    tmp: Path,
    manifest: dict[str, Any],
    precision: str,
    previous: Artifact | None,
    chosen: Any,
    progress: Progress,
    notices: list[str],
) -> None:
    """Make one reduced-precision file, or reuse the previous export's when it was made with the same settings."""
    file = PRECISIONS[precision].file
    made_by = converter(precision)
    preprocess = Preprocess.from_dict(manifest["model"]["preprocess"])
    data = calibration_data(chosen, preprocess) if made_by.calibrates else None
    settings = made_by.record(chosen, data)
    old = previous.manifest["precisions"].get(precision) if previous else None
    if old is not None and old.get("settings") == settings and _intact(previous, old):
        _link_entry(previous, old, tmp)
        manifest["precisions"][precision] = {k: v for k, v in old.items() if k != "parity"}
        notices.append(f"kept {file}: made with the same settings")
        return
    if old is not None:
        notices.append(f"replaced {file}: {_settings_change(old.get('settings', {}), settings)}")
    fp32 = tmp / PRECISIONS["fp32"].file
    model = made_by.make(fp32, chosen, data, manifest["model"]["input_name"], progress)
    made_by.save(model, tmp / file)
    manifest["precisions"][precision] = made_by.entry(tmp / file, model, settings)


def _settings_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
    return "settings changed (" + ", ".join(changed) + ")" if changed else "settings changed"


def _intact(artifact: Artifact | None, entry: dict[str, Any]) -> bool:
    """Every file of a manifest entry is there with its recorded SHA-256 (an IR's ``.bin`` too)."""
    if artifact is None:
        return False
    files = {entry["file"]: entry["sha256"], **entry.get("extra_files", {})}
    return all((artifact.path / f).is_file() and sha256_file(artifact.path / f) == sha for f, sha in files.items())


def _link_entry(previous: Artifact, entry: dict[str, Any], tmp: Path) -> None:
    for name in (entry["file"], *entry.get("extra_files", {})):
        _link(previous.path / name, tmp / name)


def _carry_over(previous: Artifact | None, tmp: Path, manifest: dict[str, Any], made: set[str]) -> None:
    """Keep the previous export's other precisions (when intact) and every other file or folder it had (engines)."""
    if previous is None:
        return
    for precision, entry in previous.manifest["precisions"].items():
        if precision not in made and precision in PRECISIONS and _intact(previous, entry):
            _link_entry(previous, entry, tmp)
            manifest["precisions"][precision] = {k: v for k, v in entry.items() if k != "parity"}
    ours = {MANIFEST, WEIGHTS_FILE, *(p.file for p in PRECISIONS.values())}
    ours |= {f for e in manifest["precisions"].values() for f in e.get("extra_files", {})}
    for item in previous.path.iterdir():
        if item.name not in ours and not (tmp / item.name).exists():
            if item.is_dir():
                shutil.copytree(item, tmp / item.name, copy_function=_link)
            else:
                _link(item, tmp / item.name)


def _link(src: Path, dst: Path) -> None:
    """A hard link where the file system allows one (the old folder is about to go), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _check(artifact: Artifact, parity: ParityCheck | None, progress: Progress) -> dict[str, ParityOutcome]:
    reports = {}
    for precision in (p for p in PRECISIONS if p in artifact.precisions) if parity else ():
        progress.step(f"checking {precision} parity against PyTorch")
        reports[precision] = parity(artifact, precision)
        if not reports[precision].passed:
            progress.fail()
        artifact.manifest["precisions"][precision]["parity"] = reports[precision].to_dict()
    return reports


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
    folded: list[str],
    unfolded: list[str],
) -> dict[str, Any]:
    model_entry: dict[str, Any] = {
        "name": spec.name,
        "family": spec.family,
        "residual": spec.residual,
        "bounds": spec.bounds_family,
        "num_classes": model_config.num_classes or spec.num_classes,
        "options": model_config.options,
        "input_name": export_config.input_name,
        "output_name": export_config.output_name,
        "input_shape": ["batch" if export_config.dynamic_batch else 1, *spec.input_shape],
        "preprocess": asdict(model_config.preprocess or spec.preprocess),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if model_config.class_names is not None:
        model_entry["class_names"] = list(model_config.class_names)
    if model_config.trained is not None:
        model_entry["trained"] = model_config.trained
    return {
        "schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": model_entry,
        "weights": {
            "source": model_config.weights,
            "seed": model_config.seed if model_config.weights == "random" else None,
            "sha256": state_dict_sha256(model.state_dict()),
            "file": WEIGHTS_FILE,
            "file_sha256": None,  # set once the file is written
        },
        "export": {
            **asdict(export_config),
            "bn_folded": len(folded),
            "bn_unfolded": unfolded,
        },
        "versions": _versions(),
        "precisions": {},
    }


def _versions() -> dict[str, str]:
    from rbench.env import package_version

    versions = {name: package_version(name) or "not installed" for name in ("rbench", "onnx", "onnxruntime")}
    return {"python": platform.python_version(), "torch": torch.__version__, **versions}


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, replacing an older ``dst`` (same digest, so the same model) if there is one."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=temp_dir_prefix("old", dst.name), dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
