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
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rbench._io import write_json_atomic
from rbench.errors import BadInputError, EnvironmentProblem, unknown_choice
from rbench.progress import Progress, Silent
from rbench.train.augment import OPERATIONS, Augment
from rbench.train.datasets import Dataset, check_data, load_dataset
from rbench.train.distributed import World, init, shutdown, world_from_env
from rbench.train.metrics import topk

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
    warmup_epochs: float = 1.0  # linear warm-up of the learning rate
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
        ("warmup-epochs", 0 <= config.warmup_epochs < config.epochs or config.warmup_epochs == 0),
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
        from rbench.export.pipeline import check_output_folder

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
    metrics = _metrics(config, data, history, extra)
    if run_dir is not None:
        from rbench.train.curves import write_curves

        write_json_atomic(run_dir / METRICS_FILE, metrics)
        write_curves(run_dir, history, f"{config.model} on {data.name}")
    world.barrier()
    return TrainResult(run_dir, metrics, history, notes + extra.get("notes", []))


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


def _parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    lr = config.learning_rate()
    decay = config.weight_decay
    head, backbone_decay, backbone_plain = [], [], []
    for name, p in model.named_parameters():
        if name.startswith("fc."):
            head.append(p)
        elif p.ndim <= 1:  # BatchNorm and biases: no weight decay
            backbone_plain.append(p)
        else:
            backbone_decay.append(p)
    scale = config.backbone_lr if config.init else 1.0
    return [
        {"params": backbone_decay, "lr": lr * scale, "weight_decay": decay},
        {"params": backbone_plain, "lr": lr * scale, "weight_decay": 0.0},
        {"params": head, "lr": lr, "weight_decay": decay},
    ]


def make_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate(), momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(params, lr=config.learning_rate())


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Any:
    """Linear warm-up, then cosine to zero or step decay; stepped once per optimizer step."""
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    every = (config.step_every or max(1, config.epochs // 3)) * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
        return config.gamma ** (step // every)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """What mixed precision runs in: bf16 on a GPU that has it (else fp16), bf16 on the CPU only on request."""
    if amp == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else None


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
    shard = math.ceil(len(data.train) / world.size)
    steps = math.ceil(shard / per_rank)
    optimizer = make_optimizer(_parameter_groups(model, config), config)
    schedule = make_schedule(optimizer, config, steps)
    dtype = autocast_dtype(config.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    history, start, best = _resume_state(config, model, optimizer, schedule)
    net = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if world.distributed
        else model
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    augment = config.augmentation()
    counters = {"optimizer_steps": 0, "batches": 0, "skipped_steps": 0}
    for epoch in range(start, config.epochs):
        progress.step(f"epoch {epoch + 1}/{config.epochs}", total=steps)
        began = time.perf_counter()
        order = _epoch_order(len(data.train), config.seed, epoch, world)
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 7919 + world.rank)
        net.train()
        loss_sum = correct = seen = 0.0
        for i in range(0, len(order), per_rank):
            index = order[i : i + per_rank]
            x = augment(data.train.x[index], gen).to(device, non_blocking=True)
            y = data.train.y[index].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = net(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scale_before = scaler.get_scale() if scaler.is_enabled() else None
            scaler.step(optimizer)
            scaler.update()
            counters["skipped_steps"] += int(scale_before is not None and scaler.get_scale() < scale_before)
            schedule.step()
            counters["batches"] += 1
            counters["optimizer_steps"] += 1
            loss_sum += float(loss.detach()) * len(index)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(index)
            progress.advance()
            progress.describe(
                f"epoch {epoch + 1}/{config.epochs}: loss {loss_sum / seen:.3f}, "
                f"train {correct / seen:.1%}, {seen * world.size / (time.perf_counter() - began):.0f} img/s"
            )
        loss_sum, correct, seen = world.sum(loss_sum, correct, seen)
        seconds = time.perf_counter() - began
        val = evaluate(model, data.val.x, data.val.y, device, dtype, config.label_smoothing)
        row = epoch_row(epoch, loss_sum, correct, seen, val, optimizer.param_groups[-1]["lr"], seconds)
        history.append(row)
        best = save_epoch(model, data, config, optimizer, schedule, history, best, run_dir)
        progress.note(epoch_line(row, config.epochs))
    extra: dict[str, Any] = {**counters, "precision": str(dtype).removeprefix("torch.") if dtype else "float32"}
    extra["device"] = str(device)
    extra["world_size"] = world.size
    return history, extra


def _epoch_order(n: int, seed: int, epoch: int, world: World) -> np.ndarray:
    """This rank's share of epoch ``epoch``'s shuffled order: ``DistributedSampler``'s under torchrun."""
    if world.distributed:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), world.size, world.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).numpy()


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype | None, batch: int = 256
) -> torch.Tensor:
    """Logits (float32, on the CPU) of ``model`` in eval mode over ``x``."""
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out.append(model(x[i : i + batch].to(device)).float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
    smoothing: float = 0.0,
) -> dict[str, float]:
    logits = predict(model, x, device, dtype)
    return scores(logits, y, smoothing)


def scores(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> dict[str, float]:
    loss = float(nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)) if len(y) else float("nan")
    return {"loss": loss, "top1": topk(logits.numpy(), y.numpy(), 1), "top5": topk(logits.numpy(), y.numpy(), 5)}


def epoch_row(
    epoch: int, loss_sum: float, correct: float, seen: float, val: dict[str, float], lr: float, seconds: float
) -> dict[str, Any]:
    """One epoch's line of the learning curves (``curves.csv``), from its running sums and validation scores."""
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / seen,
        "train_top1": correct / seen,
        **{f"val_{k}": v for k, v in val.items()},
        "lr": lr,
        "images_per_s": seen / seconds,
        "seconds": seconds,
    }


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.3f}, train {row['train_top1']:.1%}, "
        f"val {row['val_top1']:.1%} (top-5 {row['val_top5']:.1%}, loss {row['val_loss']:.3f}), "
        f"{row['images_per_s']:.0f} img/s, {row['seconds']:.1f} s"
    )


def checkpoint_meta(config: TrainConfig, data: Dataset, row: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint says of itself: enough for export, eval and predict with no other file."""
    from rbench.env import package_version

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


def _resume_state(
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


def _metrics(
    config: TrainConfig, data: Dataset, history: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
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
        **{k: v for k, v in extra.items() if k != "notes"},
    }
