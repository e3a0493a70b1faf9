"""Labelled images for training and evaluation, preprocessed once into tensors that inference would see.

Sources: ``digits`` (scikit-learn's 1,797 8×8 digits, upscaled, stratified split), ``synthetic`` (seeded, learnable
noise, for smoke tests), a folder with one subfolder per class (split by ``val_split``), or separate training and
validation folders with an optional labels file mapping folder names to class names (the Kaggle layout:
``n0``…``n9`` beside ``monkey_labels.txt``).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rbench.data import Preprocess, check_image_folder, image_files, labelled_dirs, read_rgb
from rbench.errors import BadInputError
from rbench.progress import Progress, Silent

BUILTIN_DATASETS = ("digits", "synthetic")


@dataclass
class Split:
    """Normalized NCHW float32 images (the evaluation transform), their labels, and where each came from."""

    x: torch.Tensor
    y: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray | list[int]) -> Split:
        index = np.asarray(index, dtype=np.int64)
        return Split(self.x[index], self.y[index], [self.names[i] for i in index])


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    class_names: list[str]
    preprocess: Preprocess
    source: dict  # how it was made: recorded in the checkpoint, keyed in the feature cache

    def describe(self) -> str:
        counts = np.bincount(self.train.y.numpy(), minlength=len(self.class_names))
        return (
            f"{self.name}: {len(self.train)} training and {len(self.val)} validation images, "
            f"{len(self.class_names)} classes ({counts.min()} to {counts.max()} training images per class), "
            f"{self.preprocess.size}×{self.preprocess.size}"
        )

    def digest(self) -> str:
        """A digest of every pixel and label after preprocessing: any change of data or preprocessing changes it."""
        h = hashlib.sha256(repr(self.preprocess).encode())
        for split in (self.train, self.val):
            h.update(split.x.numpy().tobytes())
            h.update(split.y.numpy().tobytes())
        return h.hexdigest()


def check_data(data: str, val_data: str | None = None, labels: str | None = None) -> None:
    """Cheap checks before any model is built: names, folders and files exist."""
    if data not in BUILTIN_DATASETS:
        _class_folders(Path(data), "--data")
    elif val_data is not None:
        raise BadInputError(f"--val-data applies to a folder dataset; {data} makes its own validation split")
    if val_data is not None:
        _class_folders(Path(val_data), "--val-data")
    if labels is not None and not Path(labels).is_file():
        raise BadInputError(f"--labels file not found: {labels}")
    if labels is not None and data in BUILTIN_DATASETS:
        raise BadInputError(f"--labels applies to a folder dataset, not {data}")


def load_dataset(
    data: str,
    preprocess: Preprocess,
    *,
    val_data: str | None = None,
    labels: str | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    limit: int | None = None,
    progress: Progress = Silent(),
) -> Dataset:
    """The training and validation splits of ``data`` (``digits``, ``synthetic`` or a folder of class folders)."""
    if not 0 < val_split < 1:
        raise BadInputError(f"--val-split must be between 0 and 1, got {val_split}")
    check_data(data, val_data, labels)
    if data == "digits":
        dataset = _digits(preprocess, seed, val_split)
    elif data == "synthetic":
        dataset = _synthetic(preprocess, seed)
    else:
        dataset = _folders(Path(data), val_data, labels, preprocess, val_split, seed, progress)
    if limit is not None:
        dataset = replace(dataset, train=dataset.train.take(range(min(limit, len(dataset.train)))))
    return dataset


def _digits(preprocess: Preprocess, seed: int, val_split: float) -> Dataset:
    from rbench.data import digits_arrays, digits_split

    images, target = digits_arrays()
    train, val = digits_split(seed, val_split)
    # 8×8 upscaled whole (no crop) to the model's input size, bilinear, as preprocessing does
    whole = replace(preprocess, resize=preprocess.size)
    x = torch.from_numpy(np.stack([whole(img) for img in images]))
    y = torch.from_numpy(target)
    names = [f"digits/{i}" for i in range(len(y))]
    everything = Split(x, y, names)
    return Dataset(
        "digits",
        everything.take(train),
        everything.take(val),
        [str(d) for d in range(10)],
        whole,
        {"name": "digits", "seed": seed, "val_split": val_split},
    )


def _synthetic(preprocess: Preprocess, seed: int, classes: int = 4, per_class: int = 160) -> Dataset:
    """Noise around one smooth random pattern per class: learnable in a few steps, for smoke tests."""
    gen = torch.Generator().manual_seed(seed)
    size = preprocess.size
    patterns = torch.nn.functional.interpolate(torch.randn(classes, 3, 4, 4, generator=gen), size=(size, size))
    y = torch.arange(classes).repeat_interleave(per_class)
    x = 2 * patterns[y] + 0.5 * torch.randn(len(y), 3, size, size, generator=gen)
    order = torch.randperm(len(y), generator=gen).numpy()
    everything = Split(x.float(), y, [f"synthetic/{i}" for i in range(len(y))]).take(order)
    cut = int(len(y) * 0.75)
    return Dataset(
        "synthetic",
        everything.take(range(cut)),
        everything.take(range(cut, len(y))),
        [f"class{i}" for i in range(classes)],
        preprocess,
        {"name": "synthetic", "seed": seed},
    )


def _class_folders(folder: Path, what: str) -> list[Path]:
    """The class folders of a labelled image folder (``folder/<class>/<image>``), checked."""
    check_image_folder(folder, what)
    dirs = labelled_dirs(folder)
    if not dirs:
        raise BadInputError(f"{what} {folder}: images but no class folders; put each class in {folder}/<class>/")
    return dirs


def read_labels_file(path: Path) -> dict[str, str]:
    """Folder name → class name from a labels file: CSV (``n0, alouatta_palliata, mantled_howler, …`` with a header
    naming the columns), tab-separated, or ``folder name`` per line. The class name is the column headed
    "common name", "class name" or "name" where there is one, else the second column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"--labels {path}: cannot read it as text ({type(exc).__name__})") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise BadInputError(f"--labels {path} is empty")
    delimiter = "," if "," in lines[0] else "\t" if "\t" in lines[0] else None
    if delimiter:
        rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)]
    else:
        rows = [line.split(None, 1) for line in lines]
    if any(len(r) < 2 or not r[0] or not r[1] for r in rows):
        raise BadInputError(f"--labels {path}: every line needs a folder name and a class name")
    column = 1
    header = [c.lower().replace("_", " ") for c in rows[0]]
    if any(h in ("label", "folder", "class", "id", "directory") for h in header[:1]) or "name" in " ".join(header):
        for wanted in ("common name", "class name", "name"):
            if wanted in header:
                column = header.index(wanted)
                break
        rows = rows[1:]
    mapping = {r[0]: r[column] if column < len(r) else r[1] for r in rows}
    if len(set(mapping.values())) != len(mapping):
        raise BadInputError(f"--labels {path}: two folders share a class name")
    return mapping


def _folders(
    train_dir: Path,
    val_dir: str | None,
    labels: str | None,
    preprocess: Preprocess,
    val_split: float,
    seed: int,
    progress: Progress,
) -> Dataset:
    dirs = _class_folders(train_dir, "--data")
    if len(dirs) < 2:
        raise BadInputError(f"--data {train_dir} has one class folder ({dirs[0].name}); a classifier needs two or more")
    folders = [d.name for d in dirs]
    val_dirs = _class_folders(Path(val_dir), "--val-data") if val_dir else []
    absent = [d.name for d in val_dirs if d.name not in folders]
    if absent:
        raise BadInputError(f"validation classes absent from training: {', '.join(absent)} (in {val_dir})")
    names = folders
    if labels is not None:
        mapping = read_labels_file(Path(labels))
        missing = [f for f in folders if f not in mapping]
        extra = [f for f in mapping if f not in folders]
        if missing or extra:
            parts = [f"no entry for folder(s) {', '.join(missing)}" if missing else ""]
            parts.append(f"entries for no training folder: {', '.join(extra)}" if extra else "")
            raise BadInputError(
                f"--labels {labels} does not match the folders of {train_dir}: " + "; ".join(p for p in parts if p)
            )
        names = [mapping[f] for f in folders]
    files = [(p, i) for i, d in enumerate(dirs) for p in image_files(d)]
    val_files = [(p, folders.index(d.name)) for d in val_dirs for p in image_files(d)]
    progress.step("reading and preprocessing images", total=len(files) + len(val_files))
    everything = read_images(files, preprocess, progress, train_dir)
    if val_dir:
        train, val = everything, read_images(val_files, preprocess, progress, Path(val_dir))
    else:
        train_idx, val_idx = _stratified(everything.y.numpy(), val_split, seed, train_dir)
        train, val = everything.take(train_idx), everything.take(val_idx)
    source = {
        "name": train_dir.name,
        "train": str(train_dir.resolve()),  # absolute: eval and export find them from any folder
        "val": str(Path(val_dir).resolve()) if val_dir else None,
        "labels": str(Path(labels).resolve()) if labels else None,
        "seed": seed,
    }
    if not val_dir:
        source["val_split"] = val_split
    return Dataset(train_dir.name, train, val, names, preprocess, source)


def read_images(files: list[tuple[Path, int]], preprocess: Preprocess, progress: Progress, root: Path) -> Split:
    """``(file, label)`` pairs read and preprocessed one at a time (never every full-size image at once)."""
    x = np.empty((len(files), 3, preprocess.size, preprocess.size), np.float32)
    for i, (path, _) in enumerate(files):
        x[i] = preprocess(read_rgb(path))
        progress.advance()
    names = [str(p.relative_to(root)) for p, _ in files]
    return Split(torch.from_numpy(x), torch.tensor([label for _, label in files], dtype=torch.int64), names)


def _stratified(y: np.ndarray, val_split: float, seed: int, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    if counts.min() < 2:
        raise BadInputError(f"--data {folder}: a class has one image; --val-split needs two or more per class")
    index = np.arange(len(y))
    n_val = max(len(counts), round(len(y) * val_split))
    if n_val >= len(y) - len(counts) + 1:
        raise BadInputError(f"--data {folder}: too few images ({len(y)}) to split {val_split:.0%} for validation")
    train, val = train_test_split(index, test_size=n_val, stratify=y, random_state=seed, shuffle=True)
    return np.sort(train), np.sort(val)
