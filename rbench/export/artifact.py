"""The artifact directory: ``artifacts/<model>-<digest>/`` with ONNX models, weights and ``manifest.json``.

The manifest says what the artifact is (model, input, preprocessing, class names), where it came from (weights
digest, versions, the settings that made each file) and how good it is (parity per precision). Opening an artifact
verifies what it reads: a file that cannot be parsed is bad input (exit 2); a file that parses but does not match
its recorded SHA-256 was tampered with (exit 3).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from rbench._io import read_json_record, sha256_file, verify_sha256
from rbench.data import Preprocess
from rbench.errors import ArtifactError, BadInputError
from rbench.precisions import EXPORTED, get_precision
from rbench.runtime.spec import ENGINE_DIR, WEIGHTS_FILE

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Artifact:
    """An opened artifact directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Artifact:
        """Open an artifact directory and read its manifest."""
        directory = Path(path)
        if not directory.is_dir():
            what = "is a file, not an artifact directory" if directory.is_file() else "not found"
            raise BadInputError(f"artifact directory {what}: {directory}")
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise BadInputError(f"{directory} is not an rbench artifact: it has no {MANIFEST} (run rbench export)")

        def require(m: dict[str, Any]) -> None:
            _ = m["model"]["name"], m["precisions"]["fp32"]["file"], m["weights"]["file_sha256"]

        return cls(directory, read_json_record(manifest_path, SCHEMA_VERSION, require, "manifest"))

    def verify(self) -> Artifact:
        """Every file the manifest records is there with its recorded SHA-256 (exit 3 otherwise): what a command
        checks before any heavy work, so a tampered artifact is refused, never replaced by another."""
        recorded = [(WEIGHTS_FILE, self.manifest["weights"]["file_sha256"])]
        for entry in self.manifest["precisions"].values():
            recorded += [(entry["file"], entry["sha256"]), *entry.get("extra_files", {}).items()]
        for name, sha in recorded:
            if not (self.path / name).is_file():
                raise ArtifactError(f"rebuild required: {self.path} is missing {name}, which its manifest records")
            verify_sha256(self.path / name, sha, "manifest", "export")
        return self

    @property
    def model_name(self) -> str:
        return self.manifest["model"]["name"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["model"]["input_shape"][1:])  # type: ignore[return-value]

    @property
    def input_name(self) -> str:
        return self.manifest["model"]["input_name"]

    @property
    def num_classes(self) -> int:
        return int(self.manifest["model"]["num_classes"])

    @property
    def bounds_family(self) -> str:
        """Which family's parity bounds apply (``rbench.precisions``): plain nets, else the model family."""
        model = self.manifest["model"]
        return model.get("bounds", model.get("family", "imagenet"))

    @property
    def class_names(self) -> list[str] | None:
        """The classifier's class names, where the export was given them (``--class-names``)."""
        return self.manifest["model"].get("class_names")

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.manifest["model"]["preprocess"])

    @property
    def precisions(self) -> list[str]:
        return list(self.manifest["precisions"])

    def onnx_path(self, precision: str) -> Path:
        """The verified model file of one precision: its ONNX (checked to load), or an OpenVINO IR (``.xml``, its
        ``.bin`` verified too)."""
        if not get_precision(precision).exported:
            precision = "fp32"  # bf16 is an execution setting on the FP32 file
        entry = self.manifest["precisions"].get(precision)
        if entry is None:
            raise BadInputError(
                f"{self.path} has no {precision} model (it has {', '.join(self.precisions)}); "
                f"export it with: {self.export_command([precision])}"
            )
        from rbench.export.onnx_export import load_onnx

        path = self.path / entry["file"]
        if path.suffix == ".onnx":
            load_onnx(path)  # unreadable: bad input, exit 2
        elif not path.is_file():
            raise BadInputError(f"{self.path} is missing {entry['file']}; export it again")
        verify_sha256(path, entry["sha256"], "manifest", "export")
        for name, sha in entry.get("extra_files", {}).items():
            verify_sha256(self.path / name, sha, "manifest", "export")
        return path

    def engine_path(self, precision: str) -> Path:
        """Where ``rbench build`` puts the TensorRT engine of one precision."""
        return self.path / ENGINE_DIR / f"model.{precision}.engine"

    def engine_file(self, precision: str) -> Path:
        """The TensorRT engine of one precision, which must exist: a missing one is bad input naming the command
        that builds it."""
        engine = self.engine_path(precision)
        if not engine.is_file():
            raise BadInputError(
                f"{self.path} has no {precision} TensorRT engine; build it with: "
                f"rbench build {self.path} --precision {precision}"
            )
        return engine

    def source_sha256(self, precision: str) -> str | None:
        """The SHA-256 of the ONNX file a precision's engine must be built from."""
        return self.manifest["precisions"].get(precision, {}).get("sha256")

    def calibration_images(self) -> Any:
        """The images the artifact's INT8 graph was calibrated on (NCHW float32, preprocessed), made again from the
        settings its manifest records (the default's where it has no INT8 graph): every INT8 path calibrates alike."""
        from dataclasses import fields

        from rbench.export.precision import Int8Config, calibration_data, calibration_for

        recorded = self.manifest["precisions"].get("int8", {}).get("settings", {})
        known = {f.name for f in fields(Int8Config)} - {"cache_dir", "keep_fp32_ops"}
        config = Int8Config(**{k: v for k, v in recorded.items() if k in known})
        return calibration_data(calibration_for(config, self.manifest["model"].get("trained")), self.preprocess)

    def folded_model(self) -> nn.Module:
        """The reference model with BatchNorm folded into its convolutions (what the torch backends run)."""
        from rbench.export.fold import fold_batchnorm

        return fold_batchnorm(self.reference_model()).module

    def reference_model(self) -> nn.Module:
        """The unfolded FP32 PyTorch model the artifact was exported from."""
        from rbench.models import create_model

        weights = self.path / WEIGHTS_FILE
        if not weights.is_file():
            raise BadInputError(f"{self.path} is missing {WEIGHTS_FILE}; export the artifact again")
        verify_sha256(weights, self.manifest["weights"]["file_sha256"], "manifest", "export")
        model = self.manifest["model"]
        return create_model(
            model["name"], weights=str(weights), num_classes=model["num_classes"], **model.get("options", {})
        )

    def export_command(self, add: list[str] = ()) -> str:  # type: ignore[assignment]
        """The ``rbench export`` command that rebuilds this very artifact (same weights, settings and folder) with
        the precisions it has plus ``add``."""
        m = self.manifest
        args = ["rbench", "export", "--model", self.model_name, "--weights", str(self.path / WEIGHTS_FILE)]
        args += ["--num-classes", str(self.num_classes)]
        args += [x for k, v in m["model"].get("options", {}).items() for x in (f"--{k.replace('_', '-')}", str(v))]
        export = m.get("export", {})
        args += ["--opset", str(export.get("opset", 17))]
        args += [] if export.get("dynamic_batch", True) else ["--static-batch"]
        args += ["--simplify"] if export.get("simplify") else []
        wanted = [p for p in EXPORTED if p in self.precisions or p in add]
        for precision in wanted:
            if get_precision(precision).variant_of in wanted:
                continue  # a variant calibrates like its precision, whose options are given
            args += _settings_args(precision, m["precisions"].get(precision, {}).get("settings", {}))
        args += ["--precision", ",".join(wanted), "--out", str(self.path.parent)]
        return shlex.join(args)


def _settings_args(precision: str, settings: dict[str, Any]) -> list[str]:
    from rbench.export.converters import CONVERTERS

    return CONVERTERS[precision].cli_args(settings) if precision in CONVERTERS else []


def precision_entry(path: Path, model: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one precision's ONNX file: name, digest, node counts and the settings that made it
    (parity is added later)."""
    from rbench.export.onnx_export import op_histogram

    histogram = op_histogram(model)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "nodes": sum(histogram.values()),
        "ops": histogram,
        "settings": settings,
    }
