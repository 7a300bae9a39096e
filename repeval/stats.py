"""The statistics behind intervals and comparisons, all from scipy.stats.

Three sources of noise are kept apart (DESIGN.md, "Noise"): training seeds (one trained
model each), probe seeds (a stochastic probe re-run on one model's cached latents) and the
test set (which examples happen to be in it). The functions here are the building blocks:

* :func:`t_interval` — a 95 % Student-t interval of a mean over independent values (the
  per-model means over training seeds): ``scipy.stats.t.interval`` with ``scipy.stats.sem``,
  intersected with the metric's declared range (:func:`within`).
* :func:`prediction_interval` — where one more model's value falls with 95 % probability
  (Student-t, ``s·√(1 + 1/n)``): what a single draw, such as one of the paper's Table 3
  cells, is set against.
* :func:`interval_from_std` — the t interval of a mean printed as mean ± population std of
  ``n`` reruns (the paper's cells).
* :func:`within` — an interval intersected with a declared range, marked ``clipped`` when
  it reached past it. The true mean lies in the range, so the intersection covers it
  whenever the interval did: clipping keeps the 95 % coverage and only drops impossible
  values. At n = 2 the t interval has one degree of freedom (multiplier 12.71 against 4.30
  at n = 3), so a two-seed interval is often clipped: docs/protocol.md §8, "Aggregation".
* :func:`bootstrap_interval` — a 95 % percentile bootstrap interval of an accuracy over the
  test examples (``scipy.stats.bootstrap``, seeded, 1,000 resamples): the test-set-only
  interval, which even a single model gets.
* :func:`paired_difference` — B − A paired over the training seeds both have: mean, 95 %
  t interval of the differences and the two-sided p-value of ``scipy.stats.ttest_rel``;
  where every seed differs by the same amount, no interval and the exact sign-flip test
  (``scipy.stats.permutation_test``), whose p cannot go below 2 / 2^n.
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
SIGN_FLIP = "sign-flip"  # the paired test where every seed's difference is the same (no t interval)


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
Bounds = tuple[float | None, float | None]  # a metric's declared range; None: unbounded on that side


@dataclass(frozen=True)
class Interval:
    """A 95 % interval ``[low, high]`` and what it covers: ``kind`` ``"t"`` (over training
    seeds, n ≥ 2) or ``"bootstrap"`` (over test examples only); ``clipped``: an end was
    moved in to the metric's declared range (:func:`within`)."""

    low: float
    high: float
    kind: str
    clipped: bool = False

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def position(self, value: float) -> str:
        """``"below"``, ``"inside"`` or ``"above"``: where ``value`` falls (ends inclusive)."""
        return "below" if value < self.low else "above" if value > self.high else "inside"


def within(interval: Interval | None, bounds: Bounds | None) -> Interval | None:
    """``interval`` intersected with the closed range ``bounds`` (``(low, high)``, either
    ``None`` for unbounded), with ``clipped`` set when an end moved. A true value inside the
    range stays covered whenever the interval covered it, so coverage is kept."""
    if interval is None or bounds is None:
        return interval
    low, high = interval.low, interval.high
    lo, hi = bounds
    if lo is not None and low < lo:
        low = lo
    if hi is not None and high > hi:
        high = hi
    if lo is not None and high < lo:
        high = lo
    if hi is not None and low > hi:
        low = hi
    if (low, high) == (interval.low, interval.high):
        return interval
    return Interval(float(low), float(high), interval.kind, True)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE,
               bounds: Bounds | None = None) -> Interval | None:
    """Student-t interval of the mean of ``values`` (independent draws), within ``bounds``
    (:func:`within`); ``None`` for fewer than two values or any NaN. Identical values give a
    zero-width interval."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size < 2 or np.isnan(x).any():
        return None
    mean, sem = float(x.mean()), float(stats.sem(x))
    if sem == 0:
        return within(Interval(mean, mean, "t"), bounds)
    low, high = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=sem)
    return within(Interval(float(low), float(high), "t"), bounds)


def prediction_interval(values: Sequence[float], confidence: float = CONFIDENCE,
                        bounds: Bounds | None = None) -> Interval | None:
    """Where one more independent draw falls with probability ``confidence`` (normal draws):
    ``mean ± t(n−1) · s · √(1 + 1/n)`` with the sample std ``s``, within ``bounds``; kind
    ``"prediction"``. ``None`` for fewer than two values or any NaN."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size < 2 or np.isnan(x).any():
        return None
    mean, spread = float(x.mean()), float(x.std(ddof=1)) * math.sqrt(1 + 1 / x.size)
    if spread == 0:
        return within(Interval(mean, mean, "prediction"), bounds)
    low, high = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=spread)
    return within(Interval(float(low), float(high), "prediction"), bounds)


def interval_from_std(mean: float, population_std: float, n: int, confidence: float = CONFIDENCE,
                      bounds: Bounds | None = None) -> Interval | None:
    """The t interval of a mean printed as ``mean ± population std`` of ``n`` independent
    reruns (the paper's cells, ``np.std``): standard error ``std / √(n − 1)``, n − 1 degrees
    of freedom, within ``bounds``. ``None`` for n < 2 or a missing std."""
    from scipy import stats

    if n < 2 or population_std is None or math.isnan(population_std) or math.isnan(mean):
        return None
    if population_std == 0:
        return within(Interval(mean, mean, "t"), bounds)
    low, high = stats.t.interval(confidence, df=n - 1, loc=mean, scale=population_std / math.sqrt(n - 1))
    return within(Interval(float(low), float(high), "t"), bounds)


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
    t interval of the differences and ``scipy.stats.ttest_rel``'s two-sided p-value. Where
    the differences have no spread: NaN ends and the exact sign-flip test's p (test
    ``"sign-flip"``)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length non-empty 1-d samples, got {a.shape} and {b.shape}")
    diff = b - a
    mean = float(diff.mean())
    if diff.size < 2:
        return Difference(mean, math.nan, math.nan, math.nan, int(diff.size), "paired t")
    rounding = 1e-9 * max(float(np.abs(a).max()), float(np.abs(b).max()))
    if np.ptp(diff) <= rounding:  # every seed differs by the same amount, up to rounding
        # No spread (quantised scores often differ by the same amount on every seed): the t
        # statistic and interval are undefined, and a zero-width interval with p = 0 would
        # claim certainty from n seeds. The exact sign-flip test is defined; its smallest p is
        # 2 / 2^n (0.25 at three seeds), which is what n agreeing seeds can show.
        p = 1.0
        if abs(mean) > rounding:  # the common difference's sign, rounding removed, flipped every way
            flips = np.full(diff.size, 1.0 if mean > 0 else -1.0)
            test = stats.permutation_test((flips,), np.mean, permutation_type="samples", n_resamples=math.inf)
            p = min(1.0, float(test.pvalue))
        return Difference(mean, math.nan, math.nan, p, int(diff.size), SIGN_FLIP)
    interval = t_interval(diff, confidence)
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
