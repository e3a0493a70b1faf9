"""The model zoo: ``create_model(name, ...)`` and ``list_models()``.

>>> model = create_model("resnet50", weights="random", seed=0).eval()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbench.data import Preprocess
from rbench.errors import BadInputError
from rbench.models.build import create_model
from rbench.models.registry import ModelSpec, get_spec, list_models, register_model

__all__ = [
    "ModelConfig",
    "ModelSpec",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "with_checkpoint",
]

#: Builder options each model family takes, and their valid values.
FAMILY_OPTIONS: dict[str, dict[str, tuple[Any, ...]]] = {
    "imagenet": {"zero_init_residual": (True, False)},
    "cifar": {"shortcut": ("A", "B"), "zero_init_residual": (True, False)},
}


@dataclass(frozen=True)
class ModelConfig:
    """Which model and which weights."""

    name: str = "resnet50"
    weights: str = "random"  # "random" (seeded), "init", or a weights file
    seed: int = 0
    num_classes: int | None = None  # None: the model's own (1000 ImageNet, 10 CIFAR)
    options: dict[str, Any] = field(default_factory=dict)  # builder options such as shortcut="B"
    class_names: tuple[str, ...] | None = None  # the classifier's classes, in order, where known
    preprocess: Preprocess | None = None  # None: the model's own (a trained checkpoint records its own)
    trained: dict[str, Any] | None = None  # how a checkpoint rbench trained was made (data, split, epoch, accuracy)

    def create_kwargs(self) -> dict[str, Any]:
        return {"weights": self.weights, "seed": self.seed, "num_classes": self.num_classes, **self.options}


def with_checkpoint(config: ModelConfig, model_given: bool = True) -> ModelConfig:
    """``config`` completed from the metadata of an rbench checkpoint in ``config.weights`` (architecture, classes,
    class names, preprocessing, builder options); unchanged for any other weights. A ``--model`` or
    ``--num-classes`` that contradicts the checkpoint is refused in one line."""
    from dataclasses import replace

    from rbench.models.checkpoint import preprocess_from, read_meta

    meta = read_meta(config.weights) if config.weights not in ("random", "init") else None
    if meta is None:
        return config
    arch = meta["architecture"]
    if model_given and config.name != arch:
        raise BadInputError(
            f"{config.weights} is a {arch} checkpoint, not {config.name}: drop --model or use --model {arch}"
        )
    width = int(meta["num_classes"])
    if config.num_classes is not None and config.num_classes != width:
        raise BadInputError(f"{config.weights} has {width} classes; --num-classes {config.num_classes} contradicts it")
    names = config.class_names or (tuple(meta["class_names"]) if meta.get("class_names") else None)
    options = {**meta.get("options", {}), **config.options}
    trained = {k: meta[k] for k in ("dataset", "epoch", "val_top1", "val_top5") if k in meta}
    return replace(
        config,
        name=arch,
        num_classes=width,
        class_names=names,
        options=options,
        preprocess=preprocess_from(meta),
        trained=trained,
    )


def validate_model_config(config: ModelConfig) -> None:
    """Refuse a config that cannot make a model, before any model is built."""
    spec = get_spec(config.name)
    if config.num_classes is not None and config.num_classes < 1:
        raise BadInputError(f"--num-classes must be 1 or more, got {config.num_classes}")
    if config.seed < 0:
        raise BadInputError(f"--seed must be 0 or more, got {config.seed}")
    allowed = FAMILY_OPTIONS[spec.family]
    for key, value in config.options.items():
        if key not in allowed:
            raise BadInputError(f"--{key.replace('_', '-')} does not apply to {spec.name} (a {spec.family} model)")
        if value not in allowed[key]:
            choices = ", ".join(map(str, allowed[key]))
            raise BadInputError(f"--{key.replace('_', '-')} {value!r} is not valid; choose from {choices}")
    if config.weights not in ("random", "init"):
        path = Path(config.weights)
        if not path.is_file():
            raise BadInputError(f"weights file not found: {path} (or use --weights random|init)")
    classes = config.class_names
    if classes is not None:
        width = config.num_classes or spec.num_classes
        if len(classes) != width or len(set(classes)) != len(classes) or not all(classes):
            raise BadInputError(
                f"class names must be {width} distinct non-empty names, one per output; got {len(classes)}"
            )
