"""The artifact directory: ``artifacts/<model>-<digest>/`` with ONNX models, weights and ``manifest.json``.

The manifest says what the artifact is (model, input, preprocessing), where it came from (weights digest, versions)
and how good it is (parity per precision). Opening an artifact verifies what it reads: a file that cannot be parsed
is bad input (exit 2); a file that parses but does not match its recorded SHA-256 was tampered with (exit 3).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from rbench._io import sha256_file
from rbench.data import Preprocess
from rbench.errors import ArtifactError, BadInputError

MANIFEST = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"
PRECISION_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Artifact:
    """An opened artifact directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Artifact:
        """Open an artifact directory (or a file inside one) and read its manifest."""
        path = Path(path)
        directory = path.parent if path.is_file() else path
        if not directory.is_dir():
            raise BadInputError(f"artifact directory not found: {path}")
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise BadInputError(f"{directory} is not an rbench artifact: it has no {MANIFEST} (run rbench export)")
        try:
            manifest = json.loads(manifest_path.read_text())
            _ = manifest["model"]["name"], manifest["precisions"], manifest["weights"]["file_sha256"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"corrupt manifest {manifest_path}: {exc}") from None
        if manifest.get("schema") != SCHEMA_VERSION:
            raise ArtifactError(
                f"rebuild required: {directory} has manifest schema {manifest.get('schema')}, "
                f"this rbench reads schema {SCHEMA_VERSION}"
            )
        return cls(directory, manifest)

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
    def preprocess(self) -> Preprocess:
        p = self.manifest["model"]["preprocess"]
        return Preprocess(size=p["size"], resize=p["resize"], mean=tuple(p["mean"]), std=tuple(p["std"]))

    @property
    def precisions(self) -> list[str]:
        return list(self.manifest["precisions"])

    def onnx_path(self, precision: str) -> Path:
        """The verified ONNX file of one precision."""
        if precision not in PRECISION_FILES:
            raise BadInputError(f"unsupported precision {precision!r}; choose from {', '.join(PRECISION_FILES)}")
        entry = self.manifest["precisions"].get(precision)
        if entry is None:
            raise BadInputError(
                f"{self.path} has no {precision} model (it has {', '.join(self.precisions)}); "
                f"export it with: rbench export --model {self.model_name} --precision {precision}"
            )
        from rbench.export.onnx_export import load_onnx

        path = self.path / entry["file"]
        load_onnx(path)  # unreadable: bad input, exit 2
        self._verify(path, entry["sha256"])
        return path

    def reference_model(self) -> nn.Module:
        """The unfolded FP32 PyTorch model the artifact was exported from."""
        from rbench.models import create_model

        weights = self.path / WEIGHTS_FILE
        if not weights.is_file():
            raise BadInputError(f"{self.path} is missing {WEIGHTS_FILE}; export the artifact again")
        self._verify(weights, self.manifest["weights"]["file_sha256"])
        model = self.manifest["model"]
        return create_model(
            model["name"], weights=str(weights), num_classes=model["num_classes"], **model.get("options", {})
        )

    def _verify(self, path: Path, expected: str) -> None:
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"rebuild required: {path.name} in {self.path} was modified after export "
                f"(sha256 {actual[:12]}…, manifest says {expected[:12]}…)"
            )


def precision_entry(path: Path, model: Any) -> dict[str, Any]:
    """The manifest entry of one precision's ONNX file: name, digest and node counts (parity is added later)."""
    from rbench.export.onnx_export import op_histogram

    histogram = op_histogram(model)
    return {"file": path.name, "sha256": sha256_file(path), "nodes": sum(histogram.values()), "ops": histogram}
