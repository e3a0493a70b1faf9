"""Training-time augmentation on torch alone (no torchvision): one random affine map per image, sampled once.

The usual Keras-style fine-tuning settings: random crop, horizontal flip, rotation ±40°, width and height shift ±20%,
shear ±0.2, zoom ±20%, and "nearest" fill (the edge pixels repeated, ``grid_sample``'s ``border`` padding). Each
operation can be switched off. Images are the normalized tensors inference sees, so nothing else changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rbench.errors import BadInputError

#: Every operation, in the order they compose; ``--augment`` takes a comma list of these, or ``none``.
OPERATIONS = ("crop", "flip", "rotate", "shift", "shear", "zoom")


@dataclass(frozen=True)
class Augment:
    operations: tuple[str, ...] = OPERATIONS
    rotation_deg: float = 40.0
    shift: float = 0.2  # fraction of width and height
    shear: float = 0.2  # shear factor (tan of the shear angle)
    zoom: float = 0.2  # each axis scaled by 1 ± zoom
    crop_scale: float = 0.64  # a random crop keeps 64% to 100% of the area, resized back

    @classmethod
    def parse(cls, text: str | None, default: tuple[str, ...] = OPERATIONS) -> Augment:
        if text is None:
            return cls(default)
        names = tuple(t.strip() for t in text.split(",") if t.strip())
        if names in (("none",), ()):
            return cls(())
        bad = [n for n in names if n not in OPERATIONS]
        if bad:
            raise BadInputError(f"unknown augmentation {', '.join(bad)}; choose from {', '.join(OPERATIONS)}, or none")
        return cls(tuple(n for n in OPERATIONS if n in names))

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A batch ``x`` (N, C, H, W), each image under its own random affine map."""
        if not self.operations:
            return x
        theta = self.matrices(len(x), gen)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def matrices(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 2, 3) maps from output to input coordinates in [-1, 1]."""

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=gen) * (high - low) + low

        ops = self.operations
        one, zero = torch.ones(n), torch.zeros(n)
        sx, sy = (
            (uniform(1 - self.zoom, 1 + self.zoom), uniform(1 - self.zoom, 1 + self.zoom))
            if "zoom" in ops
            else (one, one)
        )
        if "crop" in ops:  # a square crop of a random share of the area: zoom in by 1/sqrt(share)
            side = uniform(self.crop_scale, 1.0).sqrt()
            sx, sy = sx * side, sy * side
        if "flip" in ops:
            sx = sx * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        angle = uniform(-1, 1) * math.radians(self.rotation_deg) if "rotate" in ops else zero
        shear = uniform(-self.shear, self.shear) if "shear" in ops else zero
        tx, ty = (
            (uniform(-2 * self.shift, 2 * self.shift), uniform(-2 * self.shift, 2 * self.shift))
            if "shift" in ops
            else (zero, zero)
        )
        if "crop" in ops:  # the crop lies anywhere inside the image
            room_x, room_y = 1 - sx.abs(), 1 - sy.abs()
            tx = tx + uniform(-1, 1) * room_x.clamp_min(0)
            ty = ty + uniform(-1, 1) * room_y.clamp_min(0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shearing = torch.stack([torch.stack([one, shear], -1), torch.stack([zero, one], -1)], -2)
        scaling = torch.diag_embed(torch.stack([sx, sy], -1))
        linear = rotation @ shearing @ scaling
        return torch.cat([linear, torch.stack([tx, ty], -1)[..., None]], -1)
