"""Training and fine-tuning (``rbench train``), and the residual-learning experiments (``rbench experiment``).

>>> from rbench.train import TrainConfig, train
>>> result = train(TrainConfig(model="resnet20", data="digits", epochs=2))
>>> result.metrics["val_top1"]
"""

from __future__ import annotations

from rbench.train.config import TrainConfig, TrainResult
from rbench.train.loop import train

__all__ = ["TrainConfig", "TrainResult", "train"]
