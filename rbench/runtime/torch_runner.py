"""Eager PyTorch: the FP32 reference, or any variant of it (BatchNorm folded by the caller, channels-last, reduced
precision), and the same model under ``torch.compile``.

Precisions: ``fp32`` (TF32 off on CUDA, so FP32 means FP32), ``fp16`` (weights and activations in half; CUDA, or a
CPU with native FP16 arithmetic), ``bf16`` (autocast: convolutions and matmuls in bfloat16, the rest FP32; on CUDA or
a CPU with native bf16).
Inputs and outputs stay FP32.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rbench.env import cpu_flags, has_native_bf16
from rbench.errors import EnvironmentProblem, unknown_choice
from rbench.runtime.base import LayerEvent, Profile, Runner, TensorSpec
from rbench.runtime.spec import BackendSpec, Consumes, Executed, ModelSource, RunContext

#: bf16: autocast on FP32; int8: a PT2E-quantized graph, fed FP32
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.float32, "int8": torch.float32}


def fp16_unsupported(device: str) -> str | None:
    """Why eager FP16 cannot run here, or ``None``: CPUs without native FP16 arithmetic emulate it slowly."""
    if device.startswith("cuda") or "avx512_fp16" in cpu_flags() or "amx_fp16" in cpu_flags():
        return None
    return "no native FP16 on this CPU"


def bf16_unsupported(device: str) -> str | None:
    """Why torch bf16 does not run here, or ``None``: without native bf16 oneDNN emulates it in FP32 with a
    conversion per element. Measured on the default ResNet-50 (AMD Zen 3, AVX2): eager autocast 0.20x eager FP32 at
    batch 1 and 0.14x at batch 8, torch.compile 0.10x and 0.13x, the two rows 4.7 minutes of ``make bench``."""
    if device.startswith("cuda") or has_native_bf16():
        return None
    return "no native bf16 on this CPU (torch would emulate it, 5-10x slower than FP32)"


class TorchRunner(Runner):
    """Runs an ``nn.Module`` eagerly.

    Args:
        model: the module, or a zero-argument function that builds it on activation (a folded model, say: the
            caller folds, as the runtime does not depend on the exporter).
        input_shape: ``(C, H, W)``; the batch is dynamic.
        variant: a label for reports: ``eager`` (the reference) or ``folded``.
        channels_last: run in NHWC memory format.
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (see the module docstring).
        threads: intra-op threads while active (0: leave torch's setting); restored on release.
    """

    backend = "torch"

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        input_shape: tuple[int, int, int],
        variant: str = "eager",
        channels_last: bool = False,
        device: str = "cpu",
        precision: str = "fp32",
        input_name: str = "input",
        output_name: str = "logits",
        threads: int = 0,
    ) -> None:
        if precision not in TORCH_DTYPES:
            raise unknown_choice("torch runner precision", precision, TORCH_DTYPES)
        super().__init__(f"torch-{variant}-{precision}", device, precision)
        self._source = model
        self.input_shape = input_shape
        self.variant = variant
        self.channels_last = channels_last
        self.input_name = input_name
        self.output_name = output_name
        self.threads = threads
        self.model: Any = None
        self._saved_threads = 0

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(self.input_name, np.dtype(np.float32), ("batch", *self.input_shape))]

    def settings(self) -> dict[str, Any]:
        """What this runner runs with, for reports."""
        return {
            "variant": self.variant,
            "channels_last": self.channels_last,
            "threads": torch.get_num_threads(),
            "autocast": "bfloat16" if self.precision == "bf16" else None,
            "tf32": False if self.device.startswith("cuda") else None,
        }

    def _activate(self) -> None:
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EnvironmentProblem(f"device {self.device!r} requested but torch sees no CUDA device")
        if (why := _reduced_check(self.precision, self.device)) is not None:
            raise EnvironmentProblem(why)
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._saved_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        source = self._source if isinstance(self._source, nn.Module) else self._source()
        model = copy.deepcopy(source).eval()  # never change the caller's module (dtype, memory format)
        model = model.to(self.device, TORCH_DTYPES[self.precision])
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = self._wrap(model)

    def _wrap(self, model: nn.Module) -> Any:
        """What ``_infer`` calls: the module itself here; ``torch.compile``'s wrapper in the subclass."""
        return model

    def _deactivate(self) -> None:
        self.model = None
        if self._saved_threads:
            torch.set_num_threads(self._saved_threads)

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.precision == "bf16":
                with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16):
                    yield
            else:
                yield

    def executed(self) -> Executed:
        if self.precision == "bf16":
            return Executed("bf16", "bf16 autocast (conv, matmul), rest fp32")
        return Executed(self.precision, self.precision)

    def threads_in_use(self) -> int | None:
        return torch.get_num_threads()

    def device_callable(self, feed: Mapping[str, np.ndarray]) -> Callable[[], Any] | None:
        """A call of the model on this feed already on the device (for compute-only timing); CUDA only."""
        if not self.device.startswith("cuda"):
            return None
        x = torch.from_numpy(feed[self.input_name]).to(self.device, TORCH_DTYPES[self.precision])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def call() -> Any:
            with self._context():
                return self.model(x)

        return call

    def profile(self, feed: Mapping[str, np.ndarray], calls: int) -> Profile:
        """``torch.profiler`` over ``calls`` inferences after a warm-up. Eager: each leaf module's calls wrapped in a
        ``record_function`` named by its module path (a layer is the module itself). Compiled: inductor calls each
        convolution and linear layer as an extern oneDNN kernel, which ``compiled_layers`` reads back to its module
        from its shapes; inductor's own fused kernels (pointwise, pooling) name no module and stay not attributed."""
        import time

        from torch.profiler import ProfilerActivity, record_function, schedule
        from torch.profiler import profile as torch_profile

        hooks = []
        hooked = self.compiles() is None and isinstance(self.model, nn.Module)  # dynamo ignores record_function
        modules = dict(self.model.named_modules()) if hooked else {}
        for name, module in modules.items():
            if name and not any(True for _ in module.children()):
                ranges: list[Any] = []

                def enter(_m: Any, _args: Any, ranges: list[Any] = ranges, name: str = name) -> None:
                    ranges.append(record_function(name).__enter__())

                def leave(_m: Any, _args: Any, _out: Any, ranges: list[Any] = ranges) -> None:
                    ranges.pop().__exit__(None, None, None)

                hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
        try:
            for _ in range(3):
                self._infer(feed)
            wall = []
            warm = 3  # the profiler's own first steps are slow: recorded, then left out by its schedule
            with torch_profile(
                activities=[ProfilerActivity.CPU],
                schedule=schedule(wait=0, warmup=warm, active=calls, repeat=1),
                record_shapes=not hooked,
            ) as prof:
                for i in range(warm + calls):
                    start = time.perf_counter()
                    self._infer(feed)
                    if i >= warm:
                        wall.append((time.perf_counter() - start) * 1e3)
                    prof.step()
        finally:
            for hook in hooks:
                hook.remove()
        names = {n for n in modules if n}
        layers = []
        if hooked:
            for event in prof.events():
                if event.name in names:
                    layers.append(LayerEvent(event.name, "module", event.cpu_time_total / 1e3, (event.name,)))
        else:
            layers = compiled_layers(prof.events(), self._module_calls(feed))
        merged: dict[tuple[str, str, tuple[str, ...]], float] = {}
        for e in layers:
            merged[(e.name, e.kind, e.covers)] = merged.get((e.name, e.kind, e.covers), 0.0) + e.total_ms
        events = [LayerEvent(n, k, ms, c) for (n, k, c), ms in merged.items()]
        return Profile("torch.profiler", calls, events, wall)

    def _module_calls(self, feed: Mapping[str, np.ndarray]) -> list[tuple[Any, str]]:
        """Each convolution and linear layer of the source model as it is called on ``feed``, in call order: its
        shape signature (``shape_signature``) and module name."""
        source = self._source if isinstance(self._source, nn.Module) else self._source()
        calls: list[tuple[Any, str]] = []

        def hook(module: Any, args: Any, _out: Any, name: str) -> None:
            calls.append((shape_signature(args[0].shape, module.weight.shape), name))

        hooks = [
            m.register_forward_hook(functools.partial(hook, name=name))
            for name, m in source.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear)
        ]
        try:
            with torch.no_grad():
                source.eval()(torch.from_numpy(feed[self.input_name]))
        finally:
            for h in hooks:
                h.remove()
        return calls

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.model is not None
        x = torch.from_numpy(feed[self.input_name]).to(self.device, TORCH_DTYPES[self.precision])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._context():
            y = self.model(x)
        return {self.output_name: y.float().cpu().numpy()}


def shape_signature(input_shape: Sequence[int], weight_shape: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """A convolution's or linear layer's input shape and its weight's dimensions, in any order (oneDNN's linear
    kernels take the weight transposed)."""
    return tuple(input_shape), tuple(sorted(weight_shape))


#: The extern kernels inductor calls for convolutions and linear layers on the CPU (FP32 and PT2E INT8)
EXTERN_KERNELS = ("convolution", "qconv", "linear", "addmm")


def compiled_layers(events: Any, calls: list[tuple[Any, str]]) -> list[LayerEvent]:
    """A compiled model's profile read back to modules. Each extern convolution or linear kernel is matched by its
    shapes (``shape_signature`` of an input and a later one: oneDNN's argument lists differ per kernel) to the next
    module called with the same shapes, in call order, per profiled call. Two modules share shapes only where one
    feeds the other (a ResNet has no two parallel branches of the same shapes: a block's first convolution and its
    downsample read the same input with other weights), so inductor cannot run them in the other order. The rest of
    the compiled region (inductor's fused pointwise and pooling kernels, the residual adds not fused into a
    convolution, dispatch) is one entry that covers no module."""
    import collections

    layers: list[LayerEvent] = []
    queues: dict[int, dict[Any, collections.deque[str]]] = {}
    attributed: set[int] = set()
    top = 0.0
    for event in events:
        step, parent = event, event.cpu_parent
        while step.cpu_parent is not None:
            step = step.cpu_parent
        if parent is not None and parent is step:
            top += event.cpu_time_total / 1e3
        if not any(k in event.name for k in EXTERN_KERNELS) or parent is None:
            continue
        ancestor = parent
        while ancestor is not None and id(ancestor) not in attributed:
            ancestor = ancestor.cpu_parent
        if ancestor is not None:
            continue  # inside a kernel already read (an aten call under a oneDNN one)
        queue = queues.setdefault(id(step), _by_signature(calls))
        shapes = [tuple(s) for s in event.input_shapes]
        shown = [x for x in shapes if x]  # a prepacked weight (PT2E, frozen) shows no shape; its copy later does
        pairs = [(a, tuple(sorted(b))) for i, a in enumerate(shown) for b in shown[i + 1 :]]
        found = next((sig for sig in pairs if queue.get(sig)), None)
        if found is None:
            continue
        module = queue[found].popleft()
        attributed.add(id(event))
        layers.append(LayerEvent(module, f"module {event.name}", event.cpu_time_total / 1e3, (module,)))
    rest = top - sum(e.total_ms for e in layers)
    layers.append(LayerEvent("compiled region: inductor's own kernels and dispatch", "kernel", max(rest, 0.0)))
    return layers


def _by_signature(calls: list[tuple[Any, str]]) -> dict[Any, Any]:
    import collections

    queue: dict[Any, collections.deque[str]] = {}
    for sig, name in calls:
        queue.setdefault(sig, collections.deque()).append(name)
    return queue


class CompiledTorchRunner(TorchRunner):
    """The same model under ``torch.compile`` (inductor).

    CPU: weight freezing (``torch._inductor.config.freezing``), which folds weights and prepacks oneDNN ones. CUDA:
    ``max-autotune`` with CUDA graphs. The first call at each input shape compiles: a benchmark times it apart.
    ``compiles()`` counts compilations so far, so a recompilation during timing (a new shape, or the recompile limit
    reached and a silent fall back to eager) can be detected.
    """

    backend = "torch-compile"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("variant", "compiled")
        super().__init__(*args, **kwargs)
        self.mode = "max-autotune" if self.device.startswith("cuda") else "default"

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "mode": self.mode, "freezing": not self.device.startswith("cuda")}

    def _wrap(self, model: nn.Module) -> Any:
        import torch._inductor.config as inductor

        if not self.device.startswith("cuda"):
            inductor.freezing = True
        return torch.compile(model, mode=self.mode, dynamic=False)

    def compiles(self) -> int:
        """Frames dynamo has compiled in this process (a process-wide counter: compare before and after)."""
        from torch._dynamo.utils import counters

        return int(counters["frames"]["total"])


class Pt2eRunner(CompiledTorchRunner):
    """INT8 in PyTorch: torchao's PT2E flow, then ``torch.compile`` with weight freezing (inductor lowers the
    quantized graph to oneDNN's int8 kernels on x86).

    ``torch.export`` (batch dynamic), ``X86InductorQuantizer``'s static default (per-channel int8 weights, uint8
    activations) on every layer but the first convolution (``first_conv``, kept FP32 as in the portable graph),
    ``prepare_pt2e``, calibration on ``calibration()`` (the artifact's INT8 calibration images),
    ``convert_pt2e``. Quantizing and calibrating are part of activation (the row's cold start); compiling is the
    first call at each batch size, timed apart as for every compiled row.
    """

    def __init__(self, *args: Any, calibration: Callable[[], np.ndarray], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calibration = calibration
        self.kept_fp32: list[str] = []

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "quantizer": "torchao X86InductorQuantizer (PT2E, static)",
            "kept_fp32": self.kept_fp32,  # known once quantized (activation)
        }

    def executed(self) -> Executed:
        return Executed("int8", "int8 PT2E graph (X86InductorQuantizer), oneDNN kernels via inductor")

    def _wrap(self, model: nn.Module) -> Any:
        self.kept_fp32 = [first_conv(model)]
        return super()._wrap(pt2e_quantize(model, self.calibration(), self.input_shape, self.kept_fp32))


def pt2e_quantize(
    model: nn.Module, images: np.ndarray, input_shape: tuple[int, int, int], keep_fp32: Sequence[str]
) -> nn.Module:
    """``model`` quantized by torchao's PT2E flow with ``X86InductorQuantizer``, calibrated on ``images``; the
    modules named in ``keep_fp32`` stay FP32."""
    import logging

    # torchao logs at import that its CUDA kernels (mxfp8, cutlass) and triton are absent, and torch that an Enum
    # is registered twice: nothing a CPU row uses, but printed on every run as WARNING lines
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    for name in keep_fp32:
        quantizer.set_module_name_qconfig(name, None)
    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(separate_module_calls(graph), quantizer)
    with torch.no_grad():
        for i in range(0, len(images), 8):
            prepared(torch.from_numpy(images[i : i + 8]))
    return convert_pt2e(prepared)


def first_conv(model: nn.Module) -> str:
    """The module name of ``model``'s first convolution, which PT2E keeps in FP32.

    It reads the normalized image, whose uint8 codes fill the whole range, through 7x7 kernels: on a CPU without VNNI
    oneDNN's u8 x s8 kernels multiply-add pairs into int16 (``VPMADDUBSW``), which saturates there. Measured on the
    default ResNet-50 (AMD Zen 3, AVX2, no VNNI), worst cosine on the photos against PyTorch FP32: every layer
    quantized 0.9928 in the quantized graph's reference arithmetic but 0.9751 compiled (fails the 0.99 bound); first
    convolution FP32 0.9936 compiled, no slower (45.5 ms against 45.6 at batch 1). Reduce-range alternatives do not
    saturate but lose more: 7-bit activations 0.9800, 7-bit weights 0.9853. The portable ONNX graph keeps the same
    layer in FP32 (``Int8Config.keep_first_conv``); on Zen 4 with VNNI every layer quantized reached 0.99310.
    """
    return next(name for name, module in model.named_modules() if isinstance(module, nn.Conv2d))


def separate_module_calls(graph: Any) -> Any:
    """Give each call of a module used more than once its own name in the graph's module stack.

    torchvision's blocks (and rbench's, which keep its names) call one ``relu`` module twice. ``torch.export``
    records both calls under the same module path, so the source partitions that ``X86InductorQuantizer`` matches
    its conv-add-relu pattern against hold both ReLUs as one partition with two outputs, and it raises "Input
    partition has more than one output node". Renaming the second call in the metadata (``layer1.0.relu#2``)
    separates them; the model, its parameters and their names are untouched.
    """
    import collections

    calls: collections.Counter[str] = collections.Counter()
    last = None
    for node in graph.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or not stack:
            last = None
            continue
        key, (path, kind) = list(stack.items())[-1]
        if path != last:
            calls[path] += 1
        last = path
        if calls[path] > 1:
            node.meta["nn_module_stack"] = {**stack, key: (f"{path}#{calls[path]}", kind)}
    return graph


def _reduced_check(precision: str, device: str) -> str | None:
    if precision == "bf16":
        return bf16_unsupported(device)
    return fp16_unsupported(device) if precision == "fp16" else None


def _int8_check(precision: str, device: str) -> str | None:
    if precision != "int8":
        return _reduced_check(precision, device)
    if device != "cpu":
        return "PT2E INT8 with X86InductorQuantizer runs on x86 CPUs; on a GPU INT8 runs on trt, ort-trt"
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed: pip install 'rbench[torchao]'"
    return None


def _folded(kind: type[TorchRunner], variant: str, channels_last: bool) -> Any:
    def build(source: ModelSource, precision: str, context: RunContext) -> TorchRunner:
        if precision == "int8":
            return Pt2eRunner(
                source.folded_model,
                source.input_shape,
                calibration=source.calibration_images,
                variant=f"{variant}+pt2e",
                device=context.device,
                precision=precision,
                threads=context.threads,
            )
        return kind(
            source.folded_model,
            source.input_shape,
            variant=variant.replace(" ", "+"),
            channels_last=channels_last,
            device=context.device,
            precision=precision,
            threads=context.threads,
        )

    return build


_PRECISIONS = {"fp32": "FP32 (TF32 off on CUDA)", "fp16": "half weights and activations", "bf16": "bf16 autocast"}
_NO_INT8 = {"int8": "no INT8 path in eager PyTorch here (torch-compile has PT2E)"}
SPECS = (
    BackendSpec(
        "torch",
        "cpu",
        "dev",
        "eager PyTorch on the artifact's weights, BatchNorm folded",
        Consumes.WEIGHTS,
        _PRECISIONS,
        _folded(TorchRunner, "folded channels_last", True),
        unavailable=_reduced_check,
        variant="folded channels_last",
        device_timing=True,
        streams=True,
        marker="o",
        lacks=_NO_INT8,
    ),
    BackendSpec(
        "torch-compile",
        "cpu",
        "dev",
        "torch.compile (inductor): weight freezing on CPU, max-autotune on CUDA",
        Consumes.WEIGHTS,
        {**_PRECISIONS, "int8": "PT2E (torchao X86InductorQuantizer), calibrated like the INT8 graph"},
        _folded(CompiledTorchRunner, "folded", False),
        needs=("torch._inductor",),
        unavailable=_int8_check,
        variant="folded",
        device_timing=True,
        streams=True,
        marker="s",
    ),
)
