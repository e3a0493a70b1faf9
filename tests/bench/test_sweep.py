"""The timing loop: counts and durations honoured, inputs validated once and distinct, a failing point recorded
while the sweep goes on, NaN/Inf in timed outputs caught, the harness's own overhead small."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rbench.bench.config import BenchConfig
from rbench.bench.inputs import batches, image_pool
from rbench.bench.sweep import NoopRunner, harness_overhead, sweep
from rbench.data import Preprocess
from rbench.errors import BadInputError

SMALL = Preprocess(size=16, resize=18)


class Spy(NoopRunner):
    """Records every call; fails at one batch size; can return NaN."""

    def __init__(self, fail_at: int | None = None, nan: bool = False, delay: float = 0.0) -> None:
        super().__init__((3, 16, 16))
        self.calls: list[tuple[int, bool, bytes]] = []
        self.fail_at, self.nan, self.delay = fail_at, nan, delay

    def infer(self, feed, check_inputs=True):
        x = feed["input"]
        self.calls.append((len(x), check_inputs, x.tobytes()[:64]))
        if self.delay:
            time.sleep(self.delay)
        return super().infer(feed, check_inputs)

    def _infer(self, feed):
        x = feed["input"]
        if len(x) == self.fail_at:
            raise MemoryError("out of memory at this batch")
        return {"logits": np.full((len(x), 10), np.nan if self.nan else 1.0, np.float32)}


@pytest.fixture(scope="module")
def pool():
    return image_pool(SMALL, size=12, seed=0)


def test_pool_has_distinct_images_and_batches_cycle_through_it(pool):
    assert pool.shape == (12, 3, 16, 16)
    assert len({p.tobytes() for p in pool}) == 12  # no tensor repeated
    parts = batches(pool, 5)
    assert len(parts) == 3 and [len(p) for p in parts] == [5, 5, 5]
    np.testing.assert_array_equal(parts[2][2:], pool[:3])  # cyclic
    assert not np.array_equal(image_pool(SMALL, 12, seed=1), pool)  # the seed changes the order


def test_counts_durations_and_validation_outside_the_timed_loop(pool):
    config = BenchConfig(batch_sizes=(1, 4), warmup_s=0.0, duration_s=0.2, min_iterations=25)
    with Spy(delay=0.002) as runner:
        began = time.perf_counter()
        points = sweep(runner, pool, config, "input")
        wall = time.perf_counter() - began
    assert [p.batch for p in points] == [1, 4] and all(p.error is None for p in points)
    assert all(p.stats.iterations >= 25 and min(p.samples) >= 0.002 for p in points)  # each call timed whole
    assert all(0.9 * config.duration_s <= p.stats.total_s for p in points)  # timed until the duration passed
    assert sum(p.stats.total_s for p in points) <= wall  # and only the calls: not the warm-up, not the checks
    assert all(check is False for _, check, _ in runner.calls)  # infer never re-validates inside the loop
    assert len({data for n, _, data in runner.calls if n == 1}) == 12  # every image of the pool was used
    assert points[0].first_inference_s is not None and points[0].peak_rss_mb > 0


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(pool):
    config = BenchConfig(batch_sizes=(1, 4, 2), warmup_s=0.0, duration_s=0.01, min_iterations=3)
    with Spy(fail_at=4) as runner:
        points = sweep(runner, pool, config, "input")
    assert points[1].error == "MemoryError: out of memory at this batch" and points[1].stats is None
    assert points[0].stats and points[2].stats and points[2].batch == 2


def test_nan_in_timed_outputs_is_counted(pool):
    config = BenchConfig(batch_sizes=(2,), warmup_s=0.0, duration_s=0.01, min_iterations=4)
    with Spy(nan=True) as runner:
        (point,) = sweep(runner, pool, config, "input")
    assert point.nonfinite >= 4 * 2 * 10 and "NaN/Inf values in the outputs of the timed calls" in point.warnings[-1]


def test_inputs_the_runner_rejects_fail_the_point_not_the_run(pool):
    config = BenchConfig(batch_sizes=(1,), warmup_s=0.0, duration_s=0.01, min_iterations=1)
    with NoopRunner((3, 32, 32)) as wrong_shape:
        (point,) = sweep(wrong_shape, pool, config, "input")
    assert point.error.startswith("BadInputError: input 'input' has shape [1, 3, 16, 16]")


def test_harness_overhead_is_microseconds(pool):
    overhead = harness_overhead(pool, BenchConfig())
    assert 0 < overhead < 1e-3  # a no-op call through the loop: far below a millisecond


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_sizes": (0,)}, "--batch-sizes must be 1 to 4096"),
        ({"batch_sizes": ()}, "--batch-sizes must be 1 to 4096"),
        ({"duration_s": 0}, "--duration-s above 0"),
        ({"warmup_s": -1}, "--warmup-s must be 0 to 3600"),
        ({"min_iterations": 0}, "--min-iterations must be 1 or more"),
        ({"threads": -2}, "--threads must be 0"),
        ({"seed": -1}, "--seed must be 0 or more"),
    ],
)
def test_nonsense_settings_are_bad_input(kwargs, message):
    with pytest.raises(BadInputError, match=message):
        BenchConfig(**kwargs)


def test_cuda_points_time_compute_alone_where_the_runner_offers_it(pool, monkeypatch):
    """On CUDA a point adds compute-only statistics (inputs already on the device, CUDA events); checked here with
    the event clock replaced by the host clock, as this machine has no GPU."""
    import rbench.bench.sweep as sweep_module
    from rbench.bench.clock import wall

    monkeypatch.setattr(sweep_module, "cuda_events", wall)
    monkeypatch.setattr(sweep_module, "synchronize", lambda device: None)
    monkeypatch.setattr("torch.cuda.reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr("torch.cuda.max_memory_allocated", lambda: 3 * 2**20)

    class OnDevice(Spy):
        device_calls = 0

        def device_callable(self, feed):
            def call():
                OnDevice.device_calls += 1
                time.sleep(0.0005)

            return call

    config = BenchConfig(batch_sizes=(2,), warmup_s=0.0, duration_s=0.01, min_iterations=5, device="cuda")
    with OnDevice() as runner:
        (point,) = sweep(runner, pool, config, "input")
    assert point.error is None and point.peak_device_mb == 3.0
    assert point.compute_stats.iterations >= 5 and point.compute_stats.p50 >= 0.0005
    assert OnDevice.device_calls >= 6  # one warm-up call, then one per sample
    with Spy() as plain:  # a runner without a device path: end-to-end only
        (point,) = sweep(plain, pool, config, "input")
    assert point.compute_stats is None and point.stats is not None


def test_torch_cuda_streams_run_one_thread_per_stream(pool, monkeypatch):
    """The CUDA-streams measurement's bookkeeping, with torch's stream objects replaced (no GPU here)."""
    import contextlib
    import threading

    from rbench.bench.concurrency import measure_streams

    seen: set[tuple[int, int]] = set()

    class FakeStream:
        def __init__(self):
            self.synced = False

        def synchronize(self):
            self.synced = True

    made: list[FakeStream] = []
    monkeypatch.setattr("torch.cuda.Stream", lambda: made.append(FakeStream()) or made[-1])
    monkeypatch.setattr("torch.cuda.stream", lambda s: contextlib.nullcontext())

    class OnDevice(Spy):
        def device_callable(self, feed):
            def call():
                seen.add((threading.get_ident(), id(feed)))
                time.sleep(0.001)

            return call

    with OnDevice() as runner:
        runner.device = "cuda"
        (found,) = measure_streams(runner, [{"input": pool[:2]}, {"input": pool[2:4]}], 2, seconds=0.1)
    assert (found["streams"], found["requests"], found["threads_per_stream"]) == (2, 2, 1)
    assert len(made) == 2 and all(s.synced for s in made)
    assert len({thread for thread, _ in seen}) >= 2 and found["throughput"] > 0  # two threads, two inputs


def _stand_in_trt_runner(monkeypatch, tmp_path):
    """A TrtRunner whose engine, execution contexts and device memory are stand-ins (no GPU here); returns it and
    the execution contexts its engine makes."""
    import threading

    import numpy as np

    from rbench.runtime.trt_runner import TrtRunner

    made: list = []
    contexts: list = []

    class Memory:
        kind = "torch"

        def __init__(self):
            self.stream, self.synced, self.buffers, self.joins = len(made) + 100, 0, {}, 0
            made.append(self)

        def to_device(self, name, array):
            self.buffers[name] = array.copy()
            return id(self.buffers[name])

        def empty(self, name, shape, dtype):
            self.buffers[name] = np.empty(shape, dtype)
            return id(self.buffers[name])

        def synchronize(self):
            self.synced += 1

        def joined(self, enqueue):
            self.joins += 1
            enqueue()

        def close(self):
            self.buffers.clear()

    class Context:
        def __init__(self):
            self.shapes, self.addresses, self.enqueued = {}, {}, []

        def set_input_shape(self, name, shape):
            self.shapes[name] = shape

        def get_tensor_shape(self, name):
            return (self.shapes["input"][0], 10)

        def set_tensor_address(self, name, address):
            self.addresses[name] = address

        def execute_async_v3(self, stream):
            self.enqueued.append((stream, threading.get_ident()))
            time.sleep(0.001)
            return True

    class Engine:
        def create_execution_context(self):
            contexts.append(Context())
            return contexts[-1]

        def get_tensor_dtype(self, name):
            return np.float32

    monkeypatch.setattr("rbench.runtime.trt_runner.device_memory", lambda kind: Memory())
    runner = TrtRunner(tmp_path / "model.engine", precision="fp16")
    runner._engine, runner._outputs, runner._nptype = Engine(), ["logits"], np.dtype
    runner._memory, runner._context = Memory(), Context()
    runner.input_specs = lambda: [type("Spec", (), {"name": "input"})()]
    return runner, contexts


def test_tensorrt_streams_use_one_execution_context_and_stream_each(monkeypatch, tmp_path):
    import numpy as np

    from rbench.bench.concurrency import measure_streams

    runner, contexts = _stand_in_trt_runner(monkeypatch, tmp_path)
    feeds = [np.zeros((4, 3, 8, 8), np.float32), np.ones((4, 3, 8, 8), np.float32)]
    (found,) = measure_streams(runner, [{"input": f} for f in feeds], 3, seconds=0.1)
    made = [m for _, m in runner._streams]
    assert len(contexts) == 3 and len(made) == 3  # a context and a stream per request in flight
    assert all(c.enqueued and {s for s, _ in c.enqueued} == {m.stream} for c, m in zip(contexts, made, strict=True))
    assert len({t for c in contexts for _, t in c.enqueued}) == 3  # one host thread per stream
    assert all(c.shapes["input"] == (4, 3, 8, 8) and set(c.addresses) == {"input", "logits"} for c in contexts)
    assert all(m.synced >= 1 for m in made)
    assert found["mode"].startswith("TensorRT execution contexts") and found["throughput"] > 0
    runner._deactivate()
    assert runner._streams == [] and all(m.buffers == {} for m in made)


def test_tensorrt_compute_only_runs_its_own_context_joined_to_torchs_stream(monkeypatch, tmp_path):
    import numpy as np

    runner, _ = _stand_in_trt_runner(monkeypatch, tmp_path)
    call = runner.device_callable({"input": np.ones((2, 3, 8, 8), np.float32)})
    (context, memory), main = runner._streams[0], runner._context
    call()
    call()
    assert context is not main and main.enqueued == []  # the timed infer's context is left alone
    assert memory.joins == 2 and [s for s, _ in context.enqueued] == [memory.stream] * 2
    assert context.shapes["input"] == (2, 3, 8, 8) and "logits" in memory.buffers
    runner._memory.kind = "pycuda"
    assert runner.device_callable({"input": np.ones((2, 3, 8, 8), np.float32)}) is None  # no torch stream to join
