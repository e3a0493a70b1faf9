"""The model registry: a dict of names to builders, as small as torchvision's ``_api.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from rbench.data import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from rbench.errors import unknown_choice


@dataclass(frozen=True)
class ModelSpec:
    """What rbench needs to know about a model beyond its weights."""

    name: str
    builder: Callable[..., nn.Module]
    family: str  # "imagenet" or "cifar"
    num_classes: int
    preprocess: Preprocess
    residual: bool = True  # False: the plain twin, with no shortcuts

    @property
    def bounds_family(self) -> str:
        """Which parity bounds apply: ``plain`` nets, else the family (``imagenet``, ``cifar``)."""
        return self.family if self.residual else "plain"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.preprocess.size, self.preprocess.size)


_REGISTRY: dict[str, ModelSpec] = {}

IMAGENET_PREPROCESS = Preprocess(size=224, resize=256, mean=IMAGENET_MEAN, std=IMAGENET_STD)
CIFAR_PREPROCESS = Preprocess(size=32, resize=36, mean=CIFAR_MEAN, std=CIFAR_STD)


def register_model(
    name: str, family: str, num_classes: int, preprocess: Preprocess, residual: bool = True
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder under ``name``; registering a name twice is an error."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, builder, family, num_classes, preprocess, residual)
        return builder

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY, key=_natural_key)


def _natural_key(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    return (stem, int(name[len(stem) :] or 0))


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_choice("model", name, list_models()) from None
