"""Checkpoints rbench trains: ``.safetensors`` whose header carries JSON metadata (architecture, class names, input
size, normalization, how it was trained), so a file alone says what it is and ``rbench export --weights`` and
``rbench run --weights`` need nothing beside it.

The metadata sits in the safetensors header (its ``__metadata__`` string map, key ``rbench``): it travels with the
file and is read without loading a tensor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rbench._io import atomic_path
from rbench.data import Preprocess
from rbench.errors import BadInputError, first_line

META_KEY = "rbench"
FORMAT = "rbench-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model``'s state_dict and ``meta`` to ``path`` atomically (a temp file renamed into place)."""
    from safetensors.torch import save_file

    path = Path(path)
    module = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    header = {META_KEY: json.dumps({"format": FORMAT, "version": VERSION, **meta})}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=header)
    return path


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata of an rbench checkpoint; ``None`` for any other weights file (a torchvision state_dict)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # a corrupt header: the weights loader says so in its own words
        raise BadInputError(f"corrupt safetensors file {path}: {first_line(exc)}") from None
    if META_KEY not in header:
        return None
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError:
        raise BadInputError(f"{path}: its rbench metadata is not JSON; the file was edited or truncated") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "architecture" not in meta:
        raise BadInputError(f"{path}: rbench metadata without an architecture; not a checkpoint rbench wrote")
    return meta


def preprocess_from(meta: dict[str, Any]) -> Preprocess:
    return Preprocess.from_dict(meta["preprocess"])


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """The model an rbench checkpoint describes, with its weights, in eval mode, and the metadata."""
    from rbench.models.build import create_model

    meta = read_meta(path)
    if meta is None:
        raise BadInputError(
            f"{path} is not an rbench checkpoint (no metadata); give --model and --num-classes with "
            "rbench export --weights, or train one with rbench train"
        )
    model = create_model(
        meta["architecture"], weights=str(path), num_classes=int(meta["num_classes"]), **meta.get("options", {})
    )
    return model, meta


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor of ``state`` but the classifier's (``fc``, whose width may differ), strictly otherwise: a
    checkpoint of another architecture is refused in one line."""
    from rbench.models.weights import apply_state_dict

    apply_state_dict(model, state, source, skip="fc.")
