"""``rbench experiment``: the residual-learning paper's ideas on real runs (degradation, vanishing gradients)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rbench.cli._common import app, choices, handle_errors, out, progress
from rbench.train.experiments import EXPERIMENTS

Experiment = choices("Experiment", EXPERIMENTS)


@app.command()
@handle_errors
def experiment(
    name: Experiment = typer.Argument(..., help="degradation or gradients."),  # type: ignore[valid-type]
    epochs: int = typer.Option(15, help="degradation: epochs per model (same for all four)."),
    depth: int = typer.Option(56, help="gradients: depth of the plain and residual nets (20, 32, 44, 56, 110)."),
    steps: int = typer.Option(30, help="gradients: SGD steps before the second measurement."),
    seed: int = typer.Option(0, help="Seed of the split, initialization and order."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Parent folder of the experiment's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """degradation: plain-20/56 vs ResNet-20/56 on digits, training error per epoch (about 6 minutes on 2 cores).
    gradients: gradient norm per layer at initialization and after some steps, plain vs residual, with and without
    BatchNorm (about 2 minutes). JSON and PNG go into a new folder, the last line of standard output."""
    from rbench.errors import BadInputError
    from rbench.train.experiments import degradation, experiment_dir, gradients

    if seed < 0:
        raise BadInputError(f"--seed must be 0 or more, got {seed}")
    from rbench.models.zoo import CIFAR_DEPTHS

    if depth not in CIFAR_DEPTHS:
        raise BadInputError(f"--depth must be a CIFAR ResNet depth ({', '.join(map(str, CIFAR_DEPTHS))}), got {depth}")
    if epochs < 2 or steps < 1:
        raise BadInputError("--epochs must be 2 or more and --steps 1 or more")
    folder = experiment_dir(out_dir, name.value)
    try:
        with progress(not as_json) as shown:
            if name.value == "degradation":
                found = degradation(folder, epochs=epochs, seed=seed, progress=shown)
                lines = [found["verdict"]["summary"]]
            else:
                found = gradients(folder, depth=depth, steps=steps, seed=seed, progress=shown)
                lines = found["summary"]
    except BaseException:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)  # an experiment is its figures: half of one is nothing
        raise
    if as_json:
        out.print_json(json.dumps(found))
    else:
        for line in lines:
            out.print(line, markup=False, soft_wrap=True)
    out.print(str(folder), markup=False, soft_wrap=True)
