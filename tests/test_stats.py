"""repeval.stats against scipy on fixed inputs: intervals, the seeded bootstrap, paired tests,
McNemar, and the packed per-example correctness."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from repeval.stats import (
    Interval,
    bootstrap_interval,
    interval_from_std,
    mcnemar,
    pack_bits,
    paired_difference,
    paired_test_set,
    prediction_interval,
    t_interval,
    unpack_bits,
    within,
)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 540, 10_000])
def test_bits_round_trip(n):
    flags = np.random.default_rng(n).random(n) < 0.6
    packed = pack_bits(flags)
    assert packed["n"] == n and len(packed["bits"]) == 4 * math.ceil(math.ceil(n / 8) / 3)
    np.testing.assert_array_equal(unpack_bits(packed), flags)


def test_bits_sizes_and_malformed_values():
    assert len(pack_bits(np.ones(10_000, bool))["bits"]) == 1668  # MNIST's test split
    assert len(pack_bits(np.ones(540, bool))["bits"]) == 92  # digits'
    good = pack_bits(np.ones(9, bool))
    for bad in (None, "x", {"n": 9}, {"n": 9, "bits": "!!"}, {"n": 17, "bits": good["bits"]},
                {"n": -1, "bits": ""}, {"n": True, "bits": good["bits"]}):
        assert unpack_bits(bad) is None


def test_t_interval_is_scipys():
    values = [0.61, 0.58, 0.66, 0.63]
    got = t_interval(values)
    low, high = sp.t.interval(0.95, df=3, loc=np.mean(values), scale=sp.sem(values))
    assert (got.low, got.high, got.kind) == (pytest.approx(low), pytest.approx(high), "t")
    assert t_interval([0.5]) is None and t_interval([0.5, math.nan]) is None
    flat = t_interval([0.5, 0.5, 0.5])
    assert (flat.low, flat.high) == (0.5, 0.5)


def test_bootstrap_is_scipys_and_seeded():
    correct = np.random.default_rng(0).random(300) < 0.7
    got = bootstrap_interval(correct, seed=3)
    ref = sp.bootstrap((correct.astype(float),), np.mean, n_resamples=1000, confidence_level=0.95,
                       method="percentile", vectorized=True, batch=200, rng=np.random.default_rng(3))
    assert (got.low, got.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert got.kind == "bootstrap" and got.low < correct.mean() < got.high
    assert bootstrap_interval(correct, seed=3) == got  # the same seed, the same interval
    assert bootstrap_interval(correct, seed=4) != got
    assert bootstrap_interval(np.ones(50, bool)).low == 1.0
    assert bootstrap_interval(np.ones(1, bool)) is None


def test_paired_difference_is_ttest_rel():
    a, b = [0.70, 0.72, 0.69, 0.74], [0.75, 0.74, 0.73, 0.80]
    d = paired_difference(a, b)
    diff = np.subtract(b, a)
    low, high = sp.t.interval(0.95, df=3, loc=diff.mean(), scale=sp.sem(diff))
    assert d.mean == pytest.approx(diff.mean()) and (d.low, d.high) == (pytest.approx(low), pytest.approx(high))
    assert d.p == pytest.approx(sp.ttest_rel(b, a).pvalue) and d.n == 4 and d.test == "paired t"
    assert d.significant == (d.p < 0.05)
    one = paired_difference([0.5], [0.7])
    assert one.mean == pytest.approx(0.2) and math.isnan(one.p) and one.n == 1
    assert paired_difference([0.5, 0.6], [0.5, 0.6]).p == 1.0
    with pytest.raises(ValueError):
        paired_difference([0.5, 0.6], [0.5])


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_difference_without_spread_gets_the_sign_flip_test_and_no_interval(n):
    # Quantised scores (counts, accuracies of 10,000 examples) often differ by the same amount
    # on every seed, up to float rounding: 0.6 - 0.5 != 0.8 - 0.7 in binary. The t statistic
    # is undefined; n agreeing seeds show p = 2 / 2^n under the exact sign-flip test, not 0.
    a = [0.5, 0.7, 0.1, 0.3, 0.9][:n]
    d = paired_difference(a, [x + 0.1 for x in a])
    assert d.test == "sign-flip" and d.mean == pytest.approx(0.1) and math.isnan(d.low) and math.isnan(d.high)
    assert d.p == pytest.approx(min(1.0, 2 / 2**n)) and not d.significant
    down = paired_difference(a, [x - 3 for x in a])
    assert down.mean == pytest.approx(-3) and down.p == pytest.approx(min(1.0, 2 / 2**n))
    same = paired_difference(a, [x + 1e-15 for x in a])  # equal up to rounding
    assert same.p == 1.0 and same.test == "sign-flip"
    spread = paired_difference(a, [x + 0.1 + 1e-3 * i for i, x in enumerate(a)])  # a real spread: the t-test
    assert spread.test == "paired t" and spread.low < spread.mean < spread.high


def test_mcnemar_is_an_exact_binomial_test_on_the_discordant_examples():
    a = np.array([1, 1, 1, 0, 0, 0, 0, 1, 1, 0], bool)
    b = np.array([1, 0, 1, 1, 1, 1, 0, 1, 1, 1], bool)
    p, only_a, only_b = mcnemar(a, b)
    assert (only_a, only_b) == (1, 4) and p == pytest.approx(sp.binomtest(4, 5, 0.5).pvalue)
    assert mcnemar(a, a) == (1.0, 0, 0)


def test_paired_test_set_bootstraps_pairs_of_examples():
    rng = np.random.default_rng(1)
    a = rng.random(400) < 0.6
    b = a | (rng.random(400) < 0.2)
    d = paired_test_set(a, b, seed=2)
    ref = sp.bootstrap((a.astype(float), b.astype(float)), lambda x, y, axis: y.mean(axis) - x.mean(axis),
                       paired=True, n_resamples=1000, method="percentile", vectorized=True, batch=200,
                       rng=np.random.default_rng(2))
    assert (d.low, d.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert d.mean == pytest.approx(b.mean() - a.mean()) and d.n == 400 and d.test == "McNemar"
    assert d.p == pytest.approx(mcnemar(a, b)[0]) and d.significant


def test_an_interval_is_cut_at_its_declared_range_and_marked():
    # the README's two-seed kNN cell: 94.44 ± 0.74 (population std) gave [85.03, 103.86]
    values = [0.9370, 0.9518]
    raw = t_interval(values)
    assert (raw.low, raw.high, raw.clipped) == (pytest.approx(0.8504, abs=1e-3), pytest.approx(1.0384, abs=1e-3), False)
    cut = t_interval(values, bounds=(0.0, 1.0))
    assert (cut.low, cut.high, cut.kind, cut.clipped) == (raw.low, 1.0, "t", True)
    # one side unbounded, an interval already inside, no bounds at all
    assert within(Interval(-0.5, 0.5, "t"), (0.0, None)) == Interval(0.0, 0.5, "t", True)
    assert within(Interval(0.2, 0.5, "t"), (0.0, 1.0)) == Interval(0.2, 0.5, "t", False)
    assert within(Interval(-3.0, 5.0, "t"), None) == Interval(-3.0, 5.0, "t")
    assert within(None, (0.0, 1.0)) is None
    # an interval wholly outside collapses onto the nearest end
    assert within(Interval(1.2, 1.5, "t"), (0.0, 1.0)) == Interval(1.0, 1.0, "t", True)


def test_clipping_keeps_the_coverage_of_the_two_seed_interval():
    """A true mean inside the range is covered by the cut interval whenever by the raw one:
    simulated two-seed cells near the top of [0, 1] keep 95 % coverage, and many are cut."""
    rng = np.random.default_rng(0)
    mu, draws = 0.944, rng.normal(0.944, 0.0105, (2000, 2))
    raw = [t_interval(d) for d in draws]
    cut = [t_interval(d, bounds=(0.0, 1.0)) for d in draws]
    covered = [(i.low <= mu <= i.high) for i in raw]
    assert [(i.low <= mu <= i.high) for i in cut] == covered
    assert 0.93 < np.mean(covered) < 0.97
    assert 0.3 < np.mean([i.clipped for i in cut]) < 0.6
    assert all(0.0 <= i.low <= i.high <= 1.0 for i in cut)


def test_prediction_interval_for_one_more_draw_is_scipys():
    values = [0.61, 0.58, 0.66, 0.63]
    got = prediction_interval(values)
    scale = np.std(values, ddof=1) * math.sqrt(1 + 1 / 4)
    low, high = sp.t.interval(0.95, df=3, loc=np.mean(values), scale=scale)
    assert (got.low, got.high, got.kind) == (pytest.approx(low), pytest.approx(high), "prediction")
    assert got.position(0.80) == "above" and got.position(0.62) == "inside" and got.position(0.45) == "below"
    assert prediction_interval([0.5]) is None
    assert prediction_interval([0.2, 0.9], bounds=(0.0, 1.0)).clipped


def test_interval_of_a_printed_mean_and_population_std():
    # 94.90 ± 0.14 over three reruns (np.std): standard error 0.14 / √2, two degrees of freedom
    got = interval_from_std(94.90, 0.14, 3)
    low, high = sp.t.interval(0.95, df=2, loc=94.90, scale=0.14 / math.sqrt(2))
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert interval_from_std(99.0, 0.9, 3, bounds=(0.0, 100.0)).high == 100.0
    assert interval_from_std(77.56, None, 3) is None and interval_from_std(1.0, 0.1, 1) is None
