"""``shepard``: Shepard tones, a 1-D signal benchmark whose circular factor is the chroma.

A Shepard tone of chroma ``c ∈ [0, 1)`` is ``L = 1,024`` samples

    x_c[n] = Σ_{j=0}^{K−1} w(j + c) · sin(2π · f0 · 2^{j+c} · n / L),   n = 0 … L−1,

with ``f0 = 2`` cycles per window, ``K = 5`` octaves (partials from 2 to 64 cycles, far below
Nyquist), all partials at phase 0 and the raised-cosine envelope ``w(u) = ½(1 − cos(2πu/K))``,
which vanishes at both ends: raising ``c`` past 1 fades the top partial out exactly as a new
bottom one fades in, so the tone at ``c → 1`` meets the tone at 0 and chroma is a circle
(factor ``θ = 2πc``). One global scale (the largest magnitude over the bank) brings the tones to
[-1, 1]. ``c`` is taken mod 1, so the generator is exact on the circle.

Splits are seeded, as for ``lines``: 32,768 train and 5,000 test tones with ``c`` uniform on
[0, 1) from ``numpy.random.default_rng`` seeds 0 (train) and 1 (test); labels are 12 chroma
classes ``⌊12·c⌋`` (the pitch classes) for the linear / kNN / k-means probes. The interpolation
benchmark's bank is 10,000 tones at ``c = k/10,000``, and its metrics are the lines' exactly
(:mod:`repeval.probes.interpolation`): cosine distance to the nearest bank tone, Smoothness on
that tone's chroma, and the details.

What a reference interpolation scores (256 pairs × 16 steps, pairs drawn with seed 0; the
project's tests reproduce this table from this generator and that metric):

======================================== ========= ========= ====== ======
path                                     Mean Dist Smooth.   strict detour
======================================== ========= ========= ====== ======
true tones evenly along the shortest arc 0.0000    0.001     0.001  0.000
sample-space cross-fade (identity AE)    0.0696    0.811     0.811  0.006
abrupt switch at the midpoint            0.0000    0.933     0.933  0.000
constant output                          0.0000    0 (undef) 1.000  −1.00
true tones evenly the long way round     0.0000    0.000     0.000  ≈12
white noise                              0.934     ≈1.8      ≈1.8   ≈50
======================================== ========= ========= ====== ======

The cross-fade is what the identity "autoencoder" (``pixels``) does: it stays near real tones
(two tones' mixture resembles the nearer one) but jumps. Never use phase or amplitude as the
factor: a cross-fade of two phases of one sinusoid is again a sinusoid, and the identity would
score a perfect Mean Distance.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from repeval.data.base import Dataset, FactorBank, make_dataset
from repeval.data.registry import DataOptions, DatasetEntry

LENGTH = 1024  # samples per tone
BASE_CYCLES = 2.0  # f0: cycles of the lowest partial per window
OCTAVES = 5  # K
TRAIN_SIZE, TEST_SIZE = 32_768, 5_000
TRAIN_SEED, TEST_SEED = 0, 1
BANK_SIZE = 10_000
CLASSES = 12
CHUNK = 2048  # tones computed at once (float64 CHUNK×LENGTH per partial)


def _raw_tones(chroma: np.ndarray) -> np.ndarray:
    """Unscaled tones (float64, len(chroma) × LENGTH) at chroma ``c`` mod 1."""
    c = np.mod(np.asarray(chroma, dtype=np.float64), 1.0)[:, None]
    n = np.arange(LENGTH, dtype=np.float64)[None, :]
    out = np.zeros((c.shape[0], LENGTH))
    for j in range(OCTAVES):
        u = j + c
        envelope = 0.5 * (1.0 - np.cos(2 * np.pi * u / OCTAVES))
        out += envelope * np.sin(2 * np.pi * BASE_CYCLES * np.exp2(u) * n / LENGTH)
    return out


@lru_cache(maxsize=1)
def _bank_raw() -> tuple[np.ndarray, float]:
    chroma = np.arange(BANK_SIZE) / BANK_SIZE
    raw = np.concatenate([_raw_tones(chroma[i:i + CHUNK]) for i in range(0, BANK_SIZE, CHUNK)])
    return raw, float(np.abs(raw).max())


def scale() -> float:
    """The global divisor: the largest magnitude over the bank's tones."""
    return _bank_raw()[1]


def tones(chroma: np.ndarray) -> np.ndarray:
    """Shepard tones at chroma ``c`` (any real; taken mod 1), float64 ``len(c) × LENGTH``."""
    chroma = np.atleast_1d(chroma)
    s = scale()
    return np.concatenate([_raw_tones(chroma[i:i + CHUNK]) / s for i in range(0, len(chroma), CHUNK)]
                          or [np.zeros((0, LENGTH))])


@lru_cache(maxsize=1)
def reference_bank() -> tuple[np.ndarray, np.ndarray]:
    """The interpolation bank: 10,000 tones at chroma k/10,000 (float64 N×1024) and their
    factor θ = 2πc."""
    raw, s = _bank_raw()
    return raw / s, 2 * np.pi * np.arange(BANK_SIZE) / BANK_SIZE


def chroma_labels(chroma: np.ndarray) -> np.ndarray:
    return np.minimum((CLASSES * np.mod(chroma, 1.0)).astype(np.int64), CLASSES - 1)


def _split(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chroma = np.random.default_rng(seed).uniform(0.0, 1.0, size)
    return tones(chroma).astype(np.float32)[:, None], chroma_labels(chroma), chroma


def load_shepard(options: DataOptions) -> Dataset:
    x_train, y_train, _ = _split(TRAIN_SIZE, TRAIN_SEED)
    x_test, y_test, test_chroma = _split(TEST_SIZE, TEST_SEED)
    info = {"source": "generated (Shepard tones)", "verified": "generated",
            "rule": f"{TRAIN_SIZE} train tones (seed {TRAIN_SEED}), {TEST_SIZE} test tones (seed {TEST_SEED}); "
                    f"{LENGTH} float samples in [-1, 1], {OCTAVES} octaves from {BASE_CYCLES:g} cycles; "
                    f"labels = {CLASSES} chroma classes"}
    return make_dataset("shepard", x_train, y_train, x_test, y_test, num_classes=CLASSES, info=info,
                        bank=FactorBank(reference_bank, 2 * np.pi * test_chroma))


ENTRY = DatasetEntry(
    "shepard", "Shepard tones, 1-D signals of 1,024 samples whose circular factor is the chroma "
               "(interpolation beyond images)",
    1, CLASSES, TRAIN_SIZE, TEST_SIZE, depth=16, latent_dims=(64, 256), loader=load_shepard,
    locate=lambda options: "generated", generated=True,
    features=frozenset({"factor_bank"}), kind="signal", size=LENGTH,
)
