"""``rbench debug precision``: which layer breaks a reduced-precision graph, and the fewest layers that fix it.

Where it goes wrong: the FP32 graph and the reduced one run on the same images with every layer's output exposed (as
ONNX Runtime's ``qdq_loss_debug`` does); each layer's output is compared (cosine, SQNR, max error). Each layer's own
error is measured apart: its part of the reduced graph (its Q/DQ or casts, its weights) run alone on the FP32 graph's
exact inputs. What it inherits is the rest.

What fixes it (``fix``): layers are put back in FP32 (``rbench.export.mixed.keep_fp32``), greedily, each step trying
the worst few layers by own error and keeping the one that helps the output most, until the output meets the
precision's bounds; then every kept layer the bound does not need is dropped again. The result is written into the
artifact as a variant, with the kept layers, its parity on every CPU backend that runs it, and its cost in speed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.bench.parity import compare, sig
from rbench.errors import BadInputError, unknown_choice
from rbench.precisions import Tolerance, get_precision

if TYPE_CHECKING:
    import onnx

    from rbench.export.artifact import Artifact

#: A layer's own error "stands out" this far below the median layer's (dB of SQNR).
STANDS_OUT_DB = 10.0
#: Layers tried at each step of the search (the worst by own error), and the most layers it keeps.
CANDIDATES, MAX_KEPT = 6, 64
#: The backends the debugger runs graphs on.
DEBUG_BACKENDS = ("ort", "openvino")
#: Which reduced files the debugger works on, and the variant its fix writes.
FIXED_VARIANT = {"int8": "int8-mixed", "int8-u8s8": "int8-mixed", "fp16": "fp16-mixed"}


@dataclass(frozen=True)
class LayerError:
    """One layer's output against the FP32 graph's: accumulated (the whole reduced graph up to it) and its own."""

    module: str
    node: str
    op: str
    cosine: float
    sqnr_db: float
    max_rel: float
    own_cosine: float
    own_sqnr_db: float
    own_max_rel: float

    @property
    def inherited_db(self) -> float:
        """How much of the accumulated error comes from upstream: own SQNR minus accumulated SQNR (dB)."""
        return self.own_sqnr_db - self.sqnr_db


@dataclass
class DebugReport:
    artifact: str
    precision: str
    backend: str
    images: int
    bound: Tolerance
    layers: list[LayerError]
    output: dict[str, float]  # the reduced graph's final output against FP32
    passed: bool
    #: layers whose stored output is not finite (FP16 above 65504): a strongly typed backend (TensorRT) stores
    #: them as typed, even where a CPU backend's fused kernels never do, so the graph fails wherever they are
    overflow: list[str] = field(default_factory=list)
    first: str | None = None  # the first layer whose own error stands out
    ranked: list[str] = field(default_factory=list)  # modules, worst own error first
    fix: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        def figures(layer: LayerError) -> dict[str, Any]:
            d = {k: sig(v) if isinstance(v, float) else v for k, v in asdict(layer).items()}
            return {**d, "inherited_db": sig(layer.inherited_db)}

        out: dict[str, Any] = {
            "first": self.first,
            "ranked": self.ranked,
            "kept": self.fix["kept"] if self.fix else None,
            "artifact": self.artifact,
            "precision": self.precision,
            "backend": self.backend,
            "images": self.images,
            "bound": {**asdict(self.bound), "checked": list(self.bound.checked)},
            "output": {k: sig(v) for k, v in self.output.items()},
            "passed": self.passed,
            "overflow": self.overflow,
            "layers": [figures(x) for x in self.layers],
        }
        if self.fix is not None:
            out["fix"] = self.fix
        return out


def parse_bound(text: str | None, base: Tolerance, imagenet: Tolerance | None = None) -> Tolerance:
    """``cosine=0.995,max_abs=0.1,top1=0.9`` over ``base`` (the precision's bounds for the model's family);
    ``imagenet`` (alone or first) starts from the ImageNet ResNets' bounds instead."""
    if not text:
        return base
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts and parts[0] == "imagenet":
        base, text = imagenet or base, ",".join(parts[1:])
    fields = {"cosine": "min_cosine", "max_abs": "max_abs_rel", "top1": "min_top1"}
    values = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, value = part.partition("=")
        if key.strip() not in fields:
            raise unknown_choice("bound", key.strip(), fields)
        try:
            number = float(value)
        except ValueError:
            raise BadInputError(f"--bound {part!r}: {value!r} is not a number") from None
        if not 0 < number <= 1:
            raise BadInputError(f"--bound {part!r}: must be in (0, 1]")
        values[fields[key.strip()]] = number
    return replace(base, **values)


def check_debug_target(artifact: Artifact, precision: str, backend: str) -> str:
    """The reduced file to debug; bad input, before any work, for what the debugger cannot take."""
    if backend not in DEBUG_BACKENDS:
        raise unknown_choice("debug backend", backend, DEBUG_BACKENDS)
    if precision not in FIXED_VARIANT:
        hint = " (an OpenVINO IR, not an ONNX graph)" if precision == "int8-nncf" else ""
        raise BadInputError(f"debug precision takes {', '.join(FIXED_VARIANT)}; not {precision}{hint}")
    if precision not in artifact.precisions:
        raise BadInputError(
            f"{artifact.path} has no {precision} model; export it with: {artifact.export_command([precision])}"
        )
    return precision


class GraphRunner:
    """Runs in-memory ONNX graphs on one CPU backend, every output returned as FP32."""

    def __init__(self, backend: str, threads: int = 0) -> None:
        self.backend, self.threads = backend, threads

    def session(self, model: onnx.ModelProto) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
        if self.backend == "openvino":
            return self._openvino(model)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return lambda feed: [np.asarray(o, dtype=np.float32) for o in session.run(None, dict(feed))]

    def _openvino(self, model: onnx.ModelProto) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
        import onnx
        import openvino as ov

        with tempfile.TemporaryDirectory(prefix="rbench-debug-") as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save(model, str(path))
            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": "f32"}
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = str(self.threads)
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        names = [o.get_any_name() for o in compiled.outputs]

        def run(feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            result = compiled(dict(feed))
            by_name = {k.get_any_name(): v for k, v in result.items()}
            return [np.asarray(by_name[n], dtype=np.float32) for n in names]

        return run

    def run(self, model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session(model)(feed)

    def tensors(self, model: onnx.ModelProto, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> dict:
        """The graph's outputs and the tensors ``names`` (a graph input is the feed itself), by name."""
        from rbench.export.mixed import with_outputs

        inner = [n for n in names if n not in feed]
        model = with_outputs(model, inner)
        values = self.run(model, feed)
        return {**feed, **dict(zip((o.name for o in model.graph.output), values, strict=True))}


def layer_figures(reference: np.ndarray, output: np.ndarray) -> tuple[float, float, float]:
    """Worst per-sample cosine, SQNR (dB) and max |error| / max |reference| of one tensor; non-finite output is
    cosine NaN and SQNR -inf.

    A feature map (NCHW) is compared channel by channel, each scaled by its own RMS in the reference: one channel of
    outliers must not hide what quantizing to its range does to every other channel.
    """
    ref = reference.astype(np.float64)
    out = output.astype(np.float64)
    if not np.isfinite(out).all():
        return float("nan"), float("-inf"), float("inf")
    max_rel = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))
    if ref.ndim == 4:
        rms = np.sqrt((ref**2).mean(axis=(0, 2, 3), keepdims=True))
        scale = np.maximum(rms, 1e-2 * rms.max() + 1e-30)
        ref, out = ref / scale, out / scale
    ref, out = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    err = out - ref
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = float(((ref * out).sum(1) / np.maximum(norms, 1e-30)).min())
    noise = float((err**2).sum())
    sqnr = 10 * np.log10(max(float((ref**2).sum()), 1e-30) / noise) if noise > 0 else float("inf")
    return cos, float(sqnr), max_rel


def bound_ratio(stats: Any, bound: Tolerance) -> float:
    """How far an output is from ``bound``, as the worst figure over its limit (≤ 1: it meets the bound)."""
    if stats.nan or stats.inf or not np.isfinite(stats.min_cosine):
        return float("inf")
    return max(
        (1 - stats.min_cosine) / max(1 - bound.min_cosine, 1e-12),
        stats.min_passing_rel / bound.max_abs_rel,
        (1 - stats.top1) / max(1 - bound.min_top1, 1e-12) if stats.top1 < bound.min_top1 else 0.0,
    )


def debug_precision(
    artifact: Artifact,
    precision: str,
    backend: str = "ort",
    images: Mapping[str, np.ndarray] | None = None,
    bound: str | None = None,
    fix: bool = False,
    threads: int = 0,
    progress: Any = None,
) -> DebugReport:
    """Per-layer errors of one reduced graph of ``artifact`` on ``backend``, and with ``fix`` the variant that meets
    the bound with the fewest layers kept in FP32 (written into the artifact)."""
    step = progress.step if progress is not None else (lambda _msg: None)
    check_debug_target(artifact, precision, backend)
    reduced_precision = get_precision(precision)
    tolerance = parse_bound(bound, reduced_precision.bounds(artifact.bounds_family), reduced_precision.tolerance)
    report, graphs, found, ranked = _analyse(artifact, precision, backend, images, tolerance, threads, step)
    if fix:
        report.fix = _fix(graphs, found, ranked, step)
    return report


def _analyse(
    artifact: Artifact,
    precision: str,
    backend: str,
    images: Mapping[str, np.ndarray] | None,
    tolerance: Tolerance,
    threads: int,
    step: Callable[[str], Any],
) -> tuple[DebugReport, Graphs, list[Any], list[Any]]:
    """The report of every layer's error, what a search holds fixed, the layers, and the layers worst own error
    first."""
    import onnx

    from rbench.bench.parity import parity_inputs
    from rbench.export import mixed
    from rbench.export.names import onnx_modules

    fp32 = onnx.load(str(artifact.onnx_path("fp32")))
    reduced = onnx.load(str(artifact.onnx_path(precision)))
    photos = parity_inputs(artifact.preprocess, artifact.input_name, images=images)["photos"]
    runner = GraphRunner(backend, threads)
    found = mixed.layers(fp32)
    modules = onnx_modules(fp32, set(dict(artifact.reference_model().named_modules())))
    points = _points(reduced, fp32, found)
    step(f"running FP32 and {precision} with every layer's output ({len(found)} layers, {_count(photos)} images)")
    exact = runner.tensors(fp32, _exact_names(found), photos)
    at = runner.tensors(reduced, list(points.values()), photos)
    output = artifact.manifest["model"]["output_name"]
    reference = exact[output]
    final = runner.run(reduced, photos)[0]  # as the backend runs it: exposed tensors stop Q/DQ fusing into int8 kernels
    step(f"measuring each layer's own error on exact inputs ({len(found)} layers)")
    own = _own_errors(reduced, fp32, found, points, exact, runner)
    errors = [
        LayerError(
            modules.get(layer.name, ""),
            layer.name,
            layer.op,
            *layer_figures(exact[layer.output], at[points[layer.name]]),
            *own[layer.name],
        )
        for layer in found
    ]
    stats = compare(reference, final)
    overflow = [e.module or e.node for e in errors if not np.isfinite(e.cosine)]
    report = DebugReport(
        str(artifact.path),
        precision,
        backend,
        _count(photos),
        tolerance,
        errors,
        _output(stats),
        passed=not stats.failing(tolerance) and not overflow,
        overflow=overflow,
    )
    ranked = sorted(range(len(errors)), key=lambda i: _own_key(errors[i]))
    report.ranked = [errors[i].module or errors[i].node for i in ranked]
    report.first = _first_standing_out(errors)
    graphs = Graphs(artifact, precision, backend, fp32, reduced, photos, reference, runner, tolerance, points, modules)
    return report, graphs, found, [found[i] for i in ranked]


def _count(feed: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(feed.values())))


def _output(stats: Any) -> dict[str, float]:
    return {"cosine": stats.min_cosine, "max_rel": stats.min_passing_rel, "top1": stats.top1}


def _exact_names(found: Sequence[Any]) -> list[str]:
    """Every tensor a layer reads or writes, in the FP32 graph (the exact inputs of each layer's own-error run)."""
    names = dict.fromkeys(t for layer in found for t in (*layer.inputs, layer.output))
    return list(names)


def _points(reduced: onnx.ModelProto, fp32: onnx.ModelProto, found: Sequence[Any]) -> dict[str, str]:
    """Where each layer's output is read in the reduced graph: after its own output's Q/DQ when it has one (the
    value its consumers see), else the tensor itself."""
    from rbench.export.mixed import reduced_name

    q_of = {n.input[0]: n.output[0] for n in reduced.graph.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n.output[0] for n in reduced.graph.node if n.op_type == "DequantizeLinear"}
    points = {}
    for layer in found:
        name = reduced_name(reduced, fp32, layer.output)
        points[layer.name] = dq_of.get(q_of.get(name, ""), name)
    return points


def _own_errors(reduced, fp32, found, points, exact, runner) -> dict[str, tuple[float, float, float]]:
    """Each layer's part of the reduced graph, run alone on the FP32 graph's exact inputs, against FP32. The parts,
    each renamed under a prefix of its own, run side by side as one graph: one compilation instead of one per layer
    (on OpenVINO, ResNet-50's 72 took 33 s one by one)."""
    import onnx
    import onnx.compose

    from rbench.export.mixed import reduced_name

    inferred = onnx.shape_inference.infer_shapes(reduced)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input)}
    extractor = onnx.utils.Extractor(inferred)
    union = onnx.ModelProto()
    union.CopyFrom(reduced)
    del union.graph.node[:], union.graph.initializer[:], union.graph.value_info[:]
    del union.graph.input[:], union.graph.output[:]
    feed = {}
    for k, layer in enumerate(found):
        names = [reduced_name(reduced, fp32, t) for t in layer.inputs]
        part = onnx.compose.add_prefix(extractor.extract_model(names, [points[layer.name]]), f"own{k}/")
        for kind in ("node", "initializer", "value_info", "input", "output"):
            getattr(union.graph, kind).extend(getattr(part.graph, kind))
        with np.errstate(over="ignore"):  # an exact input FP16 cannot hold arrives as Inf, as it would be stored
            for n, t in zip(names, layer.inputs, strict=True):
                dtype = np.float16 if types.get(n) == onnx.TensorProto.FLOAT16 else np.float32
                feed[f"own{k}/{n}"] = exact[t].astype(dtype, copy=False)
    values = runner.run(union, feed)
    return {layer.name: layer_figures(exact[layer.output], value) for layer, value in zip(found, values, strict=True)}


def _own_key(layer: LayerError) -> tuple[float, float]:
    return (layer.own_sqnr_db if np.isfinite(layer.own_cosine) else float("-inf"), -layer.own_max_rel)


def _first_standing_out(errors: Sequence[LayerError]) -> str | None:
    """The first layer whose own error stands out (SQNR ``STANDS_OUT_DB`` below the median layer's), else the
    layer with the worst own error."""
    if not errors:
        return None
    finite = [e.own_sqnr_db for e in errors if np.isfinite(e.own_sqnr_db)]
    median = statistics.median(finite) if finite else 0.0
    for e in errors:
        if not np.isfinite(e.own_cosine) or e.own_sqnr_db < median - STANDS_OUT_DB:
            return e.module or e.node
    worst = min(errors, key=_own_key)
    return worst.module or worst.node


@dataclass(frozen=True)
class Graphs:
    """What one debugging session holds fixed: the artifact, both graphs, the images and the FP32 reference on
    them, the backend's runner, the bound, and where each layer's output is read and which module it is."""

    artifact: Any
    precision: str
    backend: str
    fp32: Any
    reduced: Any
    photos: Mapping[str, np.ndarray]
    reference: np.ndarray
    runner: GraphRunner
    tolerance: Tolerance
    points: dict[str, str]
    modules: dict[str, str]


def _scorer(graphs: Graphs) -> Callable[[Sequence[Any]], float]:
    """The output's distance to the bound with the layers ``kept`` in FP32 (at most 1: met), run as the backend runs
    the graph (nothing exposed, so its kernels fuse as in a benchmark); for FP16, infinite while any layer's stored
    output is not finite."""
    from rbench.export.mixed import keep_fp32

    def score(kept: Sequence[Any]) -> float:
        model = keep_fp32(graphs.reduced, graphs.fp32, kept)
        if graphs.precision == "fp16":
            made = {o for n in model.graph.node for o in n.output}
            wanted = [p for p in graphs.points.values() if p in made]
            values = graphs.runner.tensors(model, wanted, graphs.photos)
            if any(not np.isfinite(v).all() for v in values.values()):
                return float("inf")
        return bound_ratio(compare(graphs.reference, graphs.runner.run(model, graphs.photos)[0]), graphs.tolerance)

    return score


def _search(
    score: Callable[[Sequence[Any]], float],
    found: Sequence[Any],
    ranked: Sequence[Any],
    step: Callable[[str], Any],
    modules: Mapping[str, str],
    limit: int = MAX_KEPT,
) -> tuple[list[Any], bool, int]:
    """Greedy: each step tries the ``CANDIDATES`` worst layers by own error not yet kept and keeps the one that
    brings the output closest to the bound, until it is met (at most ``limit`` layers); then drops every kept layer
    the bound does not need. Returns the layers kept, whether the bound is met, and how many graphs were tried."""
    kept: list[Any] = []
    current = score(kept)
    tried = 1
    if current > 1:
        step(f"trying the {CANDIDATES} worst layers by own error in FP32, one more kept per round")
    while current > 1 and len(kept) < min(limit, len(found)):
        candidates = [layer for layer in ranked if layer not in kept][:CANDIDATES]
        scores = [score([*kept, c]) for c in candidates]
        tried += len(candidates)
        best = min(scores)
        choice = next(c for c, s in zip(candidates, scores, strict=True) if s <= best * 1.02 + 1e-12)
        kept.append(choice)
        current = scores[candidates.index(choice)]
        step(f"keeping {modules.get(choice.name, choice.name)} in FP32: {current:.3g} of the bound")
    for layer in list(kept):  # drop what the bound does not need
        rest = [k for k in kept if k is not layer]
        if current <= 1 and score(rest) <= 1:
            kept = rest
        tried += 1
    return kept, (score(kept) <= 1 if kept else current <= 1), tried


def _fix(graphs: Graphs, found: Sequence[Any], ranked: Sequence[Any], step: Callable[[str], Any]) -> dict[str, Any]:
    artifact, precision, backend, fp32, reduced = (
        graphs.artifact,
        graphs.precision,
        graphs.backend,
        graphs.fp32,
        graphs.reduced,
    )
    photos, runner, tolerance, modules = graphs.photos, graphs.runner, graphs.tolerance, graphs.modules
    from rbench.export.mixed import keep_fp32

    kept, met, tried = _search(_scorer(graphs), found, ranked, step, modules)
    names = [modules.get(k.name, "") or k.name for k in kept]
    variant = FIXED_VARIANT[precision]
    if not kept:
        return {
            "kept": [],
            "variant": None,
            "file": None,
            "met": met,
            "graphs_tried": tried,
            "parity": {},
            "speed": None,
        }
    step(f"writing {get_precision(variant).file} ({len(kept)} layer(s) in FP32) and checking its parity")
    model = keep_fp32(reduced, fp32, kept)
    speed = _speed(reduced, model, photos, runner)
    settings = {
        "base": precision,
        "kept": names,
        "nodes": [k.name for k in kept],
        "bound": asdict(tolerance),
        "backend": backend,
        "images": _count(photos),
    }
    settings["bound"]["checked"] = list(tolerance.checked)
    entry = write_variant(artifact, variant, model, settings, speed)
    return {
        "kept": names,
        "variant": variant,
        "file": entry["file"],
        "met": met,
        "graphs_tried": tried,
        "parity": entry["parity"],
        "speed": speed,
    }


#: The reduced ONNX graphs an export holds to their bounds on every CPU backend here that runs them (below).
CONTROLLED = ("int8", "int8-u8s8")
#: The most layers an export's accuracy control keeps in FP32: beyond a few layers the fault is not a kernel's
#: rounding but the model's, and the search would cost minutes per layer on ResNet-50 (``rbench debug`` goes to 64).
CONTROL_MAX_KEPT = 8


@dataclass(frozen=True)
class Controlled:
    """What an export's accuracy control found for one reduced graph: the record for its manifest entry, and the
    graph with the layers it keeps in FP32, or None where the graph as made meets its bounds on every backend."""

    record: dict[str, Any]
    model: onnx.ModelProto | None = None


def cpu_backends(precision: str) -> list[str]:
    """The CPU backends here that run ``precision``'s ONNX file and that the debugger runs graphs on."""
    from rbench.runtime.registry import BACKENDS

    return [
        name
        for name in DEBUG_BACKENDS
        if precision in BACKENDS[name].precisions and not BACKENDS[name].why_not(precision, "cpu")
    ]


def accuracy_control(
    artifact: Artifact, precision: str, progress: Any = None, parity: Callable[..., Any] | None = None
) -> Controlled | None:
    """The export's accuracy control of an INT8 graph (``CONTROLLED``): its parity against PyTorch on every CPU
    backend here that runs it, and where one misses the bounds of the model's family, the fewest layers kept in FP32
    (the ``--fix`` search, ranked by own error on the first backend that missed, scored on every backend) so that
    each meets them. None for another precision, or a graph already checked on this kind of CPU with these
    backends. ``parity(artifact, backend, precision)``: the check to use (default ``artifact_parity``).

    Why: one graph can pass on one backend and fail on another on the same CPU. On a CPU without VNNI (AMD Zen 3)
    OpenVINO runs the portable ResNet-50 graph at worst cosine 0.969, ONNX Runtime the same file at 0.992; keeping
    ``layer1.0.downsample.0`` in FP32 takes OpenVINO to 0.990 at no measured cost in speed (README)."""
    from rbench.bench.parity import artifact_parity
    from rbench.env import cpu_model, has_vnni
    from rbench.export.mixed import keep_fp32

    parity = parity or artifact_parity
    if precision not in CONTROLLED:
        return None
    step = progress.step if progress is not None else (lambda _msg: None)
    backends = cpu_backends(precision)
    machine = {"cpu": cpu_model(), "vnni": has_vnni()}
    earlier = artifact.manifest["precisions"][precision].get("accuracy") or {}
    if earlier.get("machine") == machine and sorted(earlier.get("backends", {})) == sorted(backends):
        return None
    checked = {}
    for backend in backends:
        step(f"checking {precision} on {backend} against PyTorch (accuracy control)")
        checked[backend] = parity(artifact, backend, precision)
    record: dict[str, Any] = {
        "machine": machine,
        "backends": {name: _photo_figures(report) for name, report in checked.items()},
        "kept": list(earlier.get("kept", [])),
        "nodes": list(earlier.get("nodes", [])),
    }
    missed = [name for name, report in checked.items() if not report.passed]
    if not missed:
        return Controlled(record)
    tolerance = get_precision(precision).bounds(artifact.bounds_family)
    step(f"{precision} misses its bounds on {', '.join(missed)}: searching for the fewest layers to keep in FP32")
    _, graphs, found, ranked = _analyse(artifact, precision, missed[0], None, tolerance, 0, step)
    # scored on every backend, not only those that missed: keeping a layer in FP32 changes which kernels the others
    # fuse (ONNX Runtime on Zen 3 ran ResNet-18's portable graph at 0.9965, and at 0.9889 with the layer that took
    # OpenVINO from 0.983 to 0.991 kept in FP32, though the graph's own arithmetic stayed at 0.9965)
    each = [graphs, *(_on(graphs, name) for name in backends if name != missed[0])]
    scorers = [_scorer(g) for g in each]
    search = _search(lambda k: max(s(k) for s in scorers), found, ranked, step, graphs.modules, CONTROL_MAX_KEPT)
    kept, met, tried = search
    record.update(missed=missed, met=met, graphs_tried=tried)
    note = f"{get_precision(precision).file}: {', '.join(missed)} missed its bounds on this CPU"
    if not met:  # shipped as quantized: its parity fails, and rbench debug precision shows where
        record["unmet_with"] = [graphs.modules.get(k.name, "") or k.name for k in kept]
        if progress is not None:
            progress.note(f"{note}; no {CONTROL_MAX_KEPT} layers kept in FP32 meet them: shipped as quantized")
        return Controlled(record)
    model = keep_fp32(graphs.reduced, graphs.fp32, kept)
    after = {g.backend: _output(compare(g.reference, g.runner.run(model, g.photos)[0])) for g in each}
    record["kept"] += [graphs.modules.get(k.name, "") or k.name for k in kept]
    record["nodes"] += [k.name for k in kept]
    record["after"] = {name: {k: sig(v) for k, v in figures.items()} for name, figures in after.items()}
    if progress is not None:
        cosines = ", ".join(
            f"{name} {record['backends'][name]['cosine']} -> {f['cosine']}" for name, f in record["after"].items()
        )
        kept_names = ", ".join(record["kept"][len(earlier.get("kept", [])) :])
        progress.note(f"{note}: {kept_names} kept in FP32 (worst cosine {cosines})")
    return Controlled(record, model)


def _on(graphs: Graphs, backend: str) -> Graphs:
    """The same search state on another backend: its runner, and its FP32 graph's output as the reference."""
    runner = GraphRunner(backend, graphs.runner.threads)
    return replace(graphs, backend=backend, runner=runner, reference=runner.run(graphs.fp32, graphs.photos)[0])


def _photo_figures(report: Any) -> dict[str, Any]:
    """Pass or fail, and the worst figures over the outputs, on the photos."""
    stats = list(report.stats.get("photos", {}).values())
    return {
        "passed": report.passed,
        "cosine": sig(min((s.min_cosine for s in stats), default=float("nan"))),
        "max_rel": sig(max((s.min_passing_rel for s in stats), default=float("nan"))),
    }


def _speed(reduced, model, photos, runner, rounds: int = 5, calls: int = 10) -> dict[str, float]:
    """Batch-1 latency of the reduced graph and of the fixed one, interleaved rounds, median of each (ms)."""
    one = {k: v[:1] for k, v in photos.items()}
    sessions = {"reduced_ms": runner.session(reduced), "fixed_ms": runner.session(model)}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for run in sessions.values():
        run(one)  # warm-up
    for _ in range(rounds):
        for key, run in sessions.items():
            start = time.perf_counter()
            for _ in range(calls):
                run(one)
            times[key].append((time.perf_counter() - start) / calls * 1e3)
    out = {k: sig(statistics.median(v), 4) for k, v in times.items()}
    out["cost"] = sig(out["fixed_ms"] / out["reduced_ms"] - 1, 3)
    return out


def write_variant(
    artifact: Artifact, variant: str, model: onnx.ModelProto, settings: dict[str, Any], speed: dict[str, float]
) -> dict[str, Any]:
    """Add (or replace) the fixed variant in the artifact: the file, then its manifest entry with the parity of each
    CPU backend that runs it against PyTorch FP32; each written to a temporary file and renamed."""
    from rbench._io import write_json_atomic
    from rbench.bench.parity import artifact_parity
    from rbench.export.artifact import MANIFEST, Artifact, precision_entry
    from rbench.export.names import onnx_modules
    from rbench.export.onnx_export import save_onnx
    from rbench.runtime.registry import BACKENDS

    path = artifact.path / get_precision(variant).file
    save_onnx(model, path)
    entry = precision_entry(path, model, settings)
    entry["modules"] = onnx_modules(model, set(dict(artifact.reference_model().named_modules())))
    entry["speed"] = speed
    manifest = dict(artifact.manifest)
    manifest["precisions"] = {**manifest["precisions"], variant: entry}
    write_json_atomic(artifact.path / MANIFEST, manifest)
    updated = Artifact.open(artifact.path)
    tolerance = Tolerance(**{**settings["bound"], "checked": tuple(settings["bound"]["checked"])})
    parity = {}
    for name, spec in BACKENDS.items():
        if spec.device == "cpu" and variant in spec.precisions and not spec.why_not(variant, "cpu"):
            parity[name] = artifact_parity(updated, name, variant, tolerance=tolerance).to_dict()
    entry["parity"] = {name: {"passed": p["passed"], "failures": p["failures"]} for name, p in parity.items()}
    manifest["precisions"][variant] = entry
    write_json_atomic(artifact.path / MANIFEST, manifest)
    return entry


__all__ = ["Controlled", "DebugReport", "LayerError", "accuracy_control", "debug_precision", "parse_bound"]
