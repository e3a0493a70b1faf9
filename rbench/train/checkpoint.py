"""A training run's files: the model it starts from, the checkpoints after each epoch with their metadata, the
resume state, and ``metrics.json``'s figures."""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rbench.data.datasets import Dataset
from rbench.errors import BadInputError
from rbench.train.config import BEST, LAST, STATE_FILE, TrainConfig


def build_model(config: TrainConfig, data: Dataset) -> tuple[nn.Module, list[str]]:
    """The model to train: fresh, or from ``init`` with a new head where the classes differ."""
    from rbench.models import create_model
    from rbench.models.checkpoint import load_backbone, read_meta
    from rbench.models.weights import apply_state_dict, load_state_dict_file

    options = {"shortcut": config.shortcut} if config.shortcut else {}
    classes = len(data.class_names)
    model = create_model(config.model, weights="init", seed=config.seed, num_classes=classes, **options)
    if config.init is None:
        return model, []
    meta = read_meta(config.init)  # its architecture and fit were checked by validate()
    state = load_state_dict_file(config.init)
    if meta is not None and meta.get("class_names") == data.class_names:
        apply_state_dict(model, state, config.init)
        return model, [f"initialized from {config.init}, its head kept (the same {classes} classes)"]
    load_backbone(model, state, config.init)
    old = next((v.shape[0] for k, v in state.items() if k == "fc.weight"), None)
    return model, [f"initialized from {config.init}; a new head for {classes} classes (the checkpoint's had {old})"]


def checkpoint_meta(config: TrainConfig, data: Dataset, row: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint says of itself: enough for export, eval and predict with no other file."""
    from rbench.env import package_version
    from rbench.train.distributed import world_from_env

    return {
        "architecture": config.model,
        "num_classes": len(data.class_names),
        "class_names": data.class_names,
        "preprocess": asdict(data.preprocess),
        "options": {"shortcut": config.shortcut} if config.shortcut else {},
        "dataset": data.source,
        "epoch": row["epoch"],
        "val_top1": row["val_top1"],
        "val_top5": row["val_top5"],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {"rbench": package_version("rbench"), "torch": torch.__version__},
        "topology": world_from_env().topology(),
    }


def save_epoch(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    history: list[dict[str, Any]],
    best: float,
    run_dir: Path | None,
) -> float:
    """last.safetensors and the resume state after every epoch; best.safetensors when validation improved."""
    row = history[-1]
    if run_dir is None:
        return max(best, row["val_top1"])
    from rbench._io import atomic_path
    from rbench.models.checkpoint import save_checkpoint

    meta = checkpoint_meta(config, data, row)
    save_checkpoint(run_dir / LAST, model, meta)
    state = {"epoch": row["epoch"], "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}
    with atomic_path(run_dir / STATE_FILE) as tmp:
        torch.save({**state, "history": history, "best": max(best, row["val_top1"])}, tmp)
    if row["val_top1"] > best or not (run_dir / BEST).exists():
        save_checkpoint(run_dir / BEST, model, meta)
    return max(best, row["val_top1"])


def resume_state(
    config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any
) -> tuple[list[dict[str, Any]], int, float]:
    if config.resume is None:
        return [], 0, -1.0
    from rbench.models.weights import apply_state_dict, load_state_dict_file

    run_dir = Path(config.resume)
    apply_state_dict(model, load_state_dict_file(run_dir / LAST), str(run_dir / LAST))
    try:
        state = torch.load(run_dir / STATE_FILE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    except Exception as exc:
        raise BadInputError(f"--resume {run_dir}: {STATE_FILE} does not fit this run ({type(exc).__name__})") from None
    if state["epoch"] >= config.epochs:
        raise BadInputError(
            f"--resume {run_dir}: it already trained {state['epoch']} epochs; ask for more with --epochs"
        )
    return list(state["history"]), int(state["epoch"]), float(state["best"])


def run_metrics(
    config: TrainConfig, data: Dataset, history: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    from rbench.train.distributed import world_from_env

    last = history[-1]
    best = max(history, key=lambda h: h["val_top1"])
    return {
        "model": config.model,
        "dataset": data.source,
        "classes": data.class_names,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "epochs": last["epoch"],
        "val_top1": last["val_top1"],
        "val_top5": last["val_top5"],
        "val_loss": last["val_loss"],
        "best_val_top1": best["val_top1"],
        "best_epoch": best["epoch"],
        "train_seconds": sum(h["seconds"] for h in history),
        "images_per_s": float(np.median([h["images_per_s"] for h in history])),
        "threads": torch.get_num_threads(),
        "topology": world_from_env().topology(),
        **{k: v for k, v in extra.items() if k != "notes"},
    }
