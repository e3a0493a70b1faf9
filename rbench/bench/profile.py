"""``rbench profile``: where the time goes, per layer, on every backend, in one set of names.

Each row (backend × precision) runs under its backend's own profiler (``Runner.profile``: ONNX Runtime's
``enable_profiling``, OpenVINO's performance counters, ``torch.profiler``). Each profiled entry is mapped to the ONNX
nodes it covers and their PyTorch modules (``rbench.models.layers``), then rolled up to the stem, ``layer1``..``layerN``
and the head, and to each residual block. A fused entry lists every module it covers and its time is not split.

The profiler is measured too: each row's profiled latency is set against the same row's unprofiled latency (the
profiler's overhead), and the sum of its layer times against its profiled end-to-end latency (what is not attributed).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.bench.parity import sig
from rbench.models.layers import block_of, module_of, stage_of, stage_order

if TYPE_CHECKING:
    import onnx

    from rbench.export.artifact import Artifact

#: Suffixes ONNX Runtime's graph optimizer gives the nodes it rewrites (NCHWc layout, QDQ fusion)
#: Profiled calls per row unless told otherwise (``rbench profile --iterations``, ``rbench run --profile``)
DEFAULT_CALLS = 50
#: The stage of an entry no module names (a compiled region, a layout reorder the profiler names by itself)
UNATTRIBUTED = "not attributed"
_ORT_SUFFIX = re.compile(r"(_nchwc|_quant|_token_\d+)$")


@dataclass(frozen=True)
class Layer:
    name: str  # the backend's name of the entry
    kind: str  # op or exec type
    ms: float  # mean time per call
    modules: tuple[str, ...]  # every PyTorch module it covers
    stage: str
    block: str
    macs: int  # multiply-accumulates of the FP32 graph's nodes it covers, per call

    @property
    def gflops(self) -> float:
        return 2 * self.macs / (self.ms * 1e6) if self.ms > 0 else 0.0


@dataclass
class RowProfile:
    backend: str
    precision: str
    file: str
    profiler: str
    calls: int
    latency_ms: float  # unprofiled, the same runner, the same feed (mean per call)
    profiled_ms: float  # mean per call under the profiler, as the layer times are
    layers: list[Layer] = field(default_factory=list)
    skipped: str | None = None

    @property
    def attributed_ms(self) -> float:
        return sum(x.ms for x in self.layers if x.modules)

    @property
    def layer_sum_ms(self) -> float:
        return sum(x.ms for x in self.layers)

    @property
    def overhead(self) -> float:
        return self.profiled_ms / self.latency_ms - 1 if self.latency_ms else float("nan")

    def stages(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for x in self.layers:
            totals[x.stage] = totals.get(x.stage, 0.0) + x.ms
        order = stage_order(totals) + ([UNATTRIBUTED] if UNATTRIBUTED in totals else [])
        return {s: totals[s] for s in order}

    def blocks(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for x in self.layers:
            totals[x.block] = totals.get(x.block, 0.0) + x.ms
        return totals

    def to_dict(self) -> dict[str, Any]:
        if self.skipped:
            return {"backend": self.backend, "precision": self.precision, "skipped": self.skipped}
        return {
            "backend": self.backend,
            "precision": self.precision,
            "file": self.file,
            "profiler": self.profiler,
            "calls": self.calls,
            "latency_ms": sig(self.latency_ms, 4),
            "profiled_ms": sig(self.profiled_ms, 4),
            "profiler_overhead": sig(self.overhead, 3),
            "layer_sum_ms": sig(self.layer_sum_ms, 4),
            "attributed_ms": sig(self.attributed_ms, 4),
            "unattributed_ms": sig(self.profiled_ms - self.attributed_ms, 4),
            "stages": {k: sig(v, 4) for k, v in self.stages().items()},
            "blocks": {k: sig(v, 4) for k, v in self.blocks().items()},
            "layers": [
                {
                    **{k: sig(v, 4) if isinstance(v, float) else v for k, v in asdict(x).items()},
                    "modules": list(x.modules),
                    "gflops": sig(x.gflops, 4),
                }
                for x in self.layers
            ],
        }


def node_macs(model: onnx.ModelProto, batch: int) -> dict[str, int]:
    """Multiply-accumulates of each Conv, Gemm and MatMul node of an FP32 graph at ``batch``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for v in (*model.graph.value_info, *model.graph.output, *model.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
    inits = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    macs = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.output[0] in shapes and node.input[1] in inits:
            w = inits[node.input[1]]  # (out, in / groups, kh, kw)
            macs[node.name] = int(np.prod(shapes[node.output[0]])) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul") and node.output[0] in shapes and node.input[1] in inits:
            macs[node.name] = int(np.prod(shapes[node.output[0]])) * int(
                inits[node.input[1]][-1 if node.op_type == "Gemm" else 0]
            )
    return macs


class Names:
    """Reads any backend's layer name back to the FP32 graph's nodes and their modules."""

    def __init__(self, fp32: onnx.ModelProto, modules: set[str], batch: int) -> None:
        self.modules = modules
        self.producer = {o: n for n in fp32.graph.node for o in n.output}
        self.nodes = {n.name: n for n in fp32.graph.node}
        self.macs = node_macs(fp32, batch)
        self.module_macs: dict[str, int] = {}
        for name, m in self.macs.items():
            key = module_of(name, modules)
            self.module_macs[key] = self.module_macs.get(key, 0) + m

    def covered(self, name: str, kind: str, covers: Sequence[str]) -> tuple[tuple[str, ...], int]:
        """The modules an entry covers and their MACs: every node it lists, else the node its name reads as."""
        nodes: list[str] = []
        for c in covers or (name,):
            base = _ORT_SUFFIX.sub("", c)
            # a node's name, or (ONNX Runtime's rewritten nodes) its output tensor's
            node = self.nodes.get(base) or self.producer.get(base)
            if node is None:
                nodes.append(c)
                continue
            nodes.append(node.name)
            if node.op_type == "Relu" and kind.endswith("Conv") and node.input[0] in self.producer:
                nodes.append(self.producer[node.input[0]].name)  # Conv + ReLU fused, named by the ReLU's output
        modules = []
        for n in nodes:
            m = module_of(n, self.modules)
            if (m or n.startswith("/")) and m not in modules:
                modules.append(m)
        macs = sum(self.macs.get(n, 0) for n in nodes)
        if (
            not macs
            and modules
            and kind.split()[0]
            in ("Conv", "Convolution", "QLinearConv", "FusedConv", "module", "Gemm", "FullyConnected", "QLinearMatMul")
        ):
            macs = sum(self.module_macs.get(m, 0) for m in modules)
        return tuple(modules), macs


def profile_rows(
    artifact: Artifact,
    backends: Sequence[str],
    precisions: Sequence[str],
    batch: int = 1,
    calls: int = DEFAULT_CALLS,
    threads: int = 0,
    progress: Any = None,
) -> list[RowProfile]:
    """Profile every backend × precision row of ``artifact`` that runs here (the others say why not)."""
    import onnx

    from rbench.bench.parity import parity_inputs
    from rbench.bench.plan import plan_rows
    from rbench.runtime.base import NotSupported

    step = progress.step if progress is not None else (lambda _m: None)
    fp32 = onnx.load(str(artifact.onnx_path("fp32")))
    names = Names(fp32, set(dict(artifact.reference_model().named_modules())), batch)
    photos = parity_inputs(artifact.preprocess, artifact.input_name)["photos"][artifact.input_name]
    feed = {artifact.input_name: np.ascontiguousarray(np.resize(photos, (batch, *photos.shape[1:])))}
    rows = []
    for plan in plan_rows(artifact, list(backends), list(precisions), "cpu", threads)[1:]:
        if plan.factory is None:
            rows.append(RowProfile(plan.backend, plan.precision, "", "", 0, 0, 0, skipped=plan.skip))
            continue
        step(f"profiling {plan.backend} {plan.precision} ({calls} calls, batch {batch})")
        try:
            with plan.factory() as runner:
                latency = _unprofiled(lambda: runner.infer(feed), calls)
                raw = runner.profile(feed, calls)
        except NotSupported as exc:
            rows.append(RowProfile(plan.backend, plan.precision, "", "", 0, 0, 0, skipped=str(exc)))
            continue
        rows.append(_row(plan, raw, latency, names))
    return rows


def _unprofiled(call: Callable[[], Any], calls: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.fmean(times)


def _row(plan: Any, raw: Any, latency: float, names: Names) -> RowProfile:
    layers = []
    seen_stage = False
    for e in raw.layers:
        modules, macs = names.covered(e.name, e.kind, e.covers)
        first = modules[0] if modules else ""
        position = "after" if seen_stage else "before"
        stage = stage_of(first, position) if modules else UNATTRIBUTED
        seen_stage = seen_stage or stage.startswith("layer")
        block = block_of(first, position) if modules else UNATTRIBUTED
        layers.append(Layer(e.name, e.kind, e.total_ms / raw.calls, modules, stage, block, macs))
    return RowProfile(
        plan.backend,
        plan.precision,
        plan.file or "",
        raw.profiler,
        raw.calls,
        latency,
        statistics.fmean(raw.call_ms),
        layers,
    )


def markdown(rows: Sequence[RowProfile], top: int = 10) -> str:
    """Stages × rows (ms and share), each row's profiler figures, and the top layers by time with GFLOP/s."""
    live = [r for r in rows if not r.skipped]
    stages = list(dict.fromkeys(s for s in stage_order({s for r in live for s in r.stages()})))
    if any(UNATTRIBUTED in r.stages() for r in live):
        stages.append(UNATTRIBUTED)
    lines = ["| stage | " + " | ".join(f"{r.backend} {r.precision}" for r in live) + " |", "|---|" + "---|" * len(live)]
    for s in stages:
        cells = []
        for r in live:
            ms, total = r.stages().get(s, 0.0), r.layer_sum_ms or 1
            cells.append(f"{ms:.3f} ms ({ms / total:.0%})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| row | profiler | unprofiled ms | profiled ms | overhead | layer sum ms | not attributed ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in live:
        lines.append(
            f"| {r.backend} {r.precision} | {r.profiler} | {r.latency_ms:.3f} | {r.profiled_ms:.3f} | "
            f"{r.overhead:+.0%} | {r.layer_sum_ms:.3f} | {r.profiled_ms - r.attributed_ms:.3f} |"
        )
    for r in live:
        lines += [
            "",
            f"Top layers, {r.backend} {r.precision}:",
            "",
            "| layer | modules | kind | ms | GFLOP/s |",
            "|---|---|---|---|---|",
        ]
        for x in sorted(r.layers, key=lambda x: -x.ms)[:top]:
            mods = ", ".join(m or "(root)" for m in x.modules) or "(not attributed)"
            lines.append(f"| {x.name} | {mods} | {x.kind} | {x.ms:.4f} | {x.gflops:.1f} |")
    for r in rows:
        if r.skipped:
            lines += ["", f"skipped: {r.backend} {r.precision}: {r.skipped}"]
    return "\n".join(lines) + "\n"


def plot_stages(rows: Sequence[RowProfile], path: Path) -> None:
    """A stacked bar per row: time per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbench._io import atomic_path

    live = [r for r in rows if not r.skipped]
    stages = [*stage_order({s for r in live for s in r.stages()}), UNATTRIBUTED]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(live) + 2), 4))
    bottom = np.zeros(len(live))
    for s in stages:
        values = np.array([r.stages().get(s, 0.0) for r in live])
        ax.bar([f"{r.backend}\n{r.precision}" for r in live], values, bottom=bottom, label=s)
        bottom += values
    ax.set_ylabel("ms per call (profiled)")
    ax.set_title("Time per stage")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def profile_artifact(
    artifact: Artifact,
    backends: Sequence[str],
    precisions: Sequence[str],
    out: Path,
    batch: int = 1,
    calls: int = DEFAULT_CALLS,
    threads: int = 0,
    progress: Any = None,
) -> list[Path]:
    """Profile every row (``profile_rows``) and write the report into ``out`` (``write_profile``)."""
    from rbench.bench.machine import environment

    rows = profile_rows(artifact, backends, precisions, batch, calls, threads, progress)
    meta = {"artifact": str(artifact.path), "batch": batch, "iterations": calls, "environment": environment()}
    return write_profile(rows, out, meta)


def write_profile(rows: Sequence[RowProfile], out: Path, meta: Mapping[str, Any]) -> list[Path]:
    """``profile.json``, ``profile.md`` and ``profile-stages.png`` in ``out``."""
    from rbench._io import write_bytes_atomic, write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "profile.json", {**meta, "rows": [r.to_dict() for r in rows]})
    write_bytes_atomic(out / "profile.md", markdown(rows).encode())
    paths = [out / "profile.json", out / "profile.md"]
    if any(not r.skipped for r in rows):
        plot_stages(rows, out / "profile-stages.png")
        paths.append(out / "profile-stages.png")
    return paths
