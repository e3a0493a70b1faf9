"""``create_model``: a registered ResNet built, initialised or loaded, in eval mode."""

from __future__ import annotations

from typing import Any

from torch import nn

from rbench.errors import BadInputError
from rbench.models import zoo as _zoo  # noqa: F401  (registers the models)
from rbench.models.registry import get_spec
from rbench.models.weights import apply_state_dict, load_state_dict_file, randomize


def create_model(
    name: str,
    *,
    weights: str = "init",
    seed: int = 0,
    num_classes: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model in eval mode.

    Args:
        name: a name from ``list_models()``.
        weights: ``"init"`` (fresh torchvision-style initialisation, BatchNorm at identity), ``"random"`` (seeded,
            with non-trivial BatchNorm statistics) or a path to ``.safetensors``/``.pt``/``.pth``.
        seed: seed for ``"init"`` and ``"random"``.
        num_classes: width of the classifier; ``None`` keeps the model's own (1000 ImageNet, 10 CIFAR).
        **kwargs: builder options, e.g. ``shortcut="B"`` or ``zero_init_residual=True``.
    """
    import torch

    spec = get_spec(name)
    torch.manual_seed(seed)
    try:
        model = spec.builder(num_classes=num_classes or spec.num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{name}: {exc}") from None
    if weights == "random":
        randomize(model, seed, spec.preprocess)
    elif weights != "init":
        apply_state_dict(model, load_state_dict_file(weights), weights)
    return model.eval()
