"""What ``rbench predict`` does: images in, top classes with softmax probabilities out, and the grid picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rbench.data import IMAGE_SUFFIXES, read_rgb
from rbench.errors import BadInputError
from rbench.export.artifact import Artifact
from rbench.progress import Progress, Silent


def gather_images(paths: list[Path]) -> list[Path]:
    """Image files as given, and the images in given folders (directly or one class folder down)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise BadInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BadInputError(f"image not found: {path}")
    return files


def predict_images(
    artifact: Artifact, files: list[Path], backend: str, precision: str, top: int, progress: Progress = Silent()
) -> list[dict[str, Any]]:
    from rbench.bench.accuracy import runner_logits
    from rbench.bench.plan import runner_for

    names = artifact.class_names or [str(i) for i in range(artifact.num_classes)]
    folders = _folder_names(artifact)
    pictures = [read_rgb(f) for f in files]  # every file checked before the model is loaded
    x = np.stack([artifact.preprocess(p) for p in pictures])
    progress.step(f"{backend} {precision}", total=len(files))
    with runner_for(artifact, backend, precision) as runner:
        logits = runner_logits(runner, x, artifact.input_name, progress)
    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    found = []
    for f, picture, p in zip(files, pictures, probs, strict=True):
        order = np.argsort(-p)[: min(top, len(names))]
        folder = folders.get(f.parent.name, f.parent.name)
        true = folder if folder in names else None
        found.append(
            {
                "file": str(f),
                "top": [{"class": names[i], "index": int(i), "probability": float(p[i])} for i in order],
                "true": true,
                "correct": None if true is None else names[order[0]] == true,
                "image": picture,
            }
        )
    return found


def _folder_names(artifact: Artifact) -> dict[str, str]:
    """Folder name -> class name, from the labels file the model was trained with (where it is still there)."""
    from rbench.data.datasets import read_labels_file

    labels = ((artifact.manifest["model"].get("trained") or {}).get("dataset") or {}).get("labels")
    return read_labels_file(Path(labels)) if labels and Path(labels).is_file() else {}


def draw_grid(path: Path, found: list[dict[str, Any]], columns: int = 6) -> Path:
    """Each image with its predicted class and probability; the true class under it where known; wrong in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbench._io import atomic_path

    rows = -(-len(found) // columns)
    cols = min(columns, len(found))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, found, strict=False):
        ax.imshow(p["image"], interpolation="nearest" if max(p["image"].shape[:2]) < 64 else "antialiased")
        first = p["top"][0]
        title = f"{first['class']} ({first['probability']:.0%})"
        if p["true"] is not None:
            title += f"\ntrue: {p['true']}"
        ax.set_title(title, fontsize=9, color="red" if p["correct"] is False else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
