"""``rbench parity``: one backend and precision of an artifact against the unfolded PyTorch FP32 model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rbench.cli._common import add_columns, app, choices, err, handle_errors, mark, out, progress, table
from rbench.errors import BadInputError
from rbench.precisions import PRECISIONS
from rbench.runtime.registry import BACKENDS, DEFAULT_BACKEND

BackendChoice = choices("BackendChoice", list(BACKENDS))
PrecisionChoice = choices("PrecisionChoice", list(PRECISIONS))


@app.command()
@handle_errors
def parity(
    target: Path = typer.Argument(..., help="An artifact directory, or one of its ONNX files (model.int8.onnx)."),
    backend: BackendChoice = typer.Option(DEFAULT_BACKEND, help="Backend under test."),  # type: ignore[valid-type]
    precision: PrecisionChoice = typer.Option(  # type: ignore[valid-type]
        None, help="Which of the artifact's models [default: the named file's, else fp32]."
    ),
    images: Path = typer.Option(
        None, help="A folder of images instead of the built-in photos; DIR/<class>/<image> adds top-1 accuracy."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Compare a backend with the unfolded PyTorch FP32 model on random inputs and real photos."""
    from rbench.bench.parity import artifact_parity
    from rbench.data import check_image_folder, load_images
    from rbench.export.artifact import Artifact

    directory, chosen = resolve_target(target, precision.value if precision else None, backend.value)
    if images is not None:
        check_image_folder(images)
    artifact = Artifact.open(directory)
    image_set = load_images(images, artifact.class_names, artifact.num_classes) if images is not None else None
    if image_set is not None and not as_json:
        _describe_images(image_set)
    with progress(not as_json) as shown:
        shown.step(f"running {backend.value} {chosen} and the PyTorch reference")
        report = artifact_parity(artifact, backend.value, chosen, images=image_set)
        if not report.passed:
            shown.fail()
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        out.print(_table(report))
        for set_name, acc in report.accuracy.items():
            count = len(image_set.images) if image_set else 0
            out.print(
                f"top-1 accuracy on {count} labelled {set_name}: {report.runner} {acc['runner']:.1%}, "
                f"{report.reference} {acc['reference']:.1%}"
            )
        verdict = "PASS" if report.passed else "[red]FAIL[/]"
        out.print(f"{verdict} {report.runner} vs {report.reference} ({chosen} bounds)", soft_wrap=True)
    if not report.passed:
        err.print(f"parity FAILED: {'; '.join(report.failures)}", markup=False, soft_wrap=True)
        raise typer.Exit(1)


def resolve_target(target: Path, precision: str | None, backend: str) -> tuple[Path, str]:
    """The artifact directory and the precision to test; a named file decides the precision, and nothing but the
    named file is ever tested."""
    from rbench.export.artifact import MANIFEST, WEIGHTS_FILE
    from rbench.precisions import precision_of_file

    if not target.is_file():
        return target, precision or "fp32"
    directory = target.parent
    if target.name == MANIFEST:
        raise BadInputError(f"{target} is the manifest, not a model: name the artifact, rbench parity {directory}")
    if target.name == WEIGHTS_FILE:
        raise BadInputError(
            f"{target} is the PyTorch reference itself; to test it folded on eager PyTorch: "
            f"rbench parity {directory} --backend torch"
        )
    named = precision_of_file(target.name)
    if named is None:
        files = ", ".join(p.file for p in PRECISIONS.values())
        raise BadInputError(f"{target} is not one of an artifact's models ({files}); name the artifact directory")
    if precision is not None and precision != named:
        raise BadInputError(f"{target.name} is the {named} model, but --precision {precision} was given")
    from rbench.runtime import Consumes

    if BACKENDS[backend].consumes is not Consumes.ONNX:
        onnx = ", ".join(name for name, spec in BACKENDS.items() if spec.consumes is Consumes.ONNX)
        raise BadInputError(
            f"{target.name} is an ONNX file, which backend {backend} does not run (it runs "
            f"{BACKENDS[backend].consumes.value}; ONNX files run on {onnx}): "
            f"rbench parity {directory} --backend {backend} --precision {named}"
        )
    return directory, named


def _describe_images(image_set: Any) -> None:
    if image_set.labels is not None:
        how = {"class names": "by the model's class names", "indices": "folder names as class indices"}
        mapping = ", ".join(f"{name}={label}" for name, label in image_set.classes.items())
        err.print(
            f"labels ({how.get(image_set.mapping, 'sorted folder names')}): {mapping}", markup=False, soft_wrap=True
        )
    if image_set.skipped:
        err.print(f"skipped, not in a class folder: {', '.join(image_set.skipped)}", markup=False, soft_wrap=True)


def _table(report: Any) -> Any:
    from rbench.bench.parity import _fig

    tol = report.tolerance
    columns = [(s, o) for s, outs in report.stats.items() for o in outs]
    names = [f"{s} ({report.verdict(s)})" if len(report.stats[s]) == 1 else f"{s}:{o}" for s, o in columns]
    t = table(
        title=f"{report.runner} vs {report.reference}",
        caption=f"{report.precision} bounds apply to: {', '.join(tol.checked)}; max err = max abs / max|ref|",
    )
    add_columns(t, ("figure", "bound", *names), left=("figure",))
    figures = [
        ("max err", f"<= {tol.max_abs_rel:g}", "max_abs", lambda s: f"{s.min_passing_rel:.2e}"),
        ("cosine", f">= {tol.min_cosine:g}", "cosine", lambda s: _fig(s.min_cosine)),
        ("top-1", f">= {tol.min_top1:.0%}", "top1", lambda s: f"{s.top1:.0%}"),
        ("top-5", "", "", lambda s: f"{s.top5:.0%}"),
        ("max abs", "", "", lambda s: f"{s.max_abs:.2e}"),
        ("mean abs", "", "", lambda s: f"{s.mean_abs:.2e}"),
        ("p99 abs", "", "", lambda s: f"{s.p99_abs:.2e}"),
        ("max rel", "", "", lambda s: f"{s.max_rel:.2e}"),
        ("NaN/Inf", "0/0", "nan", lambda s: f"{s.nan}/{s.inf}"),
    ]
    for label, bound, key, fmt in figures:
        cells = []
        for set_name, output in columns:
            failing = report.failing.get(set_name, {}).get(output, {})
            cells.append(mark(fmt(report.stats[set_name][output]), key not in failing))
        t.add_row(label, bound, *cells)
    return t
