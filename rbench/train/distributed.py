"""DistributedDataParallel under torchrun: the process group from torchrun's environment (gloo on CPU, nccl on
GPU), a ``DistributedSampler`` per rank, sums across ranks, and one writer (rank 0)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Only rank 0 writes files and draws progress."""
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """Each value summed over every rank (the same list on every rank)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        torch.distributed.all_reduce(t)
        return t.cpu().tolist()

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def topology(self) -> dict[str, int]:
        """What a run's arithmetic depends on besides its seed and settings, as its checkpoint records it.

        The global batch is split over ``world_size`` processes, and each sums its share in ``threads_per_process``
        threads: with a different thread count the reductions round differently, so the same seed ends with other
        weights. Without ``--threads``, each process takes the cores divided by the processes on its node, which
        changes with the topology (README, "Distributed").
        """
        return {
            "world_size": self.size,
            "nodes": self.size // self.local_size,
            "processes_per_node": self.local_size,
            "threads_per_process": torch.get_num_threads(),
        }


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def world_from_env() -> World:
    """The world torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; a single process without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(
        rank=int(os.environ.get("RANK", "0")),
        size=size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(size))),
    )


def init(world: World, device: torch.device) -> None:
    """Join the process group: nccl when this rank trains on a GPU, gloo on the CPU."""
    if not world.distributed or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend)


def shutdown(world: World) -> None:
    if world.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
