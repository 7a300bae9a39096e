"""Property-based tests of ``repeval.probe`` and ``repeval.Probe`` on generated arrays.

Whatever arrays a user passes (shapes of rank 1 to 3, N from 1 to 60, D from 0 to 6; float16
to complex and object dtypes; NaN and inf sprinkled; constant columns; huge, tiny and repeated
values; labels of one class, with gaps, negative, floats, tiny and lopsided classes; with and
without a test split), a call ends in scores or :class:`repeval.UserError` (a ``ValueError``
of one paragraph), never another exception. Inputs that are valid by construction end in
scores. The CI profile runs a few hundred deterministic examples (``derandomize``); the
``slow`` variants run thousands.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import repeval

settings.register_profile("repeval-api-ci", max_examples=200, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("repeval-api-slow", max_examples=2000, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CI = settings.get_profile("repeval-api-ci")
SLOW = settings.get_profile("repeval-api-slow")

DTYPES = ("float64", "float64", "float32", "float32", "float16", "int8", "int32", "int64", "uint8", "bool",
          "complex64", "object")  # sampled with the floats twice as likely
LABEL_DTYPES = ("int64", "int32", "int8", "uint8")
TASKS = ("linear", "knn", "kmeans")


# ------------------------------------------------------------------------------ strategies
@st.composite
def latents(draw, n: int, width: int):
    """One split's latents: (n,), (n, D) or (n, A, B) of any dtype, with faults sprinkled."""
    rank = draw(st.sampled_from((2, 2, 2, 2, 2, 2, 1, 3)))  # mostly (N, D): the faults should not all stop early
    if rank == 1:
        shape: tuple[int, ...] = (n,)
    elif rank == 2:
        shape = (n, width)
    else:
        shape = (n, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(("normal", "small-integers", "constant", "repeated-rows", "huge", "tiny", "zeros")))
    z = {"normal": lambda: rng.normal(size=shape) * draw(st.sampled_from((1.0, 1e-3, 1e3))),
         "small-integers": lambda: rng.integers(-3, 4, size=shape).astype(float),
         "constant": lambda: np.full(shape, draw(st.sampled_from((0.0, 1.0, -7.5)))),
         "repeated-rows": lambda: np.broadcast_to(rng.normal(size=(1, *shape[1:])), shape).copy(),
         "huge": lambda: rng.normal(size=shape) * draw(st.sampled_from((1e30, 3e38, 1e300))),
         "tiny": lambda: rng.normal(size=shape) * draw(st.sampled_from((1e-30, 1e-42, 1e-310))),
         "zeros": lambda: np.zeros(shape)}[kind]()
    if z.ndim >= 2 and z.size and draw(st.booleans()):  # some constant columns
        flat = z.reshape(n, -1)
        cols = draw(st.lists(st.integers(0, flat.shape[1] - 1), max_size=3))
        flat[:, cols] = draw(st.sampled_from((0.0, 2.0)))
        z = flat.reshape(shape)
    for value in (np.nan, np.inf, -np.inf):  # NaN and inf, sometimes
        if z.size and draw(st.integers(0, 9)) == 5:
            z.reshape(-1)[draw(st.lists(st.integers(0, z.size - 1), min_size=1, max_size=3))] = value
    dtype = draw(st.sampled_from(DTYPES))
    with np.errstate(all="ignore"):
        if dtype in ("int8", "int32", "int64", "uint8"):
            info = np.iinfo(dtype)
            z = np.clip(np.nan_to_num(np.round(z), posinf=info.max, neginf=info.min), info.min, info.max)
            return z.astype(dtype)
        if dtype == "bool":
            return z > 0
        if dtype == "object":
            return np.array(z.tolist(), dtype=object) if z.size else z.astype(object)
        return z.astype(dtype)


@st.composite
def labels(draw, n: int, classes: int | None = None):
    """Labels for n rows in one of the patterns users give: good ones, and every fault."""
    k = classes or draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    pattern = draw(st.sampled_from(("balanced",) * 6 + ("random",) * 3 + ("lopsided",) * 2 + (
        "tiny-class", "one-class", "gaps", "negative", "floats", "bool", "wrong-length", "two-dimensional", "huge")))
    y = np.arange(n) % k
    if pattern == "random":
        y = rng.integers(0, k, n)
    elif pattern == "one-class":
        y = np.zeros(n, int)
    elif pattern == "gaps":
        y = y * 2
    elif pattern == "negative":
        y = y - 1
    elif pattern == "lopsided":
        y = np.where(np.arange(n) < max(n - 2, 1), 0, y)
    elif pattern == "tiny-class":
        y = np.r_[y[:-1], k][:n] if n else y
    elif pattern == "floats":
        return (y + draw(st.sampled_from((0.0, 0.5)))).astype(draw(st.sampled_from(("float32", "float64"))))
    elif pattern == "bool":
        return y.astype(bool)
    elif pattern == "wrong-length":
        y = np.arange(max(n + draw(st.sampled_from((-1, 1))), 0)) % k
    elif pattern == "two-dimensional":
        return y[:, None]
    elif pattern == "huge":
        y = y + 2**40
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    if dtype != "int64" and (y.min(initial=0) < np.iinfo(dtype).min or y.max(initial=0) > np.iinfo(dtype).max):
        dtype = "int64"
    return y.astype(dtype)


@st.composite
def inputs(draw):
    """(z_train, y_train, z_test or None, y_test or None, tasks, settings)."""
    n = draw(st.integers(1, 60))
    width = draw(st.sampled_from((3, 1, 2, 4, 5, 6, 0)))  # Hypothesis favours the first: a valid one
    z_train = draw(latents(n, width))
    y_train = draw(labels(n))
    z_test = y_test = None
    if draw(st.booleans()):
        m = draw(st.integers(1, 30))
        z_test = draw(latents(m, width if draw(st.integers(0, 9)) else draw(st.integers(0, 6))))
        y_test = draw(labels(m))
    tasks = tuple(draw(st.lists(st.sampled_from(TASKS), min_size=1, max_size=3, unique=True)))
    return z_train, y_train, z_test, y_test, tasks, probe_settings(draw, tasks)


def probe_settings(draw, tasks) -> dict:
    """Settings fast on tiny inputs: 2 k-means restarts; a small k for kNN (or its default, 20)."""
    chosen: dict = {}
    if "kmeans" in tasks:
        chosen["kmeans"] = {"restarts": 2}
    if "knn" in tasks and draw(st.integers(0, 3)):
        chosen["knn"] = {"k": draw(st.integers(1, 5))}
    return chosen


@st.composite
def valid_inputs(draw):
    """Inputs valid by construction: real latents (N, D >= 1), labels 0..C-1 with two or more
    examples of every class in train (five without a test split), the test classes among the
    train classes."""
    k = draw(st.integers(2, 4))
    split = draw(st.booleans())  # without a test split, 20 % of at least 5 per class leaves each class on both sides
    per_class = draw(st.lists(st.integers(2 if split else 5, 12), min_size=k, max_size=k))
    y_train = np.repeat(np.arange(k), per_class)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rng.shuffle(y_train)
    d = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(("float16", "float32", "float64", "int8", "int64", "uint8")))
    scale = draw(st.sampled_from((1.0, 1e-3, 1e3)))

    def make(rows):
        z = rng.normal(size=(rows, d)) * scale
        if draw(st.booleans()):
            z[:, draw(st.integers(0, d - 1))] = 1.0  # a constant column
        return np.clip(np.round(z), 0, 255).astype(dtype) if dtype in ("int8", "int64", "uint8") else z.astype(dtype)

    z_train = make(len(y_train))
    z_test = y_test = None
    if split:
        y_test = rng.integers(0, k, draw(st.integers(1, 20)))
        z_test = make(len(y_test))
    tasks = tuple(draw(st.lists(st.sampled_from(TASKS), min_size=1, max_size=3, unique=True)))
    chosen = probe_settings(draw, tasks)
    if "knn" in tasks:
        chosen["knn"] = {"k": draw(st.integers(1, 3))}  # at most the smallest train split a split can leave
    return z_train, y_train, z_test, y_test, tasks, chosen


# ------------------------------------------------------------------------------ what every call must end in
def scores_or_user_error(call):
    """``call()``'s result, or None when it raised repeval.UserError (a ValueError, one
    paragraph); any other exception fails the test."""
    try:
        return call()
    except repeval.UserError as exc:
        assert isinstance(exc, ValueError)
        text = str(exc)
        assert text and "\n" not in text and "Traceback" not in text, text
        return None


def check_results(results, tasks) -> None:
    assert len(results) > 0 and {r["task"] for r in results} == set(tasks)
    for row in results:
        assert isinstance(row["value"], float) and math.isfinite(row["value"]), row


def probe_case(z_train, y_train, z_test, y_test, tasks, chosen, *, valid: bool = False) -> None:
    results = scores_or_user_error(lambda: repeval.probe(z_train, y_train, z_test, y_test, tasks=tasks,
                                                         settings=chosen, device="cpu"))
    if valid:
        assert results is not None, "valid inputs raised"
    if results is not None:
        check_results(results, tasks)


def estimator_case(z_train, y_train, z_test, y_test, tasks, chosen, *, valid: bool = False) -> None:
    if z_test is None:
        z_test, y_test = z_train, y_train
    for task in tasks:
        estimator = repeval.Probe(task, device="cpu", **chosen.get(task, {}))
        value = scores_or_user_error(lambda: estimator.fit(z_train, y_train).score(z_test, y_test))
        if valid:
            assert value is not None, f"valid inputs raised for Probe({task!r})"
        if value is not None:
            assert isinstance(value, float) and math.isfinite(value)


# ------------------------------------------------------------------------------ the properties
ANY = inputs().map(lambda t: dict(zip(("z_train", "y_train", "z_test", "y_test", "tasks", "chosen"), t)))
VALID = valid_inputs().map(lambda t: dict(zip(("z_train", "y_train", "z_test", "y_test", "tasks", "chosen"), t)))


@CI
@given(case=ANY)
def test_probe_ends_in_scores_or_a_user_error(case):
    probe_case(**case)


@CI
@given(case=ANY)
def test_the_estimator_ends_in_a_score_or_a_user_error(case):
    estimator_case(**case)


@CI
@given(case=VALID)
@example(case={"z_train": np.random.default_rng(0).normal(size=(12, 3)), "y_train": np.arange(12) % 3,
               "z_test": None, "y_test": None, "tasks": ("linear",), "chosen": {}})  # accuracy_online is no score here
def test_valid_inputs_end_in_scores(case):
    probe_case(**case, valid=True)
    estimator_case(**case, valid=True)


@pytest.mark.slow
@SLOW
@given(case=ANY)
def test_probe_and_the_estimator_end_in_scores_or_a_user_error_slow(case):
    probe_case(**case)
    estimator_case(**case)


@pytest.mark.slow
@SLOW
@given(case=VALID)
def test_valid_inputs_end_in_scores_slow(case):
    probe_case(**case, valid=True)
    estimator_case(**case, valid=True)


@pytest.mark.parametrize("scale", [1e-40, 1e-38, 1e-30, 1e-20, 1e19, 1e30, 1e38])
def test_cosine_knn_does_not_depend_on_the_latents_scale(scale):
    """Found by the properties above: float32 rows beyond ~1e19 overflowed their squared norm
    (below ~1e-19, underflowed it), and cosine kNN fell to chance on perfectly separable latents."""
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    z = y[:, None] + 0.1 * rng.normal(size=(60, 2))
    knn = {"knn": {"k": 3}}
    expected = repeval.probe(z.astype(np.float32), y, tasks="knn", settings=knn).score("knn")
    assert repeval.probe((z * scale).astype(np.float32), y, tasks="knn", settings=knn).score("knn") == expected
    assert repeval.Probe("knn", k=3).fit((z * scale).astype(np.float32), y).score(
        (z * scale).astype(np.float32), y) == repeval.Probe("knn", k=3).fit(z, y).score(z, y)
