"""Where a model's numbers come from: a file the user points at, or seeded random weights.

Files are loaded without executing code: ``.safetensors`` directly, ``.pt``/``.pth`` with ``weights_only=True`` and
no fallback. Random weights get BatchNorm statistics that are far from identity (measured on real photos in train
mode) and perturbed affine parameters, so that folding BatchNorm is a real transformation a broken fold cannot pass.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rbench.data import Preprocess, augmented_photos
from rbench.errors import BadInputError, first_line

StateDict = dict[str, torch.Tensor]
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def load_state_dict_file(path: str | os.PathLike[str]) -> StateDict:
    """Read a state_dict from ``.safetensors`` or a weights-only ``.pt``/``.pth``; refuse anything else."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise BadInputError(f"unsupported weights file {path.name}: expected one of {', '.join(WEIGHT_SUFFIXES)}")
    state = _load_safetensors(path) if suffix == ".safetensors" else _load_weights_only(path)
    state = _unwrap(state, path)
    check_finite(state, str(path))
    return state


def _load_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInputError(f"corrupt safetensors file {path}: {exc}") from None


def _load_weights_only(path: Path) -> StateDict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc)
        raise BadInputError(
            f"refusing to load {path}: it is not a weights-only checkpoint ({first}); "
            "re-save it as a plain state_dict or .safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise BadInputError(f"corrupt checkpoint {path}: {first_line(exc)}") from None


def _unwrap(obj: object, path: Path) -> StateDict:
    """Accept ``{"state_dict": ...}``/``{"model": ...}`` wrappers and DataParallel's ``module.`` prefix."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise BadInputError(f"{path} holds no state_dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BadInputError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    if all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def check_finite(state: StateDict, source: str) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BadInputError(f"{source}: NaN or Inf in {len(bad)} tensor(s), first {bad[0]}; refusing these weights")


def apply_state_dict(model: nn.Module, state: StateDict, source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line message saying what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} of other shape (first {shapes[0]}; is --num-classes right?)")
    if problems:
        raise BadInputError(f"weights {source} do not fit this model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


@torch.no_grad()
def randomize(model: nn.Module, seed: int, preprocess: Preprocess, batches: int = 2, batch: int = 8) -> None:
    """Seeded random weights with non-trivial BatchNorm statistics and affine parameters.

    Running mean and variance are the cumulative statistics of train-mode passes over augmented real photos, then
    gamma and beta are perturbed. Deterministic for a given seed, model and torch version.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.reset_parameters()
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.normal_(0.0, 0.1, generator=gen)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all passes
    was_training = model.training
    model.train()
    images = augmented_photos(batches * batch, preprocess, seed=seed)
    for i in range(batches):
        model(torch.from_numpy(images[i * batch : (i + 1) * batch]))
    for bn in bns:
        bn.momentum = 0.1
        bn.weight.uniform_(0.5, 1.5, generator=gen)
        bn.bias.normal_(0.0, 0.2, generator=gen)
    _scale_residual_branches(model, RESIDUAL_BRANCH_SCALE)
    model.eval()
    _standardize_head(model, torch.from_numpy(images))
    model.train(was_training)


#: Scale of each residual branch's last BatchNorm gamma in random weights. Without it a deep random ResNet is chaotic:
#: rounding its weights to FP16 moved the logits of ResNet-50 to cosine 0.9997; at 0.3 it is 0.99994, close to what
#: trained networks show, so FP16 and INT8 parity measure the conversion rather than an ill-conditioned network.
RESIDUAL_BRANCH_SCALE = 0.3


def _scale_residual_branches(model: nn.Module, scale: float) -> None:
    from rbench.models.resnet import BasicBlock, Bottleneck

    for m in model.modules():
        if isinstance(m, BasicBlock | Bottleneck) and m.residual:
            m.last_bn().weight.mul_(scale)


def _standardize_head(model: nn.Module, images: torch.Tensor) -> None:
    """Rescale the last Linear so each logit has mean 0 and std 1 over ``images``.

    A deep random network tends to give every image the same top class; standardized logits make predictions differ
    between images, so that top-1 agreement between backends is a real test.
    """
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    logits = model(images)
    mean, std = logits.mean(0), logits.std(0).clamp_min(1e-6)
    head.weight.div_(std[:, None])
    head.bias.sub_(mean).div_(std)


def state_dict_sha256(state: StateDict) -> str:
    """A digest of names, dtypes, shapes and values, independent of how the dict was serialized."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def to_numpy_state(state: StateDict) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
