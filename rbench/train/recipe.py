"""The optimisation recipe: parameter groups (no weight decay on BatchNorm and biases), SGD/Nesterov or AdamW,
warm-up then cosine or step, the mixed-precision dtype, and the one seed function every epoch draws from."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from rbench.train.config import TrainConfig
from rbench.train.distributed import World


def epoch_seed(seed: int, epoch: int, rank: int | None = None) -> int:
    """The seed of epoch ``epoch``'s shuffled order (``rank`` None) or of one rank's augmentation: from the run's
    seed and the epoch alone, so a resumed run draws exactly what an uninterrupted one would."""
    base = seed * 1_000_003 + epoch
    return base if rank is None else base + epoch * 7918 + rank


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
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
    warmup = int(config.warmup() * steps_per_epoch)
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


def epoch_order(n: int, seed: int, epoch: int, world: World) -> np.ndarray:
    """This rank's share of epoch ``epoch``'s shuffled order: ``DistributedSampler``'s under torchrun."""
    if world.distributed:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), world.size, world.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).numpy()
