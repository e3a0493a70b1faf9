"""``rbench train``'s settings: ``TrainConfig`` with the defaults ``--help`` shows, checked before any data is read."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from rbench.data.datasets import check_data
from rbench.errors import BadInputError, EnvironmentProblem, unknown_choice
from rbench.train.augment import OPERATIONS, Augment

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
AMP_MODES = ("auto", "off", "bf16")
FREEZE = ("none", "backbone")
CONFIG_FILE, STATE_FILE, METRICS_FILE = "config.json", "state.pt", "metrics.json"
BEST, LAST = "best.safetensors", "last.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    model: str = "resnet20"
    data: str = "digits"
    val_data: str | None = None
    labels: str | None = None
    val_split: float = 0.2
    epochs: int = 30
    batch_size: int = 64  # the global batch: each of N torchrun processes takes batch_size / N
    optimizer: str = "sgd"
    lr: float | None = None  # None: 0.1 for SGD, 1e-3 for AdamW (a tenth of that for a full fine-tune's head)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_every: int = 0  # step schedule: epochs between decays (0: a third of the epochs)
    gamma: float = 0.1
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0  # linear warm-up of the learning rate, at most half the run (warmup())
    augment: str | None = None  # comma list of OPERATIONS, or none; None: every one (digits: all but flip)
    amp: str = "auto"
    freeze: str = "none"
    init: str | None = None
    backbone_lr: float = 0.1  # full fine-tune: the backbone's learning rate as a share of the head's
    feature_views: int = 1  # frozen backbone: cached feature passes over the training set (beyond 1: augmented)
    seed: int = 0
    out: str = "runs"
    resume: str | None = None
    threads: int = 0
    device: str = "auto"
    limit: int | None = None  # at most this many training images (smoke tests)
    shortcut: str | None = None  # CIFAR ResNets: A (zero-pad) or B (projection)

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        base = 0.1 if self.optimizer == "sgd" else 1e-3
        return base / 10 if self.init and self.freeze == "none" else base

    def warmup(self) -> float:
        """The warm-up in epochs: ``warmup_epochs``, shortened to half the run for short runs (``--epochs 1``
        warms up for half an epoch), so the default fits every valid ``--epochs``."""
        return min(self.warmup_epochs, self.epochs / 2)

    def augmentation(self) -> Augment:
        default = tuple(op for op in OPERATIONS if op != "flip") if self.data == "digits" else OPERATIONS
        return Augment.parse(self.augment, default)


@dataclass
class TrainResult:
    run_dir: Path | None  # None on every torchrun rank but 0
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def validate(config: TrainConfig) -> None:
    """Every setting checked before any data is read or model built."""
    from rbench.models import get_spec

    spec = get_spec(config.model)
    for name, value, allowed in (
        ("optimizer", config.optimizer, OPTIMIZERS),
        ("schedule", config.schedule, SCHEDULES),
        ("amp", config.amp, AMP_MODES),
        ("freeze", config.freeze, FREEZE),
        ("device", config.device, ("auto", "cpu", "cuda")),
    ):
        if value not in allowed:
            raise unknown_choice(name, value, allowed)
    positive = {"epochs": config.epochs, "batch_size": config.batch_size, "feature_views": config.feature_views}
    for name, value in positive.items():
        if value < 1:
            raise BadInputError(f"--{name.replace('_', '-')} must be 1 or more, got {value}")
    checks = (
        ("lr", config.lr is None or 0 < config.lr < 10),
        ("momentum", 0 <= config.momentum < 1),
        ("weight-decay", 0 <= config.weight_decay < 1),
        ("label-smoothing", 0 <= config.label_smoothing < 1),
        ("backbone-lr", 0 <= config.backbone_lr <= 1),
        ("gamma", 0 < config.gamma <= 1),
        ("warmup-epochs", 0 <= config.warmup_epochs <= 1000),
        ("seed", config.seed >= 0),
        ("threads", config.threads >= 0),
        ("limit", config.limit is None or config.limit >= 2),
    )
    for name, ok in checks:
        if not ok:
            raise BadInputError(f"--{name} {getattr(config, name.replace('-', '_'))} is out of range")
    if config.shortcut is not None and (spec.family != "cifar" or config.shortcut not in ("A", "B")):
        raise BadInputError("--shortcut takes A or B, and applies to the CIFAR ResNets only")
    config.augmentation()
    check_data(config.data, config.val_data, config.labels)
    if config.init is not None:
        check_init(config)
    if config.resume is not None and config.freeze == "backbone":
        raise BadInputError("--resume continues a full training; a frozen-backbone fine-tune simply runs again")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("--device cuda, but torch sees no CUDA device")
    if config.resume is None:
        from rbench._io import check_output_folder

        check_output_folder(Path(config.out))


def check_init(config: TrainConfig) -> None:
    """``--init`` exists and fits ``--model`` (everything but the classifier), before any data is read."""
    from rbench.models import create_model
    from rbench.models.checkpoint import load_backbone, read_meta
    from rbench.models.weights import load_state_dict_file

    if not Path(config.init or "").is_file():
        raise BadInputError(f"--init checkpoint not found: {config.init}")
    meta = read_meta(config.init)
    if meta is not None and meta["architecture"] != config.model:
        raise BadInputError(f"--init {config.init} is a {meta['architecture']} checkpoint, not {config.model}")
    options = {"shortcut": config.shortcut} if config.shortcut else {}
    load_backbone(create_model(config.model, weights="init", **options), load_state_dict_file(config.init), config.init)


def resume_config(run_dir: str | os.PathLike[str], **changes: Any) -> TrainConfig:
    """The configuration a run was started with, to continue it (``changes``: e.g. more epochs)."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, LAST, STATE_FILE):
        if not (run_dir / name).is_file():
            raise BadInputError(f"--resume {run_dir}: no {name}; not a training run folder, or it never ended an epoch")
    try:
        saved = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"--resume {run_dir}: unreadable {CONFIG_FILE} ({type(exc).__name__})") from None
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved.items() if k in known})
    return replace(config, resume=str(run_dir), **changes)
