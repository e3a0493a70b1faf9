"""``rbench eval``: top-1/top-5 accuracy and a confusion matrix, for a checkpoint or an artifact on any backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rbench.cli._common import add_columns, app, choice_list, handle_errors, out, progress, table
from rbench.precisions import PRECISIONS
from rbench.runtime.registry import BACKENDS


@app.command("eval")
@handle_errors
def evaluate(
    target: Path = typer.Argument(..., help="A checkpoint (.safetensors from rbench train) or an artifact directory."),
    data: str = typer.Option(..., help="digits, or a folder with one subfolder per class."),
    backend: str = typer.Option(
        None,
        help=f"Comma list of {', '.join(BACKENDS)}, or all [default: ort for an artifact, torch for a checkpoint].",
    ),
    precision: str = typer.Option("fp32", help=f"Artifact: comma list of {', '.join(PRECISIONS)}, or all."),
    labels: str = typer.Option(None, help="Labels file mapping folder names to class names."),
    out_dir: Path = typer.Option(Path("results/eval"), "--out", help="Folder for eval.json and confusion PNGs."),
    as_json: bool = typer.Option(False, "--json", help='Print {"top1": …, "top5": …} (and every row) as JSON.'),
) -> None:
    """Accuracy of a trained model: PyTorch for a checkpoint; any backend and precision for an artifact.

    Each row also gives its top-1 agreement with PyTorch FP32. The last line of standard output is the folder of
    eval.json and the confusion-matrix PNGs.
    """
    from rbench.bench.evaluation import evaluate_target

    if not target.exists():
        from rbench.errors import BadInputError

        raise BadInputError(f"not found: {target} (a checkpoint file or an artifact directory)")
    from rbench._io import check_output_folder

    check_output_folder(out_dir)
    backends = choice_list(backend, BACKENDS, "backend") if backend is not None else None
    precisions = choice_list(precision, PRECISIONS, "precision")
    with progress(not as_json) as shown:
        result = evaluate_target(target, data, backends, precisions, out_dir, labels, shown)
    if as_json:
        first = result["rows"][0]
        out.print_json(json.dumps({"top1": first["top1"], "top5": first["top5"], **result}))
        return
    out.print(_table(result))
    for r in (r for r in result["rows"] if r.get("skipped")):
        out.print(f"skipped: {r['backend']} {r['precision']}: {r['skipped']}", markup=False, soft_wrap=True)
    for note in result["notes"]:
        out.print(note, markup=False, soft_wrap=True)
    out.print(str(out_dir), markup=False, soft_wrap=True)


def _table(result: dict[str, Any]) -> Any:
    t = table(
        title=f"{result['model']} on {result['data']}",
        caption="agreement: same top-1 class as PyTorch FP32 on each image.",
    )
    add_columns(t, ("backend", "precision", "top-1", "top-5", "agreement", "images"), left=("backend", "precision"))
    for r in result["rows"]:
        if r.get("skipped"):
            continue  # listed below the table
        agree = f"{r['agreement']:.2%}" if r.get("agreement") is not None else ""
        t.add_row(r["backend"], r["precision"], f"{r['top1']:.2%}", f"{r['top5']:.2%}", agree, str(r["images"]))
    return t
