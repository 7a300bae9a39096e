"""Gaussian blobs at three positions, drawn with a fixed seed."""

from __future__ import annotations

import numpy as np

from repeval.data import DatasetEntry
from repeval.data.base import make_dataset


def load_blobs(options):
    rng = np.random.default_rng(0)
    grid = np.arange(32.0)

    def draw(n):
        y = rng.integers(0, 3, n)
        cx, cy = 8 + 8 * y + rng.normal(0, 1, n), 16 + rng.normal(0, 1, n)
        d2 = (grid[None, :, None] - cx[:, None, None]) ** 2 + (grid[None, None, :] - cy[:, None, None]) ** 2
        return (255 * np.exp(-d2 / 8)).astype(np.uint8)[:, None], y

    (x_train, y_train), (x_test, y_test) = draw(192), draw(96)
    return make_dataset("blobs", x_train, y_train, x_test, y_test, num_classes=3,
                        info={"source": "repeval-demo-plugin", "verified": "generated"})


ENTRY = DatasetEntry("blobs", "three Gaussian blobs (a plugin)", 1, 3, 192, 96, depth=16,
                     latent_dims=(32, 256), loader=load_blobs, locate=lambda options: "generated", generated=True)
