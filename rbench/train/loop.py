"""``rbench train``: a ResNet trained or fine-tuned on labelled images, with curves, checkpoints and resume.

- SGD with momentum or AdamW; cosine or step schedule stepped once per optimizer step; weight decay; label
  smoothing. Exactly one optimizer step per batch, also under mixed precision: bf16 autocast (CUDA where the GPU has
  it, the CPU on request) needs no loss scaling, so no step is ever skipped; FP16 on an older GPU uses a GradScaler
  and the steps it skips are counted in ``metrics.json``.
- Fine-tuning: ``init`` loads any compatible state_dict (an rbench checkpoint, a torchvision ResNet) and replaces
  the classifier when the classes differ. ``freeze="backbone"`` trains the head alone on backbone features computed
  once and cached (``rbench.train.features``); a full fine-tune gives the backbone a lower learning rate.
- Under torchrun every rank trains its ``DistributedSampler`` share with DDP; only rank 0 writes.
- Epoch ``e`` draws its order and augmentation from ``seed`` and ``e`` alone, so a resumed run continues exactly.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rbench._io import write_json_atomic
from rbench.data.datasets import Dataset, load_dataset
from rbench.progress import Progress, Silent
from rbench.train.checkpoint import build_model, resume_state, run_metrics, save_epoch
from rbench.train.config import CONFIG_FILE, LAST, METRICS_FILE, TrainConfig, TrainResult, validate
from rbench.train.distributed import World, init, shutdown, world_from_env
from rbench.train.epoch import epoch_line, epoch_row, evaluate
from rbench.train.recipe import autocast_dtype, epoch_order, epoch_seed, make_optimizer, make_schedule, parameter_groups


def train(config: TrainConfig, progress: Progress = Silent()) -> TrainResult:
    """Train (or fine-tune, or resume) one model; return its run folder and final figures."""
    validate(config)
    world = world_from_env()
    device = _device(config.device, world)
    init(world, device)
    try:
        torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // world.local_size))
        shown = progress if world.writer else Silent()
        return _train(config, world, device, shown)
    finally:
        shutdown(world)


def _device(name: str, world: World) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", world.local_rank % max(1, torch.cuda.device_count()))


def _train(config: TrainConfig, world: World, device: torch.device, progress: Progress) -> TrainResult:
    from rbench.models import get_spec

    spec = get_spec(config.model)
    data = load_dataset(
        config.data,
        spec.preprocess,
        val_data=config.val_data,
        labels=config.labels,
        val_split=config.val_split,
        seed=config.seed,
        limit=config.limit,
        progress=progress,
    )
    progress.note(data.describe())
    model, notes = build_model(config, data)
    for note in notes:
        progress.note(note)
    run_dir = _run_dir(config, data) if world.writer else None
    if run_dir is not None:
        write_json_atomic(run_dir / CONFIG_FILE, asdict(replace(config, resume=None)))
    try:
        if config.freeze == "backbone":
            from rbench.train.features import train_head

            history, extra = train_head(model, data, config, device, progress, run_dir)
        else:
            history, extra = _fit(model, data, config, world, device, progress, run_dir)
    except BaseException:
        if run_dir is not None and config.resume is None and not (run_dir / LAST).exists():
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)  # stopped before its first epoch: nothing to resume
        raise
    metrics = run_metrics(config, data, history, extra)
    if run_dir is not None:
        from rbench.train.curves import write_curves

        write_json_atomic(run_dir / METRICS_FILE, metrics)
        write_curves(run_dir, history, f"{config.model} on {data.name}")
    world.barrier()
    return TrainResult(run_dir, metrics, history, notes + extra.get("notes", []))


def _run_dir(config: TrainConfig, data: Dataset) -> Path:
    if config.resume is not None:
        return Path(config.resume)
    out = Path(config.out)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out / f"{config.model}-{_slug(data.name)}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = Path(f"{base}-{n}")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "data"


@dataclass
class _Step:
    """What one optimizer step needs, and the counts of a run: batches, real optimizer steps, skipped steps."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    dtype: torch.dtype | None
    device: torch.device
    counts: dict[str, int]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: forward under autocast, backward, one optimizer step (unless the GradScaler skips it for
        inf/NaN gradients: then it is counted as skipped, not as a step), one schedule step."""
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = self.net(x)
            loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        skipped = scale_before is not None and self.scaler.get_scale() < scale_before
        self.schedule.step()
        self.counts["batches"] += 1
        self.counts["skipped_steps" if skipped else "optimizer_steps"] += 1
        return logits, loss


def _fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    world: World,
    device: torch.device,
    progress: Progress,
    run_dir: Path | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from torch.nn.parallel import DistributedDataParallel

    model.to(device)
    per_rank = max(1, config.batch_size // world.size)
    steps = math.ceil(math.ceil(len(data.train) / world.size) / per_rank)
    optimizer = make_optimizer(parameter_groups(model, config), config)
    schedule = make_schedule(optimizer, config, steps)
    dtype = autocast_dtype(config.amp, device)
    history, start, best = resume_state(config, model, optimizer, schedule)
    net = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if world.distributed
        else model
    )
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    step = _Step(net, optimizer, schedule, scaler, loss_fn, dtype, device, dict.fromkeys(COUNTS, 0))
    for epoch in range(start, config.epochs):
        progress.step(f"epoch {epoch + 1}/{config.epochs}", total=steps)
        began = time.perf_counter()
        loss_sum, correct, seen = world.sum(*_epoch(step, data, config, world, epoch, per_rank, progress))
        seconds = time.perf_counter() - began
        val = evaluate(model, data.val.x, data.val.y, device, dtype, config.label_smoothing)
        row = epoch_row(epoch, loss_sum, correct, seen, val, optimizer.param_groups[-1]["lr"], seconds)
        history.append(row)
        best = save_epoch(model, data, config, optimizer, schedule, history, best, run_dir)
        progress.note(epoch_line(row, config.epochs))
    extra: dict[str, Any] = {**step.counts, "precision": str(dtype).removeprefix("torch.") if dtype else "float32"}
    extra["device"] = str(device)
    extra["world_size"] = world.size
    return history, extra


COUNTS = ("optimizer_steps", "batches", "skipped_steps")


def _epoch(
    step: _Step, data: Dataset, config: TrainConfig, world: World, epoch: int, per_rank: int, progress: Progress
) -> tuple[float, float, float]:
    """One epoch of this rank's share, in the order and augmentation its seed gives; the running loss, the
    correct predictions and the images seen."""
    began = time.perf_counter()
    order = epoch_order(len(data.train), config.seed, epoch, world)
    gen = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, world.rank))
    augment = config.augmentation()
    step.net.train()
    loss_sum = correct = seen = 0.0
    for i in range(0, len(order), per_rank):
        index = order[i : i + per_rank]
        x = augment(data.train.x[index], gen).to(step.device, non_blocking=True)
        y = data.train.y[index].to(step.device, non_blocking=True)
        logits, loss = step(x, y)
        loss_sum += float(loss.detach()) * len(index)
        correct += float((logits.argmax(1) == y).sum())
        seen += len(index)
        progress.advance()
        progress.describe(
            f"epoch {epoch + 1}/{config.epochs}: loss {loss_sum / seen:.3f}, "
            f"train {correct / seen:.1%}, {seen * world.size / (time.perf_counter() - began):.0f} img/s"
        )
    return loss_sum, correct, seen
