"""The inputs a benchmark times: a pool of distinct preprocessed images, never one tensor repeated.

The pool is the built-in photos plus augmented crops of them (random resized crops and flips), shuffled by the seed;
batch ``i`` of size ``b`` takes images ``i*b ...`` cyclically. Every batch is made and validated once, before any
timing, so the timed loop only indexes a list.
"""

from __future__ import annotations

import numpy as np

from rbench.data import Preprocess, augmented_photos, builtin_photos, preprocess_batch


def image_pool(preprocess: Preprocess, size: int = 32, seed: int = 0) -> np.ndarray:
    """``size`` distinct images: the photos themselves, then augmented crops, in a seeded order."""
    photos = preprocess_batch(builtin_photos(), preprocess)
    extra = max(0, size - len(photos))
    crops = augmented_photos(extra, preprocess, seed=seed) if extra else photos[:0]
    pool = np.concatenate([photos, crops])[:size]
    return pool[np.random.default_rng(seed).permutation(len(pool))]


def photo_mask(size: int = 32, seed: int = 0) -> np.ndarray:
    """Which entries of ``image_pool(…, size, seed)`` are the built-in photos themselves (the parity check's inputs),
    rather than augmented crops."""
    from rbench.data import BUILTIN_PHOTOS

    return np.random.default_rng(seed).permutation(size) < len(BUILTIN_PHOTOS)


def batch_index(pool_size: int, batch: int, count: int | None = None) -> np.ndarray:
    """``[count, batch]`` pool indices of contiguous batches drawn cyclically (default: enough for every image)."""
    count = count or max(1, -(-pool_size // batch))
    return (np.arange(count * batch) % pool_size).reshape(count, batch)


def batches(pool: np.ndarray, batch: int, count: int | None = None) -> list[np.ndarray]:
    """Contiguous batches drawn cyclically from the pool, as ``batch_index`` numbers them."""
    return [np.ascontiguousarray(pool[i]) for i in batch_index(len(pool), batch, count)]
