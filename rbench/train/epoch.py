"""One epoch's figures: predictions and scores on a split, the learning-curve row and its progress line."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rbench.data.metrics import topk


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
