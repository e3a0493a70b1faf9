"""Eager PyTorch: the FP32 reference, or any variant of it (BatchNorm folded by the caller, channels-last, FP16)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from rbench.errors import EnvironmentProblem, unknown_choice
from rbench.runtime.base import Runner, TensorSpec

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class TorchRunner(Runner):
    """Runs an ``nn.Module`` eagerly.

    Args:
        model: the module, or a zero-argument function that builds it on activation (a folded model, say: the
            caller folds, as the runtime does not depend on the exporter).
        input_shape: ``(C, H, W)``; the batch is dynamic.
        variant: a label for reports: ``eager`` (the reference) or ``folded``.
        channels_last: run in NHWC memory format.
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"``, or ``"fp16"`` (weights and activations in half; inputs and outputs stay FP32).
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
        self.model: nn.Module | None = None

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(self.input_name, np.dtype(np.float32), ("batch", *self.input_shape))]

    def _activate(self) -> None:
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EnvironmentProblem(f"device {self.device!r} requested but torch sees no CUDA device")
        import copy

        source = self._source if isinstance(self._source, nn.Module) else self._source()
        model = copy.deepcopy(source).eval()  # never change the caller's module (dtype, memory format)
        model = model.to(self.device, TORCH_DTYPES[self.precision])
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def _deactivate(self) -> None:
        self.model = None

    @torch.inference_mode()
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.model is not None
        x = torch.from_numpy(feed[self.input_name]).to(self.device, TORCH_DTYPES[self.precision])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.model(x)
        return {self.output_name: y.float().cpu().numpy()}
