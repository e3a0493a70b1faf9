"""The frozen-backbone recipe on ResNet-50, timed: a folder of about 100 images per class, training and
validation folders apart, a checkpoint the user owns, the backbone frozen, a new head; run twice, the second time
from the feature cache. Writes benchmarks/results/finetune.json.

The images are crops of five of scikit-image's photos (the only real colour photos that ship offline), 100
training and 20 validation images per class; the checkpoint is ResNet-50 with rbench's seeded random weights saved
as a plain torchvision-style state_dict (no ImageNet weights can be downloaded here), so the accuracy figure says
little about ImageNet features; the times are the point.

    .venv/bin/python benchmarks/finetune.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from rbench.data import builtin_photos

CLASSES = ("astronaut", "chelsea", "coffee", "rocket", "retina")
RESULTS = Path(__file__).parent / "results" / "finetune.json"


def make_folders(root: Path, train: int = 100, val: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    photos = builtin_photos()
    for split, count in (("train", train), ("valid", val)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            photo = photos[name]
            h, w = photo.shape[:2]
            for i in range(count):
                side = int(min(h, w) * rng.uniform(0.4, 0.9))
                top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
                crop = Image.fromarray(photo[top : top + side, left : left + side, :3]).resize((256, 256))
                crop.save(folder / f"{name}_{i:03d}.jpg", quality=90)


def main() -> None:
    import torch

    from rbench.models import create_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folders(root)
        checkpoint = root / "resnet50.pth"
        torch.save(create_model("resnet50", weights="random").state_dict(), checkpoint)
        rbench = [str(Path(sys.executable).with_name("rbench")), "train", "--model", "resnet50"]
        args = [
            "--init", str(checkpoint), "--freeze", "backbone", "--data", str(root / "train"),
            "--val-data", str(root / "valid"), "--epochs", "30", "--out", str(root / "runs"), "--json",
        ]  # fmt: skip
        runs = []
        for label in ("first run: features computed and cached", "second run: features from the cache"):
            start = time.perf_counter()
            done = subprocess.run([*rbench, *args], capture_output=True, text=True, check=True, env=os.environ)
            seconds = time.perf_counter() - start
            metrics = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
            runs.append(
                {
                    "run": label,
                    "wall_s": round(seconds, 1),
                    "feature_s": round(metrics["feature_cache"]["seconds"], 1),
                    "head_training_s": round(metrics["train_seconds"], 2),
                    "cache_hit": metrics["feature_cache"]["hit"],
                    "val_top1": metrics["val_top1"],
                    "train_images": metrics["train_images"],
                    "val_images": metrics["val_images"],
                    "threads": metrics["threads"],
                }
            )
            print(json.dumps(runs[-1]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"classes": list(CLASSES), "cores": os.cpu_count(), "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
