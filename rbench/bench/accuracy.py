"""Accuracy of a model on labelled images: a checkpoint in PyTorch, or an artifact on any backend and precision.

``rbench eval`` and ``rbench run --eval-data`` share this. The evaluation set is preprocessed exactly as the model
was trained (the checkpoint's or artifact's recorded preprocessing). ``digits`` is the validation split the
checkpoint was trained against (its recorded seed); a folder is every image in its class folders, labelled by the
model's class names, except the folder a model was trained on with a validation split, whose validation split is
used (the training images are not a fair test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rbench.data import Preprocess, check_image_folder, class_labels, image_files, labelled_dirs
from rbench.errors import BadInputError
from rbench.progress import Progress, Silent
from rbench.runtime.base import Runner

EVAL_BATCH = 32


@dataclass
class EvalSet:
    x: np.ndarray  # NCHW float32, preprocessed
    y: np.ndarray  # int64 indices into the model's classes
    names: list[str]
    description: str
    notes: list[str] = field(default_factory=list)


def eval_set(
    data: str,
    preprocess: Preprocess,
    class_names: list[str] | None,
    num_classes: int,
    trained: dict[str, Any] | None = None,
    labels: str | None = None,
    progress: Progress = Silent(),
) -> EvalSet:
    """The labelled images ``data`` names (``digits`` or a folder), for a model with these classes. ``labels``
    maps folder names to class names (default: the labels file the model was trained with, if it is still there)."""
    from rbench.data.datasets import load_dataset

    source = (trained or {}).get("dataset") or {}
    seed = int(source.get("seed", 0))
    if data == "digits":
        if num_classes != 10 or (class_names and class_names != [str(d) for d in range(10)]):
            raise BadInputError("--data digits needs a model of the 10 digit classes 0..9")
        split = load_dataset("digits", preprocess, seed=seed, val_split=source.get("val_split", 0.2)).val
        return _from_split(split, f"digits validation split (seed {seed}): {len(split)} images")
    folder = check_image_folder(data, "--data")
    if source.get("train") and Path(source["train"]).resolve() == folder.resolve() and not source.get("val"):
        split = load_dataset(
            data, preprocess, labels=source.get("labels"), val_split=source["val_split"], seed=seed, progress=progress
        ).val
        found = _from_split(split, f"{folder.name}: the validation split the model was trained against")
        found.notes.append(f"{folder} is the model's training folder: its {len(split)} held-out images are used")
        return found
    labels = labels or (source.get("labels") if source.get("labels") and Path(source["labels"]).is_file() else None)
    found = _folder(folder, preprocess, class_names, num_classes, labels, progress)
    if source.get("train") and Path(source["train"]).resolve() == folder.resolve():
        found.notes.append(f"{folder} is the folder the model was trained on: this is training accuracy")
    return found


def artifact_eval_set(artifact: Any, data: str, labels: str | None = None, progress: Progress = Silent()) -> EvalSet:
    """``eval_set`` for an artifact: its preprocessing, classes and training record."""
    trained = artifact.manifest["model"].get("trained")
    return eval_set(data, artifact.preprocess, artifact.class_names, artifact.num_classes, trained, labels, progress)


def _from_split(split: Any, description: str) -> EvalSet:
    return EvalSet(split.x.numpy(), split.y.numpy(), list(split.names), description)


def _folder(
    folder: Path,
    preprocess: Preprocess,
    class_names: list[str] | None,
    num_classes: int,
    labels: str | None,
    progress: Progress,
) -> EvalSet:
    from rbench.data.datasets import read_images, read_labels_file

    dirs = labelled_dirs(folder)
    if not dirs:
        raise BadInputError(f"--data {folder}: no class folders; accuracy needs labelled images ({folder}/<class>/)")
    named = read_labels_file(Path(labels)) if labels else {}
    unnamed = [d.name for d in dirs if named and d.name not in named]
    if unnamed:
        raise BadInputError(f"--labels {labels} has no entry for folder(s) {', '.join(unnamed)}")
    folders = [named.get(d.name, d.name) for d in dirs]
    classes, mapping = class_labels(folders, class_names, num_classes)
    files = [(p, classes[name]) for d, name in zip(dirs, folders, strict=True) for p in image_files(d)]
    progress.step("reading and preprocessing images", total=len(files))
    split = read_images(files, preprocess, progress, folder)
    skipped = image_files(folder)
    found = _from_split(split, f"{folder.name}: {len(files)} images in {len(dirs)} class folders (by {mapping})")
    if skipped:
        found.notes.append(f"skipped {len(skipped)} loose image(s) beside the class folders")
    return found


def runner_logits(runner: Runner, x: np.ndarray, input_name: str, progress: Progress = Silent()) -> np.ndarray:
    """Logits of an active runner over ``x``, in batches of ``EVAL_BATCH``."""
    from rbench.bench.parity import infer_in_batches

    out = []
    for i in range(0, len(x), EVAL_BATCH):
        outputs = infer_in_batches(runner, {input_name: x[i : i + EVAL_BATCH]})
        out.append(next(iter(outputs.values())))
        progress.advance(len(x[i : i + EVAL_BATCH]))
    return np.concatenate(out)


def torch_logits(model: Any, x: np.ndarray, progress: Progress = Silent()) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), EVAL_BATCH):
            out.append(model(torch.from_numpy(x[i : i + EVAL_BATCH])).float().numpy())
            progress.advance(len(x[i : i + EVAL_BATCH]))
    return np.concatenate(out)


def confusion_png(path: Path, matrix: list[list[int]], class_names: list[str], title: str) -> Path:
    """The confusion matrix as a PNG, each class by name, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbench._io import atomic_path

    m = np.asarray(matrix)
    used = np.flatnonzero(m.sum(0) + m.sum(1))  # a 1000-class head: only classes that occur
    m = m[np.ix_(used, used)]
    names = [class_names[i] if i < len(class_names) else str(i) for i in used]
    side = min(16, 2 + 0.5 * len(used))
    fig, ax = plt.subplots(figsize=(side + 1, side))
    shown = ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(used)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(used)), names)
    if len(used) <= 30:
        for (i, j), count in np.ndenumerate(m):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", color="white" if i == j else "black", fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
