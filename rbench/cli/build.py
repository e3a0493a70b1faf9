"""``rbench build``: a strongly-typed TensorRT engine from one precision of an artifact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from rbench._io import USER_CACHE_DIR
from rbench.cli._common import add_columns, app, choices, err, handle_errors, out, table
from rbench.precisions import PORTABLE

PrecisionChoice = choices("PrecisionChoice", list(PORTABLE))  # TensorRT builds the portable graphs


@app.command()
@handle_errors
def build(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact directory from rbench export.")],
    precision: Annotated[
        PrecisionChoice, typer.Option(help="Which of the artifact's ONNX models to build.")  # type: ignore[valid-type]
    ] = "fp16",
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
        result = build_engine(
            artifact, options, progress, warn=lambda m: err.print(f"warning: {m}", markup=False, soft_wrap=True)
        )
    if as_json:
        out.print_json(json.dumps({"engine": str(result.engine), "cached": result.cached, **result.sidecar}))
        return
    platform, settings = result.sidecar["platform"], result.sidecar["settings"]
    t = table(title=f"TensorRT engine: {artifact.model_name} {precision.value}", show_header=False)
    add_columns(t, ("key", "value"), left=("key", "value"))
    source = result.sidecar["source"]
    rows = {
        "engine": "reused: its key is unchanged" if result.cached else f"built in {result.seconds:.1f} s",
        "built for": f"TensorRT {platform['tensorrt']} on {platform['gpu']}, sm {platform['compute_capability']}",
        "batch profile": f"{settings['min_batch']} / {settings['opt_batch']} / {settings['max_batch']}",
        "source": f"{source['file']} (sha256 {source['sha256'][:12]}…)",
        "timing cache": str(result.timing_cache),
    }
    for key, value in rows.items():
        t.add_row(key, escape(value))
    out.print(t)
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
