"""Augmentation on torch alone: each operation does what it says, fills by repeating edges, and can be off."""

from __future__ import annotations

import pytest
import torch

from rbench.errors import BadInputError
from rbench.train.augment import OPERATIONS, Augment


def test_none_is_the_identity_and_unknown_names_are_refused():
    x = torch.randn(3, 3, 8, 8)
    assert Augment.parse("none")(x, torch.Generator()) is x
    with pytest.raises(BadInputError, match="unknown augmentation blur; choose from crop, flip"):
        Augment.parse("flip,blur")
    assert Augment.parse("zoom,flip").operations == ("flip", "zoom")  # canonical order


def test_flip_mirrors_some_images_and_leaves_the_rest():
    x = torch.randn(64, 3, 8, 8)
    y = Augment.parse("flip")(x, torch.Generator().manual_seed(0))
    flipped = [torch.allclose(y[i], x[i].flip(-1), atol=1e-5) for i in range(64)]
    kept = [torch.allclose(y[i], x[i], atol=1e-5) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48


def test_nearest_fill_adds_no_black_borders():
    """Every operation at once on a constant image: a zero fill would bring in other values; edges repeat instead."""
    x = torch.full((16, 3, 12, 12), 5.0)
    y = Augment.parse(",".join(OPERATIONS))(x, torch.Generator().manual_seed(1))
    assert torch.allclose(y, x, atol=1e-4)


def test_each_operation_moves_pixels_within_its_range():
    corner = torch.zeros(32, 1, 21, 21)
    corner[:, :, 3, 17] = 1.0  # off centre: rotation, shear and zoom move it (they keep the centre in place)
    for op in ("shift", "rotate", "shear", "zoom", "crop"):
        y = Augment.parse(op)(corner, torch.Generator().manual_seed(2))
        assert not torch.allclose(y, corner), op
        assert torch.isfinite(y).all()
    x = torch.zeros(32, 1, 21, 21)
    x[:, :, 10, 10] = 1.0  # one bright pixel in the middle
    shifted = Augment.parse("shift")(x, torch.Generator().manual_seed(3))
    centre = torch.stack([(shifted[i, 0] == shifted[i, 0].max()).nonzero()[0] for i in range(32)]).float()
    assert (centre - 10).abs().max() <= 0.2 * 21 + 1  # ±20% of the width, a pixel of rounding
    assert (centre - 10).abs().max() >= 2  # and it does move
