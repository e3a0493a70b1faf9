"""Each audit catches a runner built to cheat its way, and an honest runner passes all three."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rbench.bench.audit import audit_cache, audit_outputs, audit_seed
from rbench.bench.config import BenchConfig
from rbench.bench.inputs import image_pool
from rbench.bench.sweep import time_point
from rbench.data import Preprocess
from rbench.precisions import get_precision
from rbench.runtime.base import Runner, TensorSpec

SMALL = Preprocess(size=16, resize=18)
CONFIG = BenchConfig(batch_sizes=(1,), warmup_s=0.0, duration_s=0.3, min_iterations=20, seed=0)
WORK_S = 0.002


def honest_logits(x: np.ndarray) -> np.ndarray:
    """What every runner here computes: a fixed projection of the image to 10 logits."""
    weights = np.random.default_rng(42).standard_normal((x[0].size, 10)).astype(np.float32)
    return x.reshape(len(x), -1) @ weights


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Honest(Runner):
    def __init__(self) -> None:
        super().__init__("honest", "cpu", "fp32")

    def input_specs(self):
        return [TensorSpec("input", np.dtype(np.float32), ("batch", 3, 16, 16))]

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed):
        busy(WORK_S)
        return {"logits": honest_logits(feed["input"])}


class CachesByInput(Honest):
    """TEST04's cheat: remembers each input's answer and skips the work when it sees the input again."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[bytes, dict] = {}

    def _infer(self, feed):
        key = feed["input"].tobytes()
        if key not in self.cache:
            self.cache[key] = super()._infer(feed)
        return self.cache[key]


class StaleOutputs(Honest):
    """TEST01's cheat: does the work a call late, answering each call with the previous call's result."""

    def __init__(self) -> None:
        super().__init__()
        self.previous = None

    def _infer(self, feed):
        current = super()._infer(feed)
        stale, self.previous = self.previous or current, current
        return stale


class ConstantOutputs(Honest):
    """A cheat not among MLPerf's named ones: a fixed answer while timed, real ones when asked slowly."""

    def _infer(self, feed):
        busy(WORK_S / 4)
        return {"logits": np.ones((len(feed["input"]), 10), np.float32)}


class FastOnKnownSeed(Honest):
    """TEST05's cheat: recognises the benchmark's default input pool and takes a shortcut on it."""

    def __init__(self) -> None:
        super().__init__()
        self.known = {img.tobytes() for img in image_pool(SMALL, CONFIG.pool_size, seed=0)}

    def _infer(self, feed):
        if feed["input"][0].tobytes() in self.known:
            busy(WORK_S / 2)
            return {"logits": honest_logits(feed["input"])}
        return super()._infer(feed)


@pytest.fixture(scope="module")
def pool():
    return image_pool(SMALL, CONFIG.pool_size, seed=0)


def _outputs_audit(runner: Runner, pool: np.ndarray) -> dict:
    with runner:
        point = time_point(runner, pool, 1, CONFIG, "input")
    return audit_outputs(point, len(pool), honest_logits(pool), get_precision("fp32").tolerance)


def test_an_honest_runner_passes_every_audit(pool):
    with Honest() as runner:
        cache = audit_cache(runner, pool, 1, CONFIG, "input")
        seed = audit_seed(runner, SMALL, 1, CONFIG, "input")
    outputs = _outputs_audit(Honest(), pool)
    assert cache["passed"] and 0.9 <= cache["ratio"] <= 1.1, cache
    assert seed["passed"] and abs(seed["throughput_change"]) <= 0.05, seed
    assert outputs["passed"] and outputs["cosine"] == 1.0 and outputs["calls"] > 10, outputs


def test_the_cache_audit_catches_a_runner_that_caches_by_input(pool):
    with CachesByInput() as runner:
        cache = audit_cache(runner, pool, 1, CONFIG, "input")
    assert not cache["passed"] and cache["ratio"] < 0.5
    assert cache["finding"].startswith("cache effect: one input repeated runs ")


@pytest.mark.parametrize("cheat", [StaleOutputs, ConstantOutputs])
def test_the_output_audit_catches_outputs_that_are_not_the_inputs(cheat, pool):
    outputs = _outputs_audit(cheat(), pool)
    assert not outputs["passed"] and outputs["cosine"] < 0.99
    assert outputs["finding"].startswith("timed outputs differ from the reference: ")


def test_the_seed_audit_catches_a_runner_fast_on_a_known_seed(pool):
    with FastOnKnownSeed() as runner:
        seed = audit_seed(runner, SMALL, 1, CONFIG, "input")
    assert not seed["passed"] and seed["throughput_change"] < -0.3  # the other seed's pool: half the speed
    assert seed["finding"].startswith("seed-dependent: another seed moves throughput ")


def test_the_cache_audit_calls_noise_no_finding_and_a_real_effect_one():
    """200 pairs of draws of one skewed, noisy distribution, 20 calls a side: the median ratio alone (the old rule)
    calls a quarter of them a cache effect; the interval calls at most 5%. A 30% faster repeated input with the
    same noise is a finding."""
    from rbench.bench.audit import CACHE_LIMIT, cache_verdict

    rng = np.random.default_rng(3)
    noisy = [list(0.03 * rng.lognormal(0, 0.4, 20)) for _ in range(400)]
    pairs = list(zip(noisy[::2], noisy[1::2], strict=True))
    by_median = sum(np.median(a) / np.median(b) < CACHE_LIMIT for a, b in pairs)
    by_interval = sum(not cache_verdict(a, b)["passed"] for a, b in pairs)
    assert by_median >= 40 and by_interval <= 10, (by_median, by_interval)
    real = cache_verdict([0.7 * x for x in noisy[0]] * 2, noisy[1] * 2)
    assert not real["passed"] and real["interval"][1] < CACHE_LIMIT and real["finding"].startswith("cache effect")
