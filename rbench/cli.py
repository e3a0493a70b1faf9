"""The ``rbench`` command line: thin commands that parse, call the library and render with rich.

Exit codes, the same for every command: 0 ok, 1 parity or regression failure, 2 bad input, 3 incompatible or
tampered artifact (rebuild required), 4 environment problem (missing backend or device).
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rbench._io import USER_CACHE_DIR
from rbench.errors import BadInputError, RbenchError

app = typer.Typer(
    help="Export, check and benchmark ResNets across PyTorch, ONNX Runtime and TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
_state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


class Backend(str, Enum):
    ort = "ort"
    ort_cuda = "ort-cuda"
    ort_trt = "ort-trt"
    torch = "torch"
    trt = "trt"


class IoType(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


class CalibMethod(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and library warnings.")] = False,
) -> None:
    """rbench: ResNet deployment and benchmarking."""
    _state["debug"] = debug


def handle_errors(fn: F) -> F:
    """Turn an ``RbenchError`` into one line on stderr and its exit code (a traceback only with ``--debug``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            if not _state["debug"]:
                warnings.simplefilter("ignore")
            try:
                return fn(*args, **kwargs)
            except RbenchError as exc:
                if _state["debug"]:
                    raise
                err.print(f"error: {exc}", markup=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                err.print("interrupted", markup=False)
                raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def steps(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A progress callback: a spinner on the current step, and each finished step with its duration on stderr."""
    state: dict[str, Any] = {"name": None, "start": 0.0}
    status = err.status("starting") if enabled else None

    def finish() -> None:
        if state["name"] and enabled:
            err.print(f"[green]✓[/] {state['name']} [dim]({time.perf_counter() - state['start']:.1f} s)[/]")

    def step(name: str) -> None:
        finish()
        state.update(name=name, start=time.perf_counter())
        if status is not None:
            status.update(name)

    if status is None:
        yield step
        return
    with status:
        yield step
        finish()


def parse_precisions(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return [p.value for p in Precision]
    valid = [p.value for p in Precision]
    bad = [p for p in names if p not in valid]
    if bad or not names:
        raise BadInputError(f"unsupported precision {', '.join(bad) or text!r}; choose from {', '.join(valid)} or all")
    return ["fp32"] + [p for p in valid if p in names and p != "fp32"]


@app.command()
@handle_errors
def export(
    model: Annotated[str, typer.Option(help="Model name (see rbench inspect --list).")] = "resnet50",
    weights: Annotated[
        str, typer.Option(help="'random' (seeded), 'init', or a .safetensors/.pt/.pth file.")
    ] = "random",
    seed: Annotated[int, typer.Option(help="Seed for random weights.")] = 0,
    num_classes: Annotated[
        int | None, typer.Option(help="Classifier width [default: the model's own, 1000 ImageNet, 10 CIFAR].")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    static_batch: Annotated[bool, typer.Option(help="Fix the batch dimension at 1.")] = False,
    simplify: Annotated[bool, typer.Option(help="Simplify the graph with onnxslim.")] = False,
    precision: Annotated[str, typer.Option(help="Comma list of fp32, fp16, int8, or 'all'.")] = "fp32",
    shortcut: Annotated[str, typer.Option(help="CIFAR ResNets: shortcut option A (zero-pad) or B (projection).")] = "A",
    io: Annotated[IoType, typer.Option(help="FP16 model's input/output type.")] = IoType.fp32,
    calibration: Annotated[
        str, typer.Option(help="INT8 calibration data: 'photos' (augmented built-in photos), 'digits', or a folder.")
    ] = "photos",
    calib_method: Annotated[CalibMethod, typer.Option(help="INT8 calibration method.")] = CalibMethod.percentile,
    calib_samples: Annotated[int, typer.Option(help="INT8 calibration images.")] = 64,
    out_dir: Annotated[Path, typer.Option("--out", help="Where artifact directories go.")] = Path("artifacts"),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of tables.")] = False,
) -> None:
    """Export a model to a BatchNorm-folded, checked ONNX artifact and verify its parity.

    The last line of standard output is the artifact directory.
    """
    from rbench.export.onnx_export import ExportConfig
    from rbench.export.pipeline import ModelConfig, export_artifact
    from rbench.export.precision import Fp16Config, Int8Config
    from rbench.models import get_spec

    options = {"shortcut": shortcut.upper()} if get_spec(model).family == "cifar" else {}
    model_config = ModelConfig(model, weights, seed, num_classes, options)
    export_config = ExportConfig(opset=opset, dynamic_batch=not static_batch, simplify=simplify)
    fp16 = Fp16Config(keep_io_types=io == IoType.fp32)
    int8 = Int8Config(
        method=calib_method.value,
        calibration=calibration,
        samples=calib_samples,
        seed=seed,
        cache_dir=out_dir / ".cache" / "calibration",
    )
    with steps(not as_json) as progress:
        result = export_artifact(
            model_config, export_config, out_dir, parse_precisions(precision), progress, fp16, int8
        )
    if as_json:
        out.print_json(json.dumps({"artifact": str(result.path), **result.manifest}))
    else:
        out.print(_export_table(result.manifest))
        out.print(str(result.path), markup=False, soft_wrap=True)
    if not result.passed:
        failures = [f for r in result.parity.values() for f in r.failures]
        err.print(f"parity FAILED: {'; '.join(failures)}", markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _export_table(manifest: dict[str, Any]) -> Table:
    m = manifest["model"]
    table = Table(title=f"{m['name']}: {m['parameters']:,} parameters, {manifest['export']['bn_folded']} BN folded")
    for col in ("precision", "file", "nodes", "max err / max|ref|", "cosine", "top-1", "parity"):
        left = col in ("precision", "file", "parity")
        table.add_column(col, justify="left" if left else "right", no_wrap=col == "file")
    for precision, entry in manifest["precisions"].items():
        photos = entry["parity"]["inputs"]["photos"][m["output_name"]]
        table.add_row(
            precision,
            entry["file"],
            str(entry["nodes"]),
            f"{photos['min_passing_rel']:.2e}",
            f"{photos['min_cosine']:.6f}",
            f"{photos['top1']:.0%}",
            "[green]pass[/]" if entry["parity"]["passed"] else "[red]FAIL[/]",
        )
    table.caption = "error figures on the built-in photos, ONNX Runtime CPU vs unfolded PyTorch FP32"
    return table


@app.command()
@handle_errors
def parity(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact directory from rbench export.")],
    backend: Annotated[Backend, typer.Option(help="Backend under test.")] = Backend.ort,
    precision: Annotated[Precision, typer.Option(help="Which of the artifact's models.")] = Precision.fp32,
    images: Annotated[
        Path | None,
        typer.Option(help="Images instead of the built-in photos; DIR/<class>/<image> adds top-1 accuracy."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare a backend with the unfolded PyTorch FP32 model on random inputs and real photos."""
    from rbench.bench.parity import artifact_parity
    from rbench.data import load_images
    from rbench.export.artifact import Artifact

    artifact = Artifact.open(artifact_dir)
    photos, labels = load_images(images) if images is not None else (None, None)
    with steps(not as_json) as progress:
        progress(f"running {backend.value} {precision.value} and the PyTorch reference")
        report = artifact_parity(artifact, backend.value, precision.value, images=photos, labels=labels)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        out.print(_parity_table(report))
        for set_name, acc in report.accuracy.items():
            out.print(
                f"top-1 accuracy on {len(photos or ())} labelled {set_name}: {report.runner} {acc['runner']:.1%}, "
                f"{report.reference} {acc['reference']:.1%}"
            )
    if report.passed:
        if not as_json:
            out.print(f"[green]PASS[/] {report.runner} vs {report.reference}")
        return
    err.print(f"parity FAILED: {'; '.join(report.failures)}", markup=False, soft_wrap=True)
    raise typer.Exit(1)


def _parity_table(report: Any) -> Table:
    tol = report.tolerance
    table = Table(
        title=f"{report.runner} vs {report.reference}",
        caption=f"{report.precision} tolerance: max abs <= {tol.max_abs_rel:g} x max|ref|, "
        f"cosine >= {tol.min_cosine}, top-1 >= {tol.min_top1:.0%}; min tol = max abs / max|ref|",
    )
    table.add_column("inputs", no_wrap=True)
    for col in ("max abs", "mean abs", "p99 abs", "max rel", "min tol", "cosine", "top-1", "top-5", "NaN/Inf"):
        table.add_column(col, justify="right")
    for set_name, outputs in report.stats.items():
        for name, s in outputs.items():
            label = set_name if len(outputs) == 1 else f"{set_name}:{name}"
            table.add_row(
                label,
                f"{s.max_abs:.1e}",
                f"{s.mean_abs:.1e}",
                f"{s.p99_abs:.1e}",
                f"{s.max_rel:.1e}",
                f"{s.min_passing_rel:.1e}",
                f"{s.min_cosine:.6f}",
                f"{s.top1:.0%}",
                f"{s.top5:.0%}",
                f"{s.nan}/{s.inf}",
            )
    return table


@app.command()
@handle_errors
def build(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact directory from rbench export.")],
    precision: Annotated[
        Precision, typer.Option(help="Which of the artifact's ONNX models to build.")
    ] = Precision.fp16,
    min_batch: Annotated[int, typer.Option(help="Smallest batch of the optimization profile.")] = 1,
    opt_batch: Annotated[int, typer.Option(help="Batch TensorRT tunes for.")] = 8,
    max_batch: Annotated[int, typer.Option(help="Largest batch of the optimization profile.")] = 32,
    workspace_mib: Annotated[int, typer.Option(help="Workspace memory limit, MiB.")] = 4096,
    opt_level: Annotated[int, typer.Option(help="Builder optimization level, 0..5.")] = 3,
    tf32: Annotated[bool, typer.Option(help="Let FP32 layers use TF32 math (faster, less exact).")] = False,
    timing_cache_dir: Annotated[
        Path, typer.Option(help="Folder of timing caches (one file per TensorRT version and compute capability).")
    ] = USER_CACHE_DIR / "tensorrt",
    force: Annotated[bool, typer.Option(help="Rebuild even when the cached engine's key matches.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar as JSON.")] = False,
) -> None:
    """Build a strongly-typed TensorRT engine from one precision of an artifact (cached in ARTIFACT_DIR/engines).

    The last line of standard output is the engine file.
    """
    from rbench.export.artifact import Artifact
    from rbench.export.engine import BuildConfig, build_engine

    artifact = Artifact.open(artifact_dir)
    options = BuildConfig(
        precision.value, min_batch, opt_batch, max_batch, workspace_mib, opt_level, tf32, timing_cache_dir, force
    )
    with _build_progress(not as_json) as progress:
        result = build_engine(artifact, options, progress, warn=lambda m: err.print(f"warning: {m}", markup=False))
    if as_json:
        out.print_json(json.dumps({"engine": str(result.engine), "cached": result.cached, **result.sidecar}))
        return
    platform, settings = result.sidecar["platform"], result.sidecar["settings"]
    table = Table(title=f"TensorRT engine: {artifact.model_name} {precision.value}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    source = result.sidecar["source"]
    rows = {
        "engine": "reused: its key is unchanged" if result.cached else f"built in {result.seconds:.1f} s",
        "built for": f"TensorRT {platform['tensorrt']} on {platform['gpu']}, sm {platform['compute_capability']}",
        "batch profile": f"{settings['min_batch']} / {settings['opt_batch']} / {settings['max_batch']}",
        "source": f"{source['file']} (sha256 {source['sha256'][:12]}…)",
        "timing cache": str(result.timing_cache),
    }
    for key, value in rows.items():
        table.add_row(key, escape(value))
    out.print(table)
    out.print(str(result.engine), markup=False, soft_wrap=True)


@contextmanager
def _build_progress(enabled: bool) -> Iterator[Any]:
    """Rich progress bars fed by TensorRT's progress monitor, one per build phase."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    tasks: dict[str, Any] = {}

    class Monitor:
        def phase_start(self, name: str, parent: str | None, steps: int) -> None:
            if not tasks:
                bars.start()  # only once TensorRT reports: a build that fails early prints just its error
            tasks[name] = (bars.add_task(f"{'  ' if parent else ''}{name}", total=steps), steps)

        def step(self, name: str, step: int) -> None:
            bars.update(tasks[name][0], completed=step + 1)

        def phase_finish(self, name: str) -> None:
            bars.update(tasks[name][0], completed=tasks[name][1])

    try:
        yield Monitor()
    finally:
        if tasks:
            bars.stop()


@app.command()
@handle_errors
def inspect(
    model: Annotated[str | None, typer.Argument(help="Model name.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classifier width [default: the model's own].")] = None,
    list_all: Annotated[bool, typer.Option("--list", help="List the registered models.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Parameters and multiply-accumulates per stage, and the bottleneck arithmetic."""
    from rbench.models import create_model, get_spec, list_models
    from rbench.models.stats import bottleneck_arithmetic, stage_stats

    if list_all or model is None:
        names = list_models()
        out.print_json(json.dumps(names)) if as_json else out.print("\n".join(names))
        return
    spec = get_spec(model)
    stats = stage_stats(create_model(model, num_classes=num_classes), spec.input_shape)
    arithmetic = bottleneck_arithmetic(256)
    total_params, total_macs = sum(s.params for s in stats), sum(s.macs for s in stats)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "model": model,
                    "input_shape": list(spec.input_shape),
                    "stages": [
                        {"name": s.name, "params": s.params, "macs": s.macs, "output": list(s.output_shape)}
                        for s in stats
                    ],
                    "params": total_params,
                    "macs": total_macs,
                    "bottleneck_256": arithmetic,
                }
            )
        )
        return
    table = Table(title=f"{model} at {'×'.join(map(str, spec.input_shape))}")
    for col in ("stage", "output", "parameters", "MACs"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in stats:
        table.add_row(s.name, "×".join(map(str, s.output_shape)), f"{s.params:,}", f"{s.macs / 1e9:.3f} G")
    table.add_row("[bold]total[/]", "", f"[bold]{total_params:,}[/]", f"[bold]{total_macs / 1e9:.2f} G[/]")
    out.print(table)
    out.print(
        f"Bottleneck arithmetic at 256 channels: 1×1→3×3→1×1 has {arithmetic['bottleneck']:,} weights; "
        f"two 3×3 convolutions have {arithmetic['basic']:,} ({arithmetic['basic'] / arithmetic['bottleneck']:.1f}×)."
    )


@app.command()
@handle_errors
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Versions of every backend library, available providers and devices; never fails on a missing piece."""
    from rbench.doctor import report

    rows = report()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="rbench doctor", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, escape(value))
    out.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
