"""``clock``: the clock-time strings, their splits, the exact nearest-string search and the
reference interpolation table.

The table (256 pairs × 16 steps, pairs drawn with seed 0) is reproduced from the module's own
bank and search through the interpolation task's metric
(:func:`repeval.probes.interpolation.interpolation_metrics`). Structural rows hold
whatever the pairs: the true path, the argmax-decoded cross-fade (1 − 1/15), the constant
output (undefined Smoothness, strict 1, detour −1), the long way round's Smoothness.
Pair-dependent values (the cross-fade's soft Mean Distance, the splice's) agree with the
printed ones within a few thousandths. The long way round's detour, 2π/arc − 2 per pair, and
random symbols' Smoothness and detour are means of heavy-tailed ratios over pairs whose
expectation does not exist (see ``test_shepard``): the long way is checked against its exact
per-pair value, random symbols against bounds.

:func:`~repeval.data.clock.nearest` is checked against a brute force over all 43,200 strings
(exact integer dot products) on random probabilities and on cross-fades rich in ties.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repeval.data import clock
from repeval.data.base import FactorBank
from repeval.probes.interpolation import circular_distance, interpolation_metrics

PAIRS, STEPS = 256, 16


def interpolation_scores(P_paths, true_a, true_b):
    """What the interpolation task stores for decoded paths ``(n_interp, n_steps, VOCAB, LENGTH)``."""
    bank = FactorBank(clock.reference_bank, np.zeros(0), search=clock.search)
    return interpolation_metrics(np.asarray(P_paths), bank, true_a, true_b)


def printed(value: float, text: str) -> bool:
    """``value`` rounded to the decimals of ``text`` equals it."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return round(value, decimals) == pytest.approx(float(text), abs=1e-12)


def brute_nearest(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and score of the nearest string by exact integer dot products with every bank
    string (P rounded to multiples of 2^-40), equal scores to the lowest t."""
    bank, _ = clock.reference_bank()
    q = np.rint(np.asarray(P, dtype=np.float64) * 2.0 ** 40).astype(np.int64)
    index, score = [], []
    for x in q:
        s = x[bank, np.arange(clock.LENGTH)].sum(axis=1)  # Σ_pos x[string_pos, pos]
        index.append(int(np.argmax(s)))
        score.append(int(s.max()))
    return np.array(index), np.array(score) / 2.0 ** 40


def crossfade(a: np.ndarray, b: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha, dtype=np.float64)[:, None, None]
    return (1 - alpha) * clock.one_hot(clock.tokens(a)) + alpha * clock.one_hot(clock.tokens(b))


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    ta, tb = rng.integers(0, clock.UNIVERSE, size=(2, PAIRS))
    assert (ta != tb).all()  # every pair has a shortest arc
    delta = np.mod(tb - ta + clock.UNIVERSE // 2, clock.UNIVERSE) - clock.UNIVERSE // 2  # signed, in seconds
    j = np.arange(STEPS) / (STEPS - 1)
    shape = (PAIRS, STEPS, clock.VOCAB, clock.LENGTH)

    def along(seconds: np.ndarray) -> np.ndarray:
        t = np.mod(np.rint(ta[:, None] + seconds[:, None] * j), clock.UNIVERSE).astype(np.int64)
        return clock.one_hot(clock.tokens(t.ravel())).reshape(shape)

    fade = crossfade(np.repeat(ta, STEPS), np.repeat(tb, STEPS), np.tile(j, PAIRS)).reshape(shape)
    cut = np.rint(j * clock.LENGTH).astype(np.int64)  # step j: the first cut[j] positions from b
    splice = np.where(np.arange(clock.LENGTH) < cut[:, None], clock.tokens(tb)[:, None], clock.tokens(ta)[:, None])
    paths = {
        "true": along(delta),
        "crossfade": fade,
        "crossfade_argmax": clock.one_hot(fade.argmax(axis=2).reshape(-1, clock.LENGTH)).reshape(shape),
        "splice": clock.one_hot(splice.reshape(-1, clock.LENGTH)).reshape(shape),
        "constant": np.repeat(clock.one_hot(clock.tokens(ta))[:, None], STEPS, axis=1),
        "long": along(delta - np.sign(delta) * clock.UNIVERSE),
        "random": clock.one_hot(rng.integers(0, clock.VOCAB, size=(PAIRS * STEPS, clock.LENGTH))).reshape(shape),
    }
    true_a, true_b = clock.factors(ta), clock.factors(tb)
    scores = {name: interpolation_scores(path, true_a, true_b) for name, path in paths.items()}
    arc = circular_distance(true_a, true_b)
    scores["long"]["expected_detour"] = float(np.mean((2 * np.pi - arc) / arc - 1))
    return scores


@pytest.mark.slow
def test_reference_rows_structural(table):
    true, fade, argmax, constant, long = (table[k] for k in ("true", "crossfade", "crossfade_argmax", "constant",
                                                             "long"))
    assert true["mean_distance"] == 0 and printed(true["smoothness"], "0.000") and true["smoothness"] < 5e-4
    assert true["smoothness_strict"] == true["smoothness"] and printed(true["detour"], "0.000")
    assert true["endpoint_error"] == 0 and true["valid_fraction"] == 1.0 and true["hard_distance"] == 0
    assert true["edit_distance"] == 0
    # the cross-fade's nearest string is a below α = ½ and b above: an abrupt switch
    assert fade["smoothness"] == pytest.approx(1 - 1 / 15, abs=1e-12) and printed(fade["detour"], "0.000")
    assert fade["smoothness_strict"] == fade["smoothness"] and fade["endpoint_error"] == 0
    assert argmax["mean_distance"] == 0 and argmax["smoothness"] == pytest.approx(1 - 1 / 15, abs=1e-12)
    assert printed(argmax["smoothness"], "0.933") and printed(argmax["smoothness_strict"], "0.933")
    assert printed(argmax["detour"], "0.000") and argmax["valid_fraction"] == 1.0
    assert constant["mean_distance"] == 0 and math.isnan(constant["smoothness"]) and constant["valid_fraction"] == 1
    assert constant["n_undefined"] == PAIRS and constant["smoothness_strict"] == 1.0 and constant["detour"] == -1.0
    assert constant["endpoint_error"] > 0.5  # the last step sits at the first input's time
    assert long["mean_distance"] == 0 and printed(long["smoothness"], "0.000") and long["valid_fraction"] == 1
    assert long["detour"] == pytest.approx(long["expected_detour"], rel=1e-9) and printed(long["detour"], "8.37")
    assert all(table[name]["n_undefined"] == 0 for name in ("true", "crossfade", "splice", "long", "random"))


@pytest.mark.slow
def test_reference_rows_pair_dependent(table):
    fade, splice, random = table["crossfade"], table["splice"], table["random"]
    assert fade["mean_distance"] == pytest.approx(0.051, abs=0.003) and printed(fade["mean_distance"], "0.051")
    assert fade["valid_fraction"] == 1.0  # its argmax decode: the row below it
    assert printed(splice["mean_distance"], "0.060") and printed(splice["smoothness"], "1.139")
    assert printed(splice["smoothness_strict"], "1.139") and printed(splice["detour"], "0.93")
    assert printed(splice["valid_fraction"], "0.41") and splice["endpoint_error"] == 0
    assert splice["hard_distance"] == pytest.approx(splice["mean_distance"], abs=1e-12)  # one-hot: they agree
    assert 0 < splice["edit_distance"] < 0.2
    assert printed(random["mean_distance"], "0.867") and random["valid_fraction"] == 0
    assert random["smoothness"] > 1.0 and random["detour"] > 10  # a random walk: far from every real path
    assert 0.5 < random["edit_distance"] < 1


def test_strings_symbols_and_tokens():
    strings = clock.text(np.arange(clock.UNIVERSE))
    assert len(set(strings)) == clock.UNIVERSE and max(map(len, strings)) == 54
    assert len(set("".join(strings))) == 21 and clock.VOCAB == len(clock.SYMBOLS) == 22
    assert clock.SYMBOLS[clock.PAD] == "_" and "_" not in "".join(strings)
    assert clock.SYMBOLS[1:] == tuple(sorted(set("".join(strings))))
    assert clock.text(23 * 60 + 23) == ["twelve hours twenty three minutes twenty three seconds"]
    assert clock.text([3660, 43_199]) == ["one hours one minutes zero seconds",
                                          "eleven hours fifty nine minutes fifty nine seconds"]
    assert clock.text(5 * 3600 + 40 * 60 + 17) == ["five hours forty minutes seventeen seconds"]
    ids = clock.tokens(np.array([0, 3660, 43_199]))
    assert ids.dtype == np.int64 and ids.shape == (3, clock.LENGTH)
    assert (ids[0, len("twelve hours zero minutes zero seconds"):] == clock.PAD).all()
    assert clock.decode(ids) == clock.text([0, 3660, 43_199])
    hot = clock.one_hot(ids)
    assert hot.dtype == bool and hot.shape == (3, clock.VOCAB, clock.LENGTH) and (hot.sum(axis=1) == 1).all()
    assert (hot.argmax(axis=1) == ids).all()
    ids[0, 2] = clock.PAD  # an interior PAD is kept as "_", trailing ones are stripped
    assert clock.decode(ids[:1]) == ["tw_lve hours zero minutes zero seconds"]
    np.testing.assert_allclose(clock.factors([0, 10_800, 43_199]), [0, np.pi / 2, 2 * np.pi * 43_199 / 43_200])
    bank, theta = clock.reference_bank()
    assert bank.shape == (clock.UNIVERSE, clock.LENGTH) and (bank[7] == clock.tokens(7)[0]).all()
    np.testing.assert_array_equal(theta, clock.factors(np.arange(clock.UNIVERSE)))
    with pytest.raises(ValueError):
        clock.tokens(clock.UNIVERSE)


def test_split_times_are_seeded_disjoint_and_shuffled():
    train, test = clock.split_times()
    perm = np.random.default_rng(0).permutation(clock.UNIVERSE)
    assert len(train) == 38_200 and len(test) == clock.TEST_SIZE == 5_000
    np.testing.assert_array_equal(test, perm[:5000])
    np.testing.assert_array_equal(train, perm[5000:])
    assert not set(train.tolist()) & set(test.tolist())
    assert not (np.diff(train) > 0).all() and not (np.diff(test) > 0).all()  # shuffled, not sorted
    assert set((test // 3600).tolist()) == set(range(clock.CLASSES))


def test_nearest_equals_brute_force_including_ties():
    rng = np.random.default_rng(1)
    logits = 3 * rng.standard_normal((12, clock.VOCAB, clock.LENGTH))
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    a, b = rng.integers(0, clock.UNIVERSE, size=(2, 24))
    half = crossfade(a, b, np.full(24, 0.5))  # ties every string that agrees with a or b at each position
    fades = crossfade(a, b, rng.integers(0, 16, 24) / 15)
    c = np.minimum(a, clock.UNIVERSE - 2)
    near = crossfade(c, c + 1, np.full(24, 0.5))  # neighbouring seconds: ties go to the lower
    random_hot = clock.one_hot(rng.integers(0, clock.VOCAB, size=(8, clock.LENGTH)))
    flat = np.concatenate([np.ones((2, clock.VOCAB, clock.LENGTH)), np.zeros((1, clock.VOCAB, clock.LENGTH))])
    for P in (softmax, half, fades, near, random_hot, flat):
        index, score = clock.nearest(P)
        expected_index, expected_score = brute_nearest(P)
        assert index.dtype == np.int64 and score.dtype == np.float64
        np.testing.assert_array_equal(index, expected_index)
        np.testing.assert_array_equal(score, expected_score)
    index, _ = clock.nearest(flat)
    assert index.tolist() == [0, 0, 0]  # every string ties: the lowest t
    index, score = clock.nearest(clock.one_hot(clock.tokens(a)))
    assert index.tolist() == a.tolist() and (score == clock.LENGTH).all()
    np.testing.assert_array_equal(clock.nearest_tokens(half), clock.tokens(brute_nearest(half)[0]))


def test_nearest_rejects_what_it_cannot_sum_exactly():
    with pytest.raises(ValueError):
        clock.nearest(np.zeros((2, clock.VOCAB, clock.LENGTH - 1)))
    with pytest.raises(ValueError):
        clock.nearest(np.full((1, clock.VOCAB, clock.LENGTH), np.nan))
    with pytest.raises(ValueError):
        clock.nearest(np.full((1, clock.VOCAB, clock.LENGTH), 1e6))
    index, score = clock.nearest(np.zeros((0, clock.VOCAB, clock.LENGTH)))
    assert index.shape == score.shape == (0,)


def test_search_distances_and_details():
    t = np.array([0, 3660, 20_000, 43_199])
    ids = clock.tokens(t)
    ids[1, 0] = clock.SYMBOLS.index("z")  # one wrong character: "zne hours …"
    ids[2, 60] = clock.SYMBOLS.index("x")  # a character past the end (kept: an interior PAD run)
    distances, theta, details = clock.search(clock.one_hot(ids))
    np.testing.assert_allclose(distances, [0, 1 / 64, 1 / 64, 0], atol=1e-15)
    np.testing.assert_allclose(theta, clock.factors(t))
    assert details["hard_distance"] == pytest.approx(2 / 64 / 4)
    assert details["valid_fraction"] == 0.5
    length = len(clock.text(20_000)[0])
    wrong = ["zne hours one minutes zero seconds", clock.text(20_000)[0] + "_" * (60 - length) + "x"]
    assert clock.decode(ids[1:3]) == wrong
    assert details["edit_distance"] == pytest.approx((1 / len(wrong[0]) + (61 - length) / 61) / 4)
    # soft scores: the cosine with the nearest one-hot string
    P = 0.9 * clock.one_hot(clock.tokens([5])) + 0.1 / clock.VOCAB
    distances, theta, _ = clock.search(P)
    expected = 1 - (0.9 + 0.1 / clock.VOCAB) * 64 / (np.linalg.norm(P) * 8)
    assert distances[0] == pytest.approx(expected, abs=1e-9) and theta[0] == clock.factors(5)


def test_interpolation_scores_of_a_short_true_path():
    t = np.array([[100, 160, 220, 280]])
    P = clock.one_hot(clock.tokens(t.ravel())).reshape(1, 4, clock.VOCAB, clock.LENGTH)
    scores = interpolation_scores(P, clock.factors([100]), clock.factors([280]))
    assert scores["mean_distance"] == 0 and scores["smoothness"] == pytest.approx(0, abs=1e-12)
    assert scores["detour"] == pytest.approx(0, abs=1e-12) and scores["n_undefined"] == 0
    assert scores["valid_fraction"] == 1 and scores["edit_distance"] == 0 and scores["hard_distance"] == 0
    with pytest.raises(ValueError):
        interpolation_scores(P[:, :1], clock.factors([100]), clock.factors([280]))


@pytest.mark.slow
def test_the_clock_dataset_is_one_hot_text_with_its_symbols_and_an_exact_bank():
    from repeval import data

    ds = data.load("clock")
    assert ds.train.x.shape == (38_200, clock.VOCAB, clock.LENGTH) and ds.test.x.shape == (5_000, clock.VOCAB, 64)
    assert ds.train.x.dtype == torch.bool and ds.example == data.get("clock").example
    assert ds.example.kind == "tokens" and ds.symbols == clock.SYMBOLS and ds.info["pad"] == clock.PAD
    train_t, test_t = clock.split_times()
    assert ds.test.y.tolist() == (test_t // 3600).tolist()
    assert clock.decode(ds.test.x[:3].numpy().argmax(axis=1)) == clock.text(test_t[:3])
    # the test examples are bank strings: distance 0 and their own time, found by the dataset's bank
    distances, theta, details = ds.bank.search(ds.test.x[:64].numpy().astype(np.float64))
    assert distances.max() == 0 and details["valid_fraction"] == 1.0
    np.testing.assert_allclose(theta, ds.bank.test_factors[:64])
