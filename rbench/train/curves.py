"""Learning curves: one CSV row per epoch, and a PNG of loss and accuracy, training against validation."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rbench._io import atomic_path, write_bytes_atomic

COLUMNS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "images_per_s", "seconds")


def write_curves(folder: Path, history: list[dict[str, Any]], title: str) -> tuple[Path, Path]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_bytes_atomic(folder / "curves.csv", buffer.getvalue().encode())
    png = folder / "curves.png"
    _plot(png, history, title)
    return folder / "curves.csv", png


def _plot(path: Path, history: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(10, 4))
    loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="training")
    loss.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc.plot(epochs, [100 * h["train_top1"] for h in history], "o-", label="training (augmented)")
    acc.plot(epochs, [100 * h["val_top1"] for h in history], "s-", label="validation")
    acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    for ax in (loss, acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
