"""``lines``: the paper's synthetic benchmark (``docs/protocol.md`` §4.1).

A 32×32 grey image holds one anti-aliased line, 2 px thick, from the image centre out to
15 px in direction (cos(−Λ), sin(−Λ)); pixel value = 2·coverage − 1 clipped to [-1, 1],
background −1. :func:`draw_line` is a line-for-line port of ``draw_line`` in the official
``lib/data.py`` (including its integer truncations), so the 10,000-line reference bank of
the interpolation metric matches the paper's.

The paper streams fresh unseeded lines; repeval draws seeded splits instead so that runs
repeat: 32,768 train and 5,000 test lines (the paper's test size), angles uniform on
[0, 2π) from ``numpy.random.default_rng`` seeds 0 (train) and 1 (test). Labels are 10
equal angle bins, ``int(10·Λ / (2π − 1e-6))``, as the official code.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from repeval.data.base import IMAGE_SIZE, Dataset, FactorBank, make_dataset
from repeval.data.registry import DataOptions, DatasetEntry

TRAIN_SIZE, TEST_SIZE = 32_768, 5_000
TRAIN_SEED, TEST_SEED = 0, 1
BANK_SIZE = 10_000


def draw_line(angle: float, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE, thickness: float = 2.0) -> np.ndarray:
    """Render one line at ``angle`` (radians) as a float64 ``height×width`` image in [-1, 1]."""
    image = np.zeros((height, width))
    x0, y0 = height * 0.5, width * 0.5
    x1 = x0 + (x0 - 1) * math.cos(-angle)
    y1 = y0 + (y0 - 1) * math.sin(-angle)
    transposed = abs(y0 - y1) < abs(x0 - x1)  # walk along the longer axis
    if transposed:
        x0, x1, y0, y1 = y0, y1, x0, x1
    if y1 < y0:
        x0, x1, y0, y1 = x1, x0, y1, y0
    x0, x1 = x0 - thickness / 2, x1 - thickness / 2
    slope = (x1 - x0) / (y1 - y0) if y1 != y0 else 0
    first_full, last_full = int(math.ceil(y0)), int(y1)
    cells = []  # (row, column or column slice, coverage)
    for row in range(int(y0), int(math.ceil(y1))):
        if row < first_full:
            weight = first_full - y0
        elif row > last_full:
            weight = y1 - last_full
        else:
            weight = 1
        start = x0 + (row - y0 - 0.5) * slope
        end = start + thickness
        inner = int(math.ceil(start)), int(end)
        if inner[0] != inner[1]:
            cells.append((row, slice(inner[0], inner[1]), weight))
        if inner[0] != start:
            cells.append((row, int(start), weight * (inner[0] - start)))
        if inner[1] != end:
            cells.append((row, inner[1], weight * (end - inner[1])))
    for row, col, coverage in cells:
        if transposed:
            image[col, row] += 2 * coverage
        else:
            image[row, col] += 2 * coverage
    return np.clip(image - 1, -1, 1)


def render_lines(angles: np.ndarray) -> np.ndarray:
    """Lines at ``angles`` as float32 N×1×32×32 in [-1, 1]."""
    return np.stack([draw_line(float(a)) for a in angles]).astype(np.float32)[:, None]


def angle_labels(angles: np.ndarray) -> np.ndarray:
    return (10 * angles / (2 * np.pi - 1e-6)).astype(np.int64)


@lru_cache(maxsize=1)
def reference_bank() -> tuple[np.ndarray, np.ndarray]:
    """The metric's bank: 10,000 true lines at angles k·2π/10,000 (float64 N×1024, angles)."""
    angles = np.linspace(0, 2 * np.pi - 2 * np.pi / BANK_SIZE, BANK_SIZE)
    return np.stack([draw_line(a).ravel() for a in angles]), angles


def _split(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angles = np.random.default_rng(seed).uniform(0.0, 2 * np.pi, size)
    return render_lines(angles), angle_labels(angles), angles


def load_lines(options: DataOptions) -> Dataset:
    x_train, y_train, _ = _split(TRAIN_SIZE, TRAIN_SEED)
    x_test, y_test, test_angles = _split(TEST_SIZE, TEST_SEED)
    info = {"source": "generated (port of the official draw_line)", "verified": "generated",
            "rule": f"{TRAIN_SIZE} train lines (seed {TRAIN_SEED}), {TEST_SIZE} test lines (seed {TEST_SEED}); "
                    "float pixels in [-1, 1]; labels = 10 angle bins"}
    return make_dataset("lines", x_train, y_train, x_test, y_test, num_classes=10, info=info,
                        bank=FactorBank(reference_bank, test_angles))


ENTRY = DatasetEntry(
    "lines", "synthetic anti-aliased lines from the centre (the paper's interpolation benchmark)",
    1, 10, TRAIN_SIZE, TEST_SIZE, depth=16, latent_dims=(64, 256), loader=load_lines,
    locate=lambda options: "generated", generated=True,
    features=frozenset({"factor_bank"}),  # the interpolation benchmark measures against true lines
)
