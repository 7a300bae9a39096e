"""repeval.stats against scipy on fixed inputs: intervals, the seeded bootstrap, paired tests,
McNemar, and the packed per-example correctness."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from repeval.stats import (
    bootstrap_interval,
    mcnemar,
    pack_bits,
    paired_difference,
    paired_test_set,
    t_interval,
    unpack_bits,
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
    constant = paired_difference([0.5, 0.6], [0.6, 0.7])
    assert constant.p == 0.0 and constant.low == constant.high == pytest.approx(0.1)
    assert paired_difference([0.5, 0.6], [0.5, 0.6]).p == 1.0
    with pytest.raises(ValueError):
        paired_difference([0.5, 0.6], [0.5])


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
