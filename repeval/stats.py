"""The statistics behind intervals and comparisons, all from scipy.stats.

Three sources of noise are kept apart (DESIGN.md, "Noise"): training seeds (one trained
model each), probe seeds (a stochastic probe re-run on one model's cached latents) and the
test set (which examples happen to be in it). The functions here are the building blocks:

* :func:`t_interval` — a 95 % Student-t interval of a mean over independent values (the
  per-model means over training seeds): ``scipy.stats.t.interval`` with ``scipy.stats.sem``.
* :func:`bootstrap_interval` — a 95 % percentile bootstrap interval of an accuracy over the
  test examples (``scipy.stats.bootstrap``, seeded, 1,000 resamples): the test-set-only
  interval, which even a single model gets.
* :func:`paired_difference` — B − A paired over the training seeds both have: mean, 95 %
  t interval of the differences and the two-sided p-value of ``scipy.stats.ttest_rel``.
* :func:`paired_test_set` — B − A over the same test examples for one model each: a
  paired bootstrap interval (``scipy.stats.bootstrap(paired=True)``) and McNemar's exact
  test on the discordant examples (``scipy.stats.binomtest``).
* :func:`pack_bits` / :func:`unpack_bits` — per-example correctness as a compact JSON
  value (``numpy.packbits``, base64): 10,000 test examples take 1,668 characters.

scipy is imported inside the functions, so modules that only format rows stay light.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
SIGNIFICANCE = 0.05  # p below this counts as a significant difference (report's best marks)


# ------------------------------------------------------------------------------ correctness bits
def pack_bits(correct: np.ndarray) -> dict[str, Any]:
    """Per-example correctness (booleans) as ``{"n": N, "bits": base64 of numpy.packbits}``."""
    flags = np.asarray(correct, dtype=bool).ravel()
    return {"n": int(flags.size), "bits": base64.b64encode(np.packbits(flags).tobytes()).decode("ascii")}


def unpack_bits(packed: Any) -> np.ndarray | None:
    """The booleans of :func:`pack_bits`, or ``None`` for anything else (a malformed value)."""
    if not isinstance(packed, dict) or not isinstance(packed.get("n"), int) or not isinstance(packed.get("bits"), str):
        return None
    try:
        raw = np.frombuffer(base64.b64decode(packed["bits"], validate=True), dtype=np.uint8)
    except (ValueError, TypeError):
        return None
    n = packed["n"]
    if n < 0 or raw.size != (n + 7) // 8:
        return None
    return np.unpackbits(raw, count=n).astype(bool)


def correctness(row: dict[str, Any]) -> np.ndarray | None:
    """The per-example correctness stored with a score row (``details["correct"]``), if any."""
    details = row.get("details") or {}
    return unpack_bits(details.get("correct")) if isinstance(details, dict) else None


# ------------------------------------------------------------------------------ intervals
@dataclass(frozen=True)
class Interval:
    """A 95 % interval ``[low, high]`` and what it covers: ``kind`` ``"t"`` (over training
    seeds, n ≥ 2) or ``"bootstrap"`` (over test examples only)."""

    low: float
    high: float
    kind: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """Student-t interval of the mean of ``values`` (independent draws); ``None`` for fewer
    than two values or any NaN. Identical values give a zero-width interval."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size < 2 or np.isnan(x).any():
        return None
    mean, sem = float(x.mean()), float(stats.sem(x))
    if sem == 0:
        return Interval(mean, mean, "t")
    low, high = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=sem)
    return Interval(float(low), float(high), "t")


def bootstrap_interval(per_example: np.ndarray, *, seed: int = BOOTSTRAP_SEED,
                       resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> Interval | None:
    """Percentile bootstrap interval of the mean of per-example scores (correctness, or the
    share of probe seeds that got the example right) over the test examples; ``None`` for
    fewer than two examples. Seeded: the same data and seed give the same interval."""
    from scipy import stats

    x = np.asarray(per_example, dtype=float)
    if x.size < 2:
        return None
    if np.all(x == x[0]):
        return Interval(float(x[0]), float(x[0]), "bootstrap")
    result = stats.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, batch=200, rng=np.random.default_rng(seed))
    return Interval(float(result.confidence_interval.low), float(result.confidence_interval.high), "bootstrap")


# ------------------------------------------------------------------------------ paired comparisons
@dataclass(frozen=True)
class Difference:
    """B − A: ``mean``, a 95 % interval, the two-sided ``p`` of ``test`` and ``n`` (training
    seeds paired, or test examples for a test-set comparison). ``low``/``high``/``p`` are
    NaN where the test is undefined (n = 1 for the paired t)."""

    mean: float
    low: float
    high: float
    p: float
    n: int
    test: str

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p) and self.p < SIGNIFICANCE


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """B − A over paired values (one pair per shared training seed): the mean difference, a
    t interval of the differences and ``scipy.stats.ttest_rel``'s two-sided p-value."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length non-empty 1-d samples, got {a.shape} and {b.shape}")
    diff = b - a
    mean = float(diff.mean())
    if diff.size < 2:
        return Difference(mean, math.nan, math.nan, math.nan, int(diff.size), "paired t")
    interval = t_interval(diff, confidence)
    if np.all(diff == diff[0]):  # no spread: the t statistic is undefined
        p = 1.0 if diff[0] == 0 else 0.0
    else:
        p = float(stats.ttest_rel(b, a).pvalue)
    low, high = (interval.low, interval.high) if interval else (math.nan, math.nan)
    return Difference(mean, low, high, p, int(diff.size), "paired t")


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact test of two classifiers on the same examples: the two-sided p of a
    binomial test on the discordant examples, and the counts (A right only, B right only)."""
    from scipy import stats

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue), only_a, only_b


def paired_test_set(per_example_a: np.ndarray, per_example_b: np.ndarray, *, seed: int = BOOTSTRAP_SEED,
                    resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> Difference:
    """B − A on the same test examples (one model each; per-example scores in [0, 1]): a
    paired percentile bootstrap interval of the accuracy difference and McNemar's p on the
    examples each gets right (a share of probe seeds counts as right above one half)."""
    from scipy import stats

    a, b = np.asarray(per_example_a, dtype=float), np.asarray(per_example_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two equal-length 1-d per-example samples, got {a.shape} and {b.shape}")
    mean = float(b.mean() - a.mean())
    p, _, _ = mcnemar(a > 0.5, b > 0.5)
    if np.all(b - a == (b - a)[0]):
        return Difference(mean, mean, mean, p, int(a.size), "McNemar")

    def statistic(x, y, axis):
        return y.mean(axis=axis) - x.mean(axis=axis)

    result = stats.bootstrap((a, b), statistic, paired=True, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, batch=200, rng=np.random.default_rng(seed))
    return Difference(mean, float(result.confidence_interval.low), float(result.confidence_interval.high), p,
                      int(a.size), "McNemar")
