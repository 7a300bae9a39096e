"""``shepard``: the Shepard-tone generator, its splits, and the reference interpolation table.

The table (256 pairs × 16 steps, pairs drawn with seed 0) is reproduced from the project's own
generator (:mod:`repeval.data.shepard`) and metric (:func:`repeval.probes.interpolation.interpolation_metrics`).
Structural rows hold whatever the pairs: the true path, the abrupt switch (1 − 1/15), the
constant output (undefined Smoothness, strict 1, detour −1), the long way round's Smoothness.
Pair-dependent values (the cross-fade's) agree with the printed ones within a few thousandths.
Two kinds of value are means of heavy-tailed ratios over pairs (a pair whose inputs lie close
on the circle has a tiny shortest arc): the long way round's detour, 2π/arc − 2 per pair, and
white noise's Smoothness and detour. Their expectation over random pairs does not exist, so a
printed value (11.9; 1.77, 53.0) is one draw: the long way round is checked against its exact
per-pair value instead, and noise against the bounds any draw satisfies.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repeval import data
from repeval.data import shepard
from repeval.probes.interpolation import circular_distance, interpolation_metrics

PAIRS, STEPS = 256, 16


def printed(value: float, text: str) -> bool:
    """``value`` rounded to the decimals of ``text`` equals it."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return round(value, decimals) == pytest.approx(float(text), abs=1e-12)


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    ca, cb = rng.uniform(size=(2, PAIRS))
    delta = np.mod(cb - ca + 0.5, 1.0) - 0.5  # the signed shorter way, in turns
    j = np.arange(STEPS) / (STEPS - 1)
    xa, xb = shepard.tones(ca), shepard.tones(cb)

    def along(turns: np.ndarray) -> np.ndarray:
        return shepard.tones((ca[:, None] + turns[:, None] * j).ravel()).reshape(PAIRS, STEPS, -1)

    paths = {
        "true": along(delta),
        "crossfade": (1 - j)[None, :, None] * xa[:, None] + j[None, :, None] * xb[:, None],
        "abrupt": np.where((np.arange(STEPS) < STEPS // 2)[None, :, None], xa[:, None], xb[:, None]),
        "constant": np.repeat(xa[:, None], STEPS, axis=1),
        "long": along(delta - np.sign(delta)),
        "noise": rng.standard_normal((PAIRS, STEPS, shepard.LENGTH)),
    }
    bank = shepard.reference_bank()
    scores = {name: interpolation_metrics(path, bank, 2 * np.pi * ca, 2 * np.pi * cb) for name, path in paths.items()}
    arc = circular_distance(2 * np.pi * ca, 2 * np.pi * cb)
    scores["long"]["expected_detour"] = float(np.mean((2 * np.pi - arc) / arc - 1))
    return scores


@pytest.mark.slow
def test_reference_rows_structural(table):
    true, abrupt, constant, long = table["true"], table["abrupt"], table["constant"], table["long"]
    assert printed(true["mean_distance"], "0.0000") and true["smoothness"] < 0.0015
    assert true["smoothness_strict"] == true["smoothness"] and printed(true["detour"], "0.000")
    assert true["endpoint_error"] < 2 * np.pi / shepard.BANK_SIZE  # within one bank step of the true chroma
    assert printed(abrupt["mean_distance"], "0.0000") and printed(abrupt["smoothness"], "0.933")
    assert printed(abrupt["smoothness_strict"], "0.933") and printed(abrupt["detour"], "0.000")
    assert printed(constant["mean_distance"], "0.0000") and math.isnan(constant["smoothness"])
    assert constant["n_undefined"] == PAIRS and constant["smoothness_strict"] == 1.0 and constant["detour"] == -1.0
    assert constant["endpoint_error"] > 0.5  # the last step sits at the first input's chroma
    assert printed(long["mean_distance"], "0.0000") and printed(long["smoothness"], "0.000")
    assert long["detour"] == pytest.approx(long["expected_detour"], rel=1e-3)
    assert all(table[name]["n_undefined"] == 0 for name in ("true", "abrupt", "long", "crossfade", "noise"))


@pytest.mark.slow
def test_reference_rows_pair_dependent(table):
    crossfade, noise = table["crossfade"], table["noise"]
    assert crossfade["mean_distance"] == pytest.approx(0.0696, abs=0.003)
    assert crossfade["smoothness"] == pytest.approx(0.811, abs=0.006)
    assert crossfade["smoothness_strict"] == crossfade["smoothness"]
    assert crossfade["detour"] == pytest.approx(0.006, abs=0.004)
    assert noise["mean_distance"] == pytest.approx(0.934, abs=0.003)
    assert noise["smoothness"] > 1.0 and noise["detour"] > 10  # a random walk: far from every real path


def test_tones_are_a_circle_in_chroma_and_scaled_to_one():
    assert np.abs(shepard.tones([0.99999]) - shepard.tones([0.0])).max() <= 1.5e-3
    np.testing.assert_allclose(shepard.tones([1.25]), shepard.tones([0.25]), atol=1e-12)  # c is taken mod 1
    bank, factors = shepard.reference_bank()
    assert bank.shape == (10_000, 1024) and np.abs(bank).max() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(factors[:3], 2 * np.pi * np.arange(3) / 10_000)
    # the partials lie at 2..64 cycles per window (not whole cycles, so they leak a little into
    # other bins, but nothing near Nyquist)
    spectrum = np.abs(np.fft.rfft(shepard.tones(np.linspace(0, 1, 7, endpoint=False)), axis=1))
    assert spectrum[:, 128:].max() < 0.01 * spectrum.max()


@pytest.mark.slow
def test_shepard_dataset_is_seeded_signals_labelled_by_chroma():
    ds = data.load("shepard")
    assert ds.train.x.shape == (32768, 1, 1024) and ds.test.x.shape == (5000, 1, 1024)
    assert ds.train.x.dtype == torch.float32 and ds.example.kind == "signal"
    chroma = ds.bank.test_factors / (2 * np.pi)
    assert ds.test.y.tolist() == np.minimum((12 * chroma).astype(np.int64), 11).tolist()
    np.testing.assert_allclose(ds.test.x[:4, 0].numpy(), shepard.tones(chroma[:4]), atol=1e-6)
    assert torch.equal(data.load("shepard").test.x[:50], ds.test.x[:50])
    assert data.get("shepard").example == ds.example
