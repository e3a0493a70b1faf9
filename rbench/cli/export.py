"""``rbench export``: a model to a BatchNorm-folded, checked, parity-tested ONNX artifact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from rbench.cli._common import (
    add_columns,
    app,
    choices,
    err,
    explicit,
    handle_errors,
    mark,
    model_config_for,
    out,
    progress,
    table,
)
from rbench.export.precision import CALIBRATION_METHODS, Fp16Config, Int8Config
from rbench.precisions import EXPORTED

CalibMethod = choices("CalibMethod", CALIBRATION_METHODS)
IoType = choices("IoType", ("fp32", "fp16"))


@app.command()
@handle_errors
def export(
    ctx: typer.Context,
    model: str = typer.Option(
        None, help="Model name (see rbench inspect --list) [default: the checkpoint's, or resnet50]."
    ),
    weights: str = typer.Option(
        "random", help="'random' (seeded), 'init', a .safetensors/.pt/.pth file, or an rbench train checkpoint."
    ),
    seed: int = typer.Option(0, help="Seed for random weights and INT8 calibration crops."),
    num_classes: int | None = typer.Option(
        None, help="Classifier width [default: the model's own, 1000 ImageNet, 10 CIFAR]."
    ),
    class_names: Path = typer.Option(None, help="Text file of class names, one per line, in output order."),
    opset: int = typer.Option(17, help="ONNX opset (13 to 20)."),
    static_batch: bool = typer.Option(False, help="Fix the batch dimension at 1."),
    simplify: bool = typer.Option(False, help="Simplify the graph with onnxslim."),
    precision: str = typer.Option("fp32", help=f"Comma list of {', '.join(EXPORTED)}, or 'all'."),
    shortcut: str = typer.Option("A", help="CIFAR ResNets only: shortcut option A (zero-pad) or B (projection)."),
    io: IoType = typer.Option("fp32", help="FP16 model's input/output type (needs fp16 in --precision)."),  # type: ignore[valid-type]
    calibration: str = typer.Option(
        "auto",
        help="INT8 calibration: 'photos' (augmented built-in photos), 'digits', or a folder (as --images); auto: "
        "a trained checkpoint's training data, else photos.",
    ),
    calib_method: CalibMethod = typer.Option("percentile", help="INT8 calibration method."),  # type: ignore[valid-type]
    calib_samples: int = typer.Option(64, help="INT8 calibration images."),
    accuracy_control: bool = typer.Option(
        True,
        help="INT8 graphs: where a CPU backend here misses the bounds, keep the fewest layers in FP32 that meet "
        "them on every one; --no-accuracy-control ships each graph as quantized.",
    ),
    out_dir: Path = typer.Option(Path("artifacts"), "--out", help="Folder of artifact directories."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables."),
) -> None:
    """Export a model to a BatchNorm-folded, checked ONNX artifact and verify its parity.

    Precisions accumulate: exporting into the same --out keeps the ones made before. The last line of standard
    output is the artifact directory.
    """
    from rbench.bench.exporting import export_artifact
    from rbench.export.converters import available
    from rbench.export.onnx_export import ExportConfig
    from rbench.models import get_spec
    from rbench.precisions import parse_precisions

    precisions = parse_precisions(precision)
    _refuse_inapplicable(ctx, precisions)
    if precision.strip().lower() == "all":  # every precision this machine can make; what it cannot is said
        precisions, notes = available(precisions)
        for note in notes:
            err.print(f"note: {note}", markup=False, soft_wrap=True)
    model_config = model_config_for(model, weights, seed, num_classes, _read_class_names(class_names))
    if get_spec(model_config.name).family == "cifar" or explicit(ctx, "shortcut"):
        model_config = replace(model_config, options={"shortcut": shortcut.upper(), **model_config.options})
    export_config = ExportConfig(opset=opset, dynamic_batch=not static_batch, simplify=simplify)
    fp16 = Fp16Config(keep_io_types=io.value == "fp32")
    cache = out_dir / ".cache" / "calibration"
    int8 = Int8Config(calib_method.value, calibration, calib_samples, seed, cache_dir=cache)
    with progress(not as_json) as shown:
        settings = {"fp16": fp16, "int8": int8}  # the INT8 variants calibrate like int8
        control = {} if accuracy_control else {"control": None}
        result = export_artifact(model_config, export_config, out_dir, precisions, shown, settings, **control)
    if as_json:
        out.print_json(json.dumps(_summary(result)))
    else:
        out.print(_table(result.manifest))
        out.print(f"{'PASS' if result.passed else '[red]FAIL[/]'} parity of every precision", soft_wrap=True)
        out.print(str(result.path), markup=False, soft_wrap=True)
    if not result.passed:
        failures = [f for r in result.parity.values() for f in r.failures]  # type: ignore[attr-defined]
        err.print(f"parity FAILED: {'; '.join(failures)}", markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _refuse_inapplicable(ctx: typer.Context, precisions: list[str]) -> None:
    from rbench.errors import BadInputError
    from rbench.precisions import get_precision

    if explicit(ctx, "io") and "fp16" not in precisions:
        raise BadInputError("--io applies to the FP16 model only; add fp16 to --precision")
    names = ("calibration", "calib_method", "calib_samples", "accuracy_control")
    given = [f"--{n.replace('_', '-')}" for n in names if explicit(ctx, n)]
    if given and not any("int8" in (p, get_precision(p).variant_of) for p in precisions):
        raise BadInputError(
            f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to INT8 only; add int8 to --precision"
        )


def _read_class_names(path: Path | None) -> tuple[str, ...] | None:
    from rbench.errors import BadInputError

    if path is None:
        return None
    if not path.is_file():
        raise BadInputError(f"--class-names file not found: {path}")
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"--class-names {path}: cannot read it as text ({type(exc).__name__})") from None
    return tuple(names)


def _summary(result: Any) -> dict[str, Any]:
    precisions = {
        p: {
            "file": entry["file"],
            "passed": entry.get("parity", {}).get("passed"),
            "verdicts": {k: v["verdict"] for k, v in entry.get("parity", {}).get("inputs", {}).items()},
            "kept_fp32": (entry.get("accuracy") or {}).get("kept", []),  # by the export's accuracy control
        }
        for p, entry in result.manifest["precisions"].items()
    }
    return {
        "artifact": str(result.path),
        "passed": result.passed,
        "precisions": precisions,
        "notices": result.notices,
        "manifest": result.manifest,
    }


def _table(manifest: dict[str, Any]) -> Any:
    from rbench.bench.parity import _fig

    m = manifest["model"]
    t = table(
        title=f"{m['name']}: {m['parameters']:,} parameters, {manifest['export']['bn_folded']} BatchNorm folded",
        caption="On the built-in photos, ONNX Runtime CPU vs unfolded PyTorch FP32. max err: max abs error / "
        "max |reference logit|. Random inputs are judged for NaN/Inf only at reduced precision.",
    )
    add_columns(t, ("precision", "nodes", "max err", "cosine", "top-1", "parity"), left=("precision", "parity"))
    for precision, entry in manifest["precisions"].items():
        report = entry["parity"]
        photos = report["inputs"]["photos"]["outputs"][m["output_name"]]
        failing = set(photos["failing"])
        t.add_row(
            f"{precision}",
            str(entry["nodes"]),
            mark(f"{photos['min_passing_rel']:.2e}", "max_abs" not in failing),
            mark(_fig(photos["min_cosine"]), "cosine" not in failing),
            mark(f"{photos['top1']:.0%}", "top1" not in failing),
            "[green]pass[/]" if report["passed"] else "[red]FAIL ✗[/]",
        )
    return t
