"""``BenchConfig``: every setting of a benchmark run, frozen, with the defaults ``rbench run`` shows in ``--help``."""

from __future__ import annotations

from dataclasses import dataclass

from rbench.errors import BadInputError


@dataclass(frozen=True)
class BenchConfig:
    """How each point of the sweep is timed (after trtexec and MLPerf: warm-up by time, then timed runs until both
    the duration and the minimum count are reached).

    The defaults are trtexec's (200 ms of warm-up, then at least 3 s and 10 calls) over batches 1 and 8. Each point's
    untimed cold call comes first, so the warm-up starts on a runner that has already allocated and picked its
    kernels: on the default ResNet-50 (AMD Zen 3) every p50 at 0.2 s was within 0.86-1.05x of a 1 s run's, and the
    cut took 21 s off ``make bench`` (README).
    """

    batch_sizes: tuple[int, ...] = (1, 8)
    warmup_s: float = 0.2
    duration_s: float = 3.0
    min_iterations: int = 10
    threads: int = 0  # 0: every core this process may use
    seed: int = 0
    pool_size: int = 32  # distinct preprocessed images the inputs are drawn from
    device: str = "cpu"
    audit: bool = False  # also the seed audit (TEST05); the cache and output audits always run
    streams: int = 1  # requests in flight for the concurrency measurement; 1: none; 0: OpenVINO's optimal count
    #: the GEMM peak probes before and after the rows (``--no-peak``: none, so no measured share of peak; the CPU's
    #: peak on paper is still computed, as it costs nothing)
    peak: bool = True

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 or b > 4096 for b in self.batch_sizes):
            raise BadInputError(f"--batch-sizes must be 1 to 4096, got {','.join(map(str, self.batch_sizes))}")
        if not 0 <= self.warmup_s <= 3600 or not 0 < self.duration_s <= 3600:
            raise BadInputError(
                f"--warmup-s must be 0 to 3600 and --duration-s above 0 up to 3600, got {self.warmup_s} and "
                f"{self.duration_s}"
            )
        if not 1 <= self.min_iterations <= 1_000_000:
            raise BadInputError(f"--min-iterations must be 1 or more, got {self.min_iterations}")
        if not 0 <= self.threads <= 1024:
            raise BadInputError(f"--threads must be 0 (all cores) to 1024, got {self.threads}")
        if not 0 <= self.streams <= 256:
            raise BadInputError(f"--streams must be 0 (OpenVINO's optimal count) to 256, got {self.streams}")
        if self.seed < 0:
            raise BadInputError(f"--seed must be 0 or more, got {self.seed}")
        if self.device not in ("cpu", "cuda"):
            raise BadInputError(f"device must be cpu or cuda, got {self.device!r}")

    def resolved_threads(self) -> int:
        from rbench.env import logical_cores

        return self.threads or logical_cores()
