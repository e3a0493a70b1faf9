"""Accuracy figures shared by training, ``rbench eval`` and ``rbench run --eval-data``."""

from __future__ import annotations

from typing import Any

import numpy as np


def topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` largest logits (k capped at the number of classes)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    best = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((best == labels[:, None]).any(axis=1).mean())


def confusion(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m


def accuracy(logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """top-1, top-5, the count, and the confusion matrix (rows: true class, columns: predicted)."""
    return {
        "top1": topk(logits, y, 1),
        "top5": topk(logits, y, 5),
        "images": len(y),
        "confusion": confusion(logits.argmax(1), y, logits.shape[1]).tolist(),
    }
