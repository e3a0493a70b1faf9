"""``rbench train``: train or fine-tune a ResNet on labelled images; the last line of output is the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rbench.cli._common import app, choices, err, explicit, handle_errors, out, progress
from rbench.train.augment import OPERATIONS
from rbench.train.config import AMP_MODES, FREEZE, OPTIMIZERS, SCHEDULES

Optimizer = choices("Optimizer", OPTIMIZERS)
Schedule = choices("Schedule", SCHEDULES)
Amp = choices("Amp", AMP_MODES)
Freeze = choices("Freeze", FREEZE)


@app.command()
@handle_errors
def train(
    ctx: typer.Context,
    model: str = typer.Option("resnet20", help="Model name (see rbench inspect --list)."),
    data: str = typer.Option("digits", help="digits, synthetic, or a folder with one subfolder per class."),
    val_data: str = typer.Option(None, help="A validation folder (class subfolders) instead of a split of --data."),
    labels: str = typer.Option(None, help="Labels file mapping folder names to class names (CSV or 'n0 name')."),
    val_split: float = typer.Option(0.2, help="Share of --data held out for validation (stratified, seeded)."),
    epochs: int = typer.Option(30, help="Epochs."),
    batch_size: int = typer.Option(64, help="Global batch (torchrun: split over the processes)."),
    optimizer: Optimizer = typer.Option("sgd", help="SGD with Nesterov momentum, or AdamW."),  # type: ignore[valid-type]
    lr: float = typer.Option(None, help="Learning rate [default: SGD 0.1, AdamW 0.001; a tenth for a fine-tune]."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    weight_decay: float = typer.Option(5e-4, help="Weight decay (not on BatchNorm and biases)."),
    schedule: Schedule = typer.Option("cosine", help="Learning-rate schedule after a linear warm-up."),  # type: ignore[valid-type]
    step_every: int = typer.Option(0, help="Step schedule: epochs between decays (0: a third of --epochs)."),
    gamma: float = typer.Option(0.1, help="Step schedule: the decay factor."),
    warmup_epochs: float = typer.Option(1.0, help="Linear learning-rate warm-up, in epochs (at most half the run)."),
    label_smoothing: float = typer.Option(0.1, help="Label smoothing of the cross-entropy loss."),
    augment: str = typer.Option(
        None, help=f"Comma list of {', '.join(OPERATIONS)}, or none [default: all; digits: all but flip]."
    ),
    amp: Amp = typer.Option("auto", help="Mixed precision: auto (CUDA: bf16, or fp16), off, bf16 (also on CPU)."),  # type: ignore[valid-type]
    freeze: Freeze = typer.Option("none", help="backbone: train the head alone on cached backbone features."),  # type: ignore[valid-type]
    init: str = typer.Option(None, help="Start from this checkpoint (.safetensors/.pt); the head is replaced."),
    backbone_lr: float = typer.Option(0.1, help="Full fine-tune: the backbone's learning rate / the head's."),
    feature_views: int = typer.Option(1, help="--freeze backbone: feature passes over training (2+: augmented)."),
    shortcut: str = typer.Option(None, help="CIFAR ResNets: shortcut A (zero-pad) or B (projection)."),
    seed: int = typer.Option(0, help="Seed: split, initialization, order and augmentation."),
    threads: int = typer.Option(0, help="CPU threads (0: every core, shared among torchrun processes)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    limit: int = typer.Option(None, help="Train on at most this many images (a smoke test)."),
    resume: Path = typer.Option(None, help="Continue the run in this folder (to --epochs)."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Parent folder of run folders."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json instead of lines."),
) -> None:
    """Train a ResNet, or fine-tune one from a checkpoint, on digits, synthetic data or an image folder.

    Writes best.safetensors, last.safetensors, metrics.json and learning curves (CSV, PNG) into a new run folder,
    whose path is the last line of standard output. Works under torchrun: torchrun --nproc-per-node 2 -m rbench
    train ...
    """
    from dataclasses import replace

    from rbench.train.config import TrainConfig, resume_config
    from rbench.train.loop import train as run_training

    config = TrainConfig(
        model=model,
        data=data,
        val_data=val_data,
        labels=labels,
        val_split=val_split,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer.value,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule.value,
        step_every=step_every,
        gamma=gamma,
        label_smoothing=label_smoothing,
        warmup_epochs=warmup_epochs,
        augment=augment,
        amp=amp.value,
        freeze=freeze.value,
        init=init,
        backbone_lr=backbone_lr,
        feature_views=feature_views,
        seed=seed,
        out=str(out_dir),
        threads=threads,
        device=device,
        limit=limit,
        shortcut=shortcut.upper() if shortcut else None,
    )
    if resume is not None:
        given = [n for n in ("model", "data", "val_data", "labels", "init", "freeze") if explicit(ctx, n)]
        if given:
            from rbench.errors import BadInputError

            raise BadInputError(f"--resume continues the run as it was started; drop --{given[0].replace('_', '-')}")
        config = resume_config(resume, **({"epochs": epochs} if explicit(ctx, "epochs") else {}))
        config = replace(config, threads=threads, device=device)
    with progress(not as_json) as shown:
        result = run_training(config, shown)
    if result.run_dir is None:
        return  # a torchrun rank other than 0: rank 0 reports
    m = result.metrics
    if as_json:
        out.print_json(json.dumps(m))
    else:
        out.print(
            f"val top-1 {m['val_top1']:.2%} (best {m['best_val_top1']:.2%} at epoch {m['best_epoch']}), "
            f"top-5 {m['val_top5']:.2%}, {m['train_seconds']:.0f} s training, {m['images_per_s']:.0f} img/s",
            markup=False,
        )
    err.print(f"checkpoints, metrics.json and curves in {result.run_dir}", markup=False, soft_wrap=True)
    out.print(str(result.run_dir), markup=False, soft_wrap=True)
