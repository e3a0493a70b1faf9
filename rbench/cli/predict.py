"""``rbench predict``: the top classes of each image, by name, from an artifact; optionally a picture grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rbench.cli._common import add_columns, app, handle_errors, out, progress, table
from rbench.precisions import PRECISIONS
from rbench.runtime.registry import BACKENDS, DEFAULT_BACKEND


@app.command()
@handle_errors
def predict(
    images: list[Path] = typer.Argument(..., help="Image files, or folders of them (class folders give true labels)."),
    artifact: Path = typer.Option(..., help="The artifact directory to run."),
    backend: str = typer.Option(DEFAULT_BACKEND, help=f"One of {', '.join(BACKENDS)}."),
    precision: str = typer.Option("fp32", help=f"One of {', '.join(PRECISIONS)}."),
    top: int = typer.Option(5, help="Classes shown per image."),
    grid: Path = typer.Option(None, help="Also draw the images with predicted and true labels into this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as JSON."),
) -> None:
    """Top classes with probabilities for each image. The true label is the image's folder name where that folder
    names one of the model's classes; --grid marks wrong predictions in red."""
    from rbench.bench.predict import draw_grid, gather_images, predict_images
    from rbench.errors import BadInputError
    from rbench.export.artifact import Artifact
    from rbench.precisions import get_precision
    from rbench.runtime import get_backend

    get_backend(backend), get_precision(precision)  # an unknown name: exit 2 listing the valid ones, first
    if top < 1:
        raise BadInputError(f"--top must be 1 or more, got {top}")
    if grid is not None and grid.suffix.lower() != ".png":
        raise BadInputError(f"--grid writes a PNG: give a path ending in .png, not {grid}")
    opened = Artifact.open(artifact)
    files = gather_images(images)
    with progress(not as_json) as shown:
        found = predict_images(opened, files, backend, precision, top, shown)
        if grid is not None:
            shown.step(f"drawing {grid}")
            draw_grid(grid, found)
    if as_json:
        out.print_json(json.dumps([{k: v for k, v in p.items() if k != "image"} for p in found]))
        return
    out.print(_table(found, opened.manifest["model"]["name"], backend, precision))
    labelled = [p for p in found if p["true"] is not None]
    if labelled:
        right = sum(p["correct"] for p in labelled)
        out.print(f"{right} of {len(labelled)} labelled images right", markup=False)
    if grid is not None:
        out.print(str(grid), markup=False, soft_wrap=True)


def _table(found: list[dict[str, Any]], model: str, backend: str, precision: str) -> Any:
    t = table(title=f"{model} on {backend} {precision}")
    add_columns(
        t,
        ("image", "prediction", "probability", "true", "top classes"),
        left=("image", "prediction", "true", "top classes"),
    )
    for p in found:
        first = p["top"][0]
        verdict = "" if p["true"] is None else (f"{p['true']} ✓" if p["correct"] else f"[red]{p['true']} ✗[/]")
        rest = ", ".join(f"{c['class']} {c['probability']:.1%}" for c in p["top"][1:])
        t.add_row(p["file"], first["class"], f"{first['probability']:.1%}", verdict, rest)
    return t
