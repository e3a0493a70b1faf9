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
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError, ValueError, and whatever garbage headers provoke
        raise BadInputError(f"corrupt safetensors file {path}: {first_line(exc)}") from None


def _load_weights_only(path: Path) -> StateDict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "global" in reason.lower() or _pickle_imports(path):  # what a code-running pickle needs
            raise BadInputError(
                f"refusing to load {path}: it is not a weights-only checkpoint ({reason}); "
                "re-save it as a plain state_dict or .safetensors"
            ) from None
        raise BadInputError(f"corrupt checkpoint {path}: not a PyTorch weights file ({reason})") from None
    except Exception as exc:  # random bytes reach the unpickler as IndexError, KeyError, struct.error and friends
        raise BadInputError(f"corrupt checkpoint {path}: not a PyTorch weights file ({type(exc).__name__})") from None


def _pickle_imports(path: Path) -> bool:
    """Whether a plain pickle file names Python objects to import (random bytes are not a pickle at all)."""
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        return False
    try:
        for opcode, _, _ in pickletools.genops(path.read_bytes()):
            if opcode.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ"):
                return True
    except Exception:  # not a pickle stream
        return False
    return False


def _unpickler_reason(exc: BaseException) -> str:
    """The line of torch's long weights-only message that says what was refused, whole, not cut mid-sentence."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.split("WeightsUnpickler error:")[-1].strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line and not line.startswith(boilerplate)]
    reason = lines[0] if lines else type(exc).__name__
    return reason.split(" was not an allowed global")[0].split(". ")[0].rstrip(".")


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


def apply_state_dict(model: nn.Module, state: StateDict, source: str, skip: str | None = None) -> None:
    """``load_state_dict(strict=True)`` with a one-line message saying what does not fit; tensors named
    ``skip…`` (a classifier to be replaced, ``"fc."``) are left out on both sides."""
    if skip is not None:
        state = {k: v for k, v in state.items() if not k.startswith(skip)}
    own = {k: v for k, v in model.state_dict().items() if skip is None or not k.startswith(skip)}
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
        problems.append(f"{len(shapes)} of other shape (first {shapes[0]})")
    head = [
        k for k in own if k.endswith(".weight") and own[k].dim() == 2 and k in state and state[k].shape != own[k].shape
    ]
    if head and len(shapes) <= 2:
        problems.append(
            f"the file's classifier has {state[head[0]].shape[0]} classes, this model's has {own[head[0]].shape[0]}"
        )
    if problems:
        raise BadInputError(f"weights {source} do not fit this model: " + "; ".join(problems))
    model.load_state_dict(state, strict=skip is None)


@torch.no_grad()
def randomize(model: nn.Module, seed: int, preprocess: Preprocess, batches: int = 4, batch: int = 8) -> None:
    """Seeded random weights that behave like a trained network where rbench measures them.

    - BatchNorm gamma and beta are perturbed, then running mean and variance are collected in train mode over
      augmented real photos, so the statistics are far from (0, 1) yet consistent with the activations.
    - Each residual branch is scaled down (``RESIDUAL_BRANCH_SCALE``), which keeps the deep network from amplifying
      rounding the way a chaotic random network does.
    - The classifier is a seeded random layer plus a linear probe that gives each built-in photo its own class by a
      clear margin, so top-1 agreement on the photos tests numerics rather than coin-flips between near-tied logits.

    Deterministic for a given seed, model and torch version.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.weight.uniform_(0.5, 1.5, generator=gen)
        bn.bias.normal_(0.0, 0.2, generator=gen)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all passes
    _scale_residual_branches(model, RESIDUAL_BRANCH_SCALE)
    was_training = model.training
    model.train()
    images = augmented_photos(batches * batch, preprocess, seed=seed)
    for i in range(batches):
        model(torch.from_numpy(images[i * batch : (i + 1) * batch]))
    for bn in bns:
        bn.momentum = 0.1
    if getattr(model, "residual", True) is False:
        _plain_batchnorm_as_scale(bns)
    model.eval()
    _fit_head(model, torch.from_numpy(np.concatenate([images, _center_crops(preprocess)])), gen)
    model.train(was_training)


#: Scale of each residual branch's last BatchNorm gamma in random weights. Measured on ResNet-50 with the INT8 QDQ
#: artifact on the photos: at 1.0 (no scaling) a deep random ResNet is chaotic and INT8 logits reach only cosine 0.45
#: against FP32; at 0.1 they reach 0.988, as trained networks do.
RESIDUAL_BRANCH_SCALE = 0.1
#: Logit margin of the linear probe over the random part of the classifier (whose logits are about N(0, 1)).
HEAD_MARGIN = 8.0


def _center_crops(preprocess: Preprocess) -> np.ndarray:
    """The built-in photos as inference sees them (photo ``i`` at index ``i``), for the head's probe."""
    from rbench.data import builtin_photos, preprocess_batch

    return preprocess_batch(builtin_photos(), preprocess)


def _plain_batchnorm_as_scale(bns: list[nn.BatchNorm2d]) -> None:
    """In a plain (shortcut-free) network, make each BatchNorm compute ``u * x`` (``u``: its perturbed gamma) while
    keeping its measured, far-from-identity statistics, so folding stays a real transformation.

    A deep random plain network whose BatchNorms renormalise every layer is chaotic (Yang et al., 2019, "A mean
    field theory of batch normalization"): rounding is amplified layer after layer. Measured on plain20 against
    PyTorch FP32 on the photos: FP16 worst cosine 0.99972 and INT8 0.49 (top-1 5/8) with renormalising
    BatchNorms; 0.99998 and 0.95 (top-1 8/8) with this. Deeper plain nets stay chaotic either way (README).
    """
    for bn in bns:
        u = bn.weight.detach().clone()
        std = torch.sqrt(bn.running_var + bn.eps)
        bn.weight.copy_(std * u)
        bn.bias.copy_(bn.running_mean * u)


def _scale_residual_branches(model: nn.Module, scale: float) -> None:
    from rbench.models.resnet import BasicBlock, Bottleneck

    for m in model.modules():
        if isinstance(m, BasicBlock | Bottleneck) and m.residual:
            m.last_bn().weight.mul_(scale)


def _fit_head(model: nn.Module, images: torch.Tensor, gen: torch.Generator) -> None:
    """Random classifier with unit-variance logits, plus a ridge probe mapping photo ``i % n`` to a chosen class.

    ``images`` are augmented crops of the built-in photos in order, so image ``i`` shows photo ``i % n``.
    """
    from rbench.data import BUILTIN_PHOTOS

    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda mod, inputs, output: captured.append(inputs[0]))
    model(images)
    hook.remove()
    feats = captured[0].double()
    mean = feats.mean(0)
    centered = feats - mean
    scale = centered.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)  # typical norm of a centered feature
    weight = torch.randn(head.out_features, head.in_features, generator=gen, dtype=torch.float64) / scale
    n_photos = min(len(BUILTIN_PHOTOS), head.out_features, len(images))
    targets = torch.zeros(len(images), n_photos, dtype=torch.float64)
    targets[torch.arange(len(images)), torch.arange(len(images)) % n_photos] = 1.0
    targets -= targets.mean(0)
    gram = centered @ centered.T
    ridge = 1e-3 * gram.diagonal().mean()
    probe = centered.T @ torch.linalg.solve(gram + ridge * torch.eye(len(images), dtype=torch.float64), targets)
    classes = torch.randperm(head.out_features, generator=gen)[:n_photos]
    weight[classes] += HEAD_MARGIN * probe.T
    head.weight.copy_(weight.to(head.weight.dtype))
    head.bias.copy_((-(weight @ mean)).to(head.bias.dtype))


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
