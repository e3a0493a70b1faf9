"""``rbench debug precision``: which layer breaks a reduced-precision graph, and (``--fix``) the fewest layers kept in
FP32 that make it meet its bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rbench.bench.debug import DEBUG_BACKENDS, FIXED_VARIANT
from rbench.cli._common import add_columns, app, choices, err, handle_errors, out, progress, table

debug_app = typer.Typer(help="Find where a reduced precision goes wrong, and fix it.", no_args_is_help=True)
app.add_typer(debug_app, name="debug")

DebugPrecision = choices("DebugPrecision", list(FIXED_VARIANT))
DebugBackend = choices("DebugBackend", list(DEBUG_BACKENDS))


@debug_app.command("precision")
@handle_errors
def precision(
    artifact_dir: Path = typer.Argument(..., help="An artifact directory from rbench export."),
    precision: DebugPrecision = typer.Option(..., help="The reduced graph to debug."),  # type: ignore[valid-type]
    backend: DebugBackend = typer.Option("ort", help="The backend that runs both graphs."),  # type: ignore[valid-type]
    images: Path = typer.Option(None, help="A folder of images instead of the built-in photos."),
    bound: str = typer.Option(
        None,
        help="Bounds to meet, e.g. cosine=0.995,max_abs=0.1,top1=0.9, over the precision's own for the model's "
        "family; 'imagenet' for the ImageNet ResNets' bounds.",
    ),
    fix: bool = typer.Option(False, "--fix", help="Keep the fewest layers in FP32 that meet the bound; write it."),
    threads: int = typer.Option(0, help="Threads per graph (0: the backend's default)."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-layer figures (and the fix) as JSON."),
) -> None:
    """Per-layer error of a reduced graph against FP32, named by PyTorch module; with --fix, a variant that meets the
    bound written into the artifact (model.int8-mixed.onnx, model.fp16-mixed.onnx)."""
    from rbench.bench.debug import check_debug_target, debug_precision, parse_bound
    from rbench.data import check_image_folder, load_images
    from rbench.export.artifact import Artifact
    from rbench.precisions import get_precision

    artifact = Artifact.open(artifact_dir).verify()
    check_debug_target(artifact, precision.value, backend.value)
    parse_bound(bound, get_precision(precision.value).tolerance)  # bad input before any work
    photos = None
    if images is not None:
        check_image_folder(images)
        photos = load_images(images, artifact.class_names, artifact.num_classes).images
    with progress(not as_json) as shown:
        report = debug_precision(artifact, precision.value, backend.value, photos, bound, fix, threads, shown)
        if fix and not report.fix["met"]:
            shown.fail()
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        _render(report)
    if fix and not report.fix["met"]:
        err.print(f"no set of up to {len(report.fix['kept'])} FP32 layers meets the bound", markup=False)
        raise typer.Exit(1)


def _render(report: Any) -> None:
    t = table(
        f"{report.precision} against FP32, per layer ({report.backend}, {report.images} images)",
        caption="SQNR in dB (higher is closer). own: the layer alone on exact FP32 inputs; "
        "inherited: what reaches it from upstream.",
    )
    add_columns(t, ["layer", "op", "cosine", "SQNR", "own SQNR", "inherited", "max err"], left=["layer", "op"])
    worst = set(report.ranked[:3])
    for layer in report.layers:
        name = layer.module or layer.node
        mark = "[red]" if name == report.first else "[yellow]" if name in worst else ""
        t.add_row(
            f"{mark}{name}",
            layer.op,
            f"{layer.cosine:.5f}",
            f"{layer.sqnr_db:.1f}",
            f"{layer.own_sqnr_db:.1f}",
            f"{layer.inherited_db:.1f}",
            f"{layer.max_rel:.3g}",
        )
    out.print(t)
    o = report.output
    verdict = "meets" if report.passed else "[red]misses[/]"
    out.print(
        f"output: cosine {o['cosine']:.5f}, max err {o['max_rel']:.3g} x max|ref|, top-1 {o['top1']:.0%}: "
        f"{verdict} the bound ({report.bound.describe()})",
        soft_wrap=True,
    )
    if report.overflow:
        out.print(
            f"[red]not finite in {report.precision}[/] (stored as typed on TensorRT): {', '.join(report.overflow)}",
            soft_wrap=True,
        )
    out.print(f"first layer whose own error stands out: {report.first}", markup=False)
    out.print(f"worst own error: {', '.join(report.ranked[:5])}", markup=False, soft_wrap=True)
    if report.fix is None:
        return
    fix = report.fix
    if not fix["kept"] and fix["met"]:
        out.print("the graph already meets the bound: no layer needs FP32, nothing written", markup=False)
        return
    speed = fix["speed"]
    out.print(f"kept in FP32 ({len(fix['kept'])}): {', '.join(fix['kept'])}", markup=False, soft_wrap=True)
    parity = ", ".join(f"{b} {'pass' if p['passed'] else 'FAIL'}" for b, p in fix["parity"].items())
    out.print(
        f"wrote {fix['file']} ({fix['variant']}): parity {parity}; batch 1 {speed['reduced_ms']:.3g} ms -> "
        f"{speed['fixed_ms']:.3g} ms ({speed['cost']:+.0%})",
        markup=False,
        soft_wrap=True,
    )
