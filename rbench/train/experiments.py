"""The ideas behind ResNet, shown on real runs (``rbench experiment``).

- ``degradation``: plain-20 and plain-56 against ResNet-20 and ResNet-56 (CIFAR-style) trained on digits with the
  same budget, optimizer and seed; training error per epoch, the paper's figure 1 and 6. The verdict is measured,
  not assumed: the JSON and the output say whether the deeper plain net trained worse and the deeper ResNet did not.
- ``gradients``: the gradient norm of every convolution, input side to output side, at initialization and after some
  steps, for plain and residual nets of one depth, with and without BatchNorm, under Kaiming initialization and
  under PyTorch's default layer initialization.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rbench._io import atomic_path, write_json_atomic
from rbench.errors import BadInputError
from rbench.progress import Progress, Silent

EXPERIMENTS = ("degradation", "gradients")
DEGRADATION_DEPTHS = (20, 56)  # the shallower and the deeper net of each kind


def experiment_dir(out: str | Path, name: str) -> Path:
    from rbench._io import check_output_folder

    check_output_folder(Path(out))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(out) / f"experiment-{name}-{stamp}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def degradation(
    folder: Path,
    epochs: int = 15,
    seed: int = 0,
    lr: float = 0.1,
    limit: int | None = None,
    depths: tuple[int, int] = DEGRADATION_DEPTHS,
    progress: Progress = Silent(),
) -> dict[str, Any]:
    """Train the four nets on digits, no augmentation, identical settings; return and write the curves."""
    from rbench.train.config import TrainConfig
    from rbench.train.loop import train

    if epochs < 2:
        raise BadInputError(f"--epochs must be 2 or more, got {epochs}")
    base = TrainConfig(
        data="digits",
        epochs=epochs,
        augment="none",  # the figure is about optimization: training error on the training images themselves
        label_smoothing=0.0,
        weight_decay=1e-4,
        lr=lr,
        seed=seed,
        out=str(folder / "runs"),
        limit=limit,
    )
    curves: dict[str, Any] = {}
    for name in (f"{kind}{depth}" for kind in ("plain", "resnet") for depth in depths):
        progress.step(f"training {name}")
        result = train(replace(base, model=name), progress)
        curves[name] = {
            "train_error": [1 - h["train_top1"] for h in result.history],
            "val_error": [1 - h["val_top1"] for h in result.history],
            "train_loss": [h["train_loss"] for h in result.history],
            "seconds": result.metrics["train_seconds"],
            "run": str(result.run_dir),
        }
    found = {
        "experiment": "degradation",
        "settings": {
            k: v
            for k, v in vars(base).items()
            if k in ("epochs", "lr", "seed", "weight_decay", "batch_size", "optimizer", "schedule", "limit")
        },
        "dataset": "digits (training split: training error is measured on the batches as they train)",
        "models": curves,
        "verdict": degradation_verdict(curves, depths),
    }
    write_json_atomic(folder / "degradation.json", found)
    _degradation_png(folder / "degradation.png", curves, found["verdict"], depths)
    return found


#: How much higher (absolute) the deeper net's final training error must be to count as training worse.
MARGIN = 0.01


def degradation_verdict(curves: dict[str, Any], depths: tuple[int, int] = DEGRADATION_DEPTHS) -> dict[str, Any]:
    """Whether each effect showed, judged on where training ends: the mean training error of the last three epochs
    (robust to one noisy epoch), deep against shallow, for the plain and the residual pair. The mean over all
    epochs is reported too: a deeper net of either kind starts slower, which is not degradation."""

    def summary(deep: str, shallow: str) -> dict[str, Any]:
        d, s = curves[deep]["train_error"], curves[shallow]["train_error"]
        end_d, end_s = float(np.mean(d[-3:])), float(np.mean(s[-3:]))
        return {
            "deep": deep,
            "shallow": shallow,
            "final_train_error": [end_d, end_s],
            "mean_train_error": [float(np.mean(d)), float(np.mean(s))],
            "deeper_is_worse": bool(end_d > end_s + MARGIN),
        }

    shallow, deep = depths
    plain = summary(f"plain{deep}", f"plain{shallow}")
    residual = summary(f"resnet{deep}", f"resnet{shallow}")
    shows = plain["deeper_is_worse"] and not residual["deeper_is_worse"]
    figures = "; ".join(
        f"{p['deep']} {p['final_train_error'][0]:.1%} vs {p['shallow']} {p['final_train_error'][1]:.1%}"
        for p in (plain, residual)
    )
    figures = f"final training error {figures} (mean of the last 3 epochs)"
    if shows:
        line = f"degradation shown: the deeper plain net trains worse, the deeper ResNet does not: {figures}"
    else:
        line = f"degradation NOT shown at this budget: {figures}"
    return {"shown": shows, "plain": plain, "residual": residual, "summary": line, "margin": MARGIN}


def _degradation_png(path: Path, curves: dict[str, Any], verdict: dict[str, Any], depths: tuple[int, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, family in zip(axes, ("plain", "resnet"), strict=True):
        for depth, style in zip(depths, ("--", "-"), strict=True):
            name = f"{family}{depth}"
            errors = 100 * np.asarray(curves[name]["train_error"])
            ax.plot(range(1, len(errors) + 1), errors, style, marker="o", markersize=3, label=f"{name}")
        ax.set(xlabel="epoch", title="plain networks" if family == "plain" else "residual networks")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("training error (%)")
    fig.suptitle(verdict["summary"], fontsize=9, wrap=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def strip_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm replaced by the identity (the net "without BatchNorm")."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, nn.Identity())
        else:
            strip_batchnorm(child)
    return model


def default_init(model: nn.Module) -> nn.Module:
    """PyTorch's own layer initialization (Kaiming-uniform with a=√5: weights about a third of He's scale)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.reset_parameters()
    return model


def conv_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], float]:
    """The L2 norm of each convolution's weight gradient, input side first, on one batch in train mode; and the loss."""
    model.train()
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    norms = [float(m.weight.grad.norm()) if m.weight.grad is not None else float("nan") for m in _convs(model)]
    model.zero_grad(set_to_none=True)
    return norms, float(loss.detach())


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    """The 3×3 convolutions on the main path (shortcut projections left out), in forward order."""
    return [m for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in name]


def gradients(
    folder: Path, depth: int = 56, steps: int = 30, seed: int = 0, lr: float = 0.01, progress: Progress = Silent()
) -> dict[str, Any]:
    """Gradient norms per layer, at initialization and after ``steps`` SGD steps, for every variant."""
    from rbench.data.datasets import load_dataset
    from rbench.models import get_spec

    names = (f"plain{depth}", f"resnet{depth}")
    for name in names:
        get_spec(name)
    if steps < 1:
        raise BadInputError(f"--steps must be 1 or more, got {steps}")
    data = load_dataset("digits", get_spec(names[0]).preprocess, seed=seed)
    probe = data.train.x[:64], data.train.y[:64]
    variants: dict[str, Any] = {}
    for init in ("kaiming", "pytorch-default"):
        for name in names:
            for batchnorm in (True, False):
                key = f"{name} {'with' if batchnorm else 'without'} BatchNorm, {init} init"
                progress.step(key, total=steps)
                variants[key] = _gradient_variant(name, batchnorm, init, data.train, probe, (steps, lr, seed), progress)
    found = {
        "experiment": "gradients",
        "settings": {
            "depth": depth,
            "steps": steps,
            "lr": lr,
            "momentum": 0.9,
            "batch": 64,
            "seed": seed,
            "clip_norm": CLIP,
        },
        "variants": variants,
        "summary": _gradient_summary(variants),
    }
    write_json_atomic(folder / "gradients.json", found)
    _gradients_png(folder / "gradients.png", variants, found["settings"])
    return found


def _gradient_variant(
    name: str, batchnorm: bool, init: str, train: Any, probe: tuple, run: tuple[int, float, int], progress: Progress
) -> dict[str, Any]:
    """One variant's gradient norms per layer at initialization and after ``steps`` SGD steps."""
    from rbench.models import create_model

    steps, lr, seed = run
    torch.manual_seed(seed)
    model = create_model(name, weights="init", seed=seed)
    if init == "pytorch-default":
        default_init(model)
    if not batchnorm:
        strip_batchnorm(model)
    at_init, loss0 = conv_gradient_norms(model, *probe)
    trained_loss = _steps(model, train, steps, lr, seed, progress)
    after, loss1 = conv_gradient_norms(model, *probe)
    return {
        "model": name,
        "batchnorm": batchnorm,
        "init": init,
        "at_init": at_init,
        "after_steps": after,
        "loss_at_init": loss0,
        "loss_after_steps": loss1,
        "last_training_loss": trained_loss,
        "input_to_output_ratio_at_init": _ratio(at_init),
        "input_to_output_ratio_after": _ratio(after),
    }


CLIP = 5.0  # gradient-norm clip in the "after some steps" training, so that no variant diverges to NaN


def _steps(model: nn.Module, split: Any, steps: int, lr: float, seed: int, progress: Progress) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    model.train()
    for _ in range(steps):
        index = torch.randint(len(split), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(split.x[index]), split.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        progress.advance()
    return float(loss.detach())


def _ratio(norms: list[float]) -> float | None:
    """Gradient norm at the first convolution over that at the last: ≪ 1 vanishing, ≫ 1 exploding toward the input."""
    first, last = norms[0], norms[-1]
    if not (math.isfinite(first) and math.isfinite(last)) or last == 0:
        return None
    return first / last


def _gradient_summary(variants: dict[str, Any]) -> list[str]:
    lines = []
    for key, v in variants.items():
        norms = np.asarray(v["at_init"], dtype=float)
        median = float(np.nanmedian(norms))
        r = v["input_to_output_ratio_at_init"]
        if not np.isfinite(median) or median < 1e-8:
            what = f"vanished: median gradient norm {median:.1e}, the signal dies on the way and nothing learns"
        elif r is not None and r < 1e-2:
            what = f"vanishing toward the input: the first layer's gradient is {r:.1e} of the last's"
        elif r is not None and r > 1e2:
            what = f"exploding toward the input: the first layer's gradient is {r:.1e}× the last's"
        else:
            what = f"within two orders of magnitude across depth (first/last {r:.2g}×, median {median:.1e})"
        lines.append(f"{key}: {what}, at initialization")
    return lines


def _gradients_png(path: Path, variants: dict[str, Any], settings: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    styles = {
        (False, True): ("tab:red", "-"),
        (False, False): ("tab:red", ":"),
        (True, True): ("tab:blue", "-"),
        (True, False): ("tab:blue", ":"),
    }
    for col, init in enumerate(("kaiming", "pytorch-default")):
        for row, stage in enumerate(("at_init", "after_steps")):
            ax = axes[row][col]
            for v in variants.values():
                if v["init"] != init:
                    continue
                norms = np.asarray(v[stage], dtype=float)
                norms[~np.isfinite(norms) | (norms <= 0)] = np.nan
                colour, style = styles[(v["model"].startswith("resnet"), v["batchnorm"])]
                label = f"{v['model']} {'BN' if v['batchnorm'] else 'no BN'}"
                ax.plot(range(1, len(norms) + 1), norms, style, color=colour, label=label)
            when = "at initialization" if stage == "at_init" else f"after {settings['steps']} SGD steps"
            ax.set(yscale="log", title=f"{init} init, {when}", ylabel="‖∂loss/∂W‖ per convolution")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("convolution, input side → output side")
    fig.suptitle(f"Gradient norm per layer, depth {settings['depth']}, one batch of 64 digits", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
