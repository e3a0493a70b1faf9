"""The frozen-backbone recipe: backbone features computed once, cached on disk, and only the head trained on them.

A ResNet-50 forward pass is most of a CPU's time per image; the head is one matrix. Computing each training and
validation image's pooled features once turns a fine-tune of hours into minutes. The cache file's name is a digest
of everything the features depend on: the backbone's weights (so the checkpoint), every preprocessed pixel and
label (so the data and the preprocessing), the augmented views asked for, their seed, and the torch version. When
any of them changes the digest changes, and the old file is never read.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rbench.data.datasets import Dataset
from rbench.progress import Progress

FEATURE_BATCH = 32


def feature_key(model: nn.Module, data: Dataset, views: int, augment: Any, seed: int) -> str:
    from rbench.models.weights import state_dict_sha256

    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    parts = {
        "backbone": state_dict_sha256(backbone),
        "data": data.digest(),
        "views": views,
        "augment": list(augment.operations) if views > 1 else [],
        "seed": seed if views > 1 else None,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@torch.no_grad()
def _features(
    backbone: nn.Module, x: torch.Tensor, device: torch.device, progress: Progress, augment: Any = None, gen: Any = None
) -> torch.Tensor:
    out = []
    for i in range(0, len(x), FEATURE_BATCH):
        batch = x[i : i + FEATURE_BATCH]
        if augment is not None:
            batch = augment(batch, gen)
        out.append(backbone(batch.to(device)).float().cpu())
        progress.advance(len(batch))
    return torch.cat(out)


def cached_features(
    model: nn.Module,
    data: Dataset,
    views: int,
    augment: Any,
    seed: int,
    cache_dir: Path,
    device: torch.device,
    progress: Progress,
) -> tuple[dict[str, torch.Tensor], Path, bool]:
    """Training features (``views`` passes: the plain images, then augmented ones) and validation features, from
    the cache when its key matches, else computed and cached. Returns them, the cache file, and whether it was hit."""
    from safetensors.torch import load_file, save_file

    from rbench._io import atomic_path

    key = feature_key(model, data, views, augment, seed)
    path = cache_dir / f"features-{key[:32]}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path)), path, True
        except Exception:  # a damaged cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
    backbone = _backbone(model).to(device).eval()
    total = len(data.train) * views + len(data.val)
    progress.step(f"computing backbone features once ({views} view{'s' * (views > 1)})", total=total)
    gen = torch.Generator().manual_seed(seed)
    train = [_features(backbone, data.train.x, device, progress)]
    train += [_features(backbone, data.train.x, device, progress, augment, gen) for _ in range(views - 1)]
    found = {
        "train": torch.cat(train),
        "train_labels": data.train.y.repeat(views),
        "val": _features(backbone, data.val.x, device, progress),
        "val_labels": data.val.y.clone(),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in found.items()}, str(tmp))
    return found, path, False


def _backbone(model: nn.Module) -> nn.Module:
    """The model up to its pooled, flattened features (its classifier replaced by the identity)."""
    import copy

    backbone = copy.copy(model)  # shallow: shares every layer, so no weights are copied
    backbone._modules = dict(model._modules)
    backbone.fc = nn.Identity()
    return backbone


def _only_head_trains(model: nn.Module) -> nn.Module:
    """Freeze everything but ``model.fc``; returns the head."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.fc.parameters():
        p.requires_grad_(True)
    return model.fc


def _head_epoch(head: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, recipe: tuple) -> tuple[float, float]:
    """One pass over shuffled features, one optimizer and schedule step per batch; the loss sum and correct count."""
    optimizer, schedule, loss_fn = recipe
    loss_sum = correct = 0.0
    for i in range(0, len(x), batch):
        logits = head(x[i : i + batch])
        loss = loss_fn(logits, y[i : i + batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum += float(loss.detach()) * len(logits)
        correct += float((logits.argmax(1) == y[i : i + batch]).sum())
    return loss_sum, correct


def train_head(
    model: nn.Module, data: Dataset, config: Any, device: torch.device, progress: Progress, run_dir: Path | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train ``model.fc`` alone on cached features; the backbone, BatchNorm statistics included, stays as loaded."""
    from rbench.train.checkpoint import save_epoch
    from rbench.train.epoch import epoch_line, epoch_row, scores
    from rbench.train.recipe import epoch_seed, make_optimizer, make_schedule

    cache_dir = Path(config.out) / ".cache" / "features"
    began = time.perf_counter()
    feats, path, hit = cached_features(
        model, data, config.feature_views, config.augmentation(), config.seed, cache_dir, device, progress
    )
    feature_seconds = time.perf_counter() - began
    note = f"features {'reused from' if hit else 'cached in'} {path} ({feature_seconds:.1f} s)"
    progress.note(note)
    if config.feature_views == 1 and config.augmentation().operations:
        progress.note("no augmentation on cached features: --feature-views N adds N-1 augmented backbone passes")
    head = _only_head_trains(model)
    x, y = feats["train"], feats["train_labels"].long()
    steps = -(-len(x) // config.batch_size)
    optimizer = make_optimizer(head.parameters(), config)
    for group in optimizer.param_groups:
        group["weight_decay"] = config.weight_decay
    schedule = make_schedule(optimizer, config, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history: list[dict[str, Any]] = []
    best = -1.0
    counters = {"optimizer_steps": 0, "batches": 0}
    for epoch in range(config.epochs):
        progress.step(f"head epoch {epoch + 1}/{config.epochs}", total=steps)
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)))
        loss_sum, correct = _head_epoch(head, x[order], y[order], config.batch_size, (optimizer, schedule, loss_fn))
        counters["optimizer_steps"] += steps
        counters["batches"] += steps
        progress.advance(steps)
        with torch.no_grad():
            val = scores(head(feats["val"]), feats["val_labels"].long(), config.label_smoothing)
        seconds = time.perf_counter() - start
        history.append(epoch_row(epoch, loss_sum, correct, len(x), val, optimizer.param_groups[0]["lr"], seconds))
        best = save_epoch(model, data, config, optimizer, schedule, history, best, run_dir)
    for p in model.parameters():
        p.requires_grad_(True)
    progress.note(epoch_line(history[-1], config.epochs))
    extra = {
        **counters,
        "feature_cache": {"file": str(path), "hit": hit, "seconds": feature_seconds},
        "precision": "float32",
        "device": str(device),
        "world_size": 1,
        "notes": [note],
    }
    return history, extra
