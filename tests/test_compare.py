"""Nested aggregation (probe seeds within a model first) and paired comparisons of two
encoders: only shared training seeds pair, one shared seed is compared on the test
examples, and every bad request names what is stored."""

import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sp

from repeval.cli import main
from repeval.compare import compare, format_comparison
from repeval.errors import UserError
from repeval.stats import pack_bits
from repeval.store import Score, Store
from repeval.summary import PROBE_SEED_STRIDE, probe_seed, summarise


def row(encoder, seed, value, *, probe=0, dataset="digits", metric="accuracy", task="kmeans", correct=None,
        latent_dim=256, budget=2048):
    details = {"probe_seed": probe}
    if correct is not None:
        details["correct"] = pack_bits(correct)
    return {"dataset": dataset, "encoder": encoder, "latent": "map", "latent_dim": latent_dim, "budget": budget,
            "seed": seed, "task": task, "metric": metric, "value": value,
            "settings": {"restarts": 10, "seed": probe_seed(seed, probe)}, "details": details,
            "run_id": f"{encoder}-{seed}-{budget}"}


def test_probe_seeds_are_averaged_within_a_model_before_the_training_seeds():
    rows = [row("acai", 0, 0.5), row("acai", 0, 0.7, probe=1), row("acai", 0, 0.9, probe=2), row("acai", 1, 0.9)]
    [g] = summarise(rows)
    assert g["settings"] == {"restarts": 10, "seed": "run seed"}  # every probe seed pooled in one group
    assert (g["n"], g["seeds"], g["probe_seeds"]) == (2, [0, 1], 1)
    assert g["mean"] == pytest.approx((0.7 + 0.9) / 2)  # not the mean of the four rows (0.75)
    assert g["model_means"] == {0: pytest.approx(0.7), 1: pytest.approx(0.9)}
    low, high = sp.t.interval(0.95, df=1, loc=0.8, scale=sp.sem([0.7, 0.9]))
    assert (low, high) == (pytest.approx(-0.4706, abs=1e-4), pytest.approx(2.0706, abs=1e-4))
    # an accuracy lies in [0, 1]: scipy's df = 1 interval is cut there and marked
    assert g["ci"] == {"low": 0.0, "high": 1.0, "kind": "t", "clipped": True}
    assert g["probe_std"] == pytest.approx(np.mean([np.std([0.5, 0.7, 0.9]), 0.0]))
    assert probe_seed(3, 2) == 3 + 2 * PROBE_SEED_STRIDE


def test_one_model_gets_a_test_set_interval_from_its_correctness():
    right = np.arange(400) % 5 != 0  # 80 %
    [g] = summarise([row("acai", 0, 0.8, correct=right)])
    assert g["n"] == 1 and g["ci"]["kind"] == "bootstrap" and g["ci"]["low"] < 0.8 < g["ci"]["high"]
    [plain] = summarise([row("acai", 0, 0.8)])
    assert plain["ci"] is None  # one model, no per-example data: no interval


def test_only_shared_seeds_are_paired():
    a = {0: 0.60, 1: 0.62, 2: 0.58, 5: 0.10}
    b = {1: 0.70, 2: 0.69, 3: 0.75, 4: 0.72, 5: 0.71}
    rows = [row("baseline", s, v) for s, v in a.items()] + [row("acai", s, v) for s, v in b.items()]
    [line] = compare(rows, "baseline", "acai")
    shared = [1, 2, 5]
    ref = sp.ttest_rel([b[s] for s in shared], [a[s] for s in shared])
    assert (line.diff.n, line.diff.test) == (3, "paired t")
    assert line.diff.mean == pytest.approx(np.mean([b[s] - a[s] for s in shared]))
    assert line.diff.p == pytest.approx(ref.pvalue)
    text = format_comparison([line], "baseline", "acai")
    assert text.splitlines()[0].split()[:10] == ["dataset", "dim", "budget", "task", "metric", "seeds", "baseline",
                                                 "acai", "acai-baseline", "95%"]
    assert "paired t" in text.splitlines()[1]


def test_a_constant_difference_over_seeds_is_not_called_certain():
    # undefined interpolations are counts: three seeds that each differ by exactly 4 once gave a
    # zero-width interval and p = 0; n agreeing seeds show p = 2 / 2^n under the sign-flip test
    rows = [row("vae", s, 10.0 + s, metric="n_undefined", task="interpolation") for s in range(3)]
    rows += [row("vae+acai", s, 14.0 + s, metric="n_undefined", task="interpolation") for s in range(3)]
    [line] = compare(rows, "vae", "vae+acai")
    assert (line.diff.mean, line.diff.n, line.diff.test) == (4.0, 3, "sign-flip")
    assert line.diff.p == pytest.approx(0.25) and math.isnan(line.diff.low)
    [values] = [x.split() for x in format_comparison([line], "vae", "vae+acai").splitlines()[1:2]]
    assert values[8:12] == ["+4.0000", "-", "0.25", "sign-flip"]


def test_one_shared_seed_compares_accuracies_on_the_test_examples():
    a = np.arange(300) % 10 < 6
    b = a.copy()
    b[np.flatnonzero(~a)[:40]] = True
    rows = [row("baseline", 0, a.mean(), correct=a), row("acai", 0, b.mean(), correct=b),
            row("baseline", 0, 0.3, metric="nmi"), row("acai", 0, 0.4, metric="nmi")]
    lines = {x.metric: x for x in compare(rows, "baseline", "acai")}
    acc, nmi = lines["accuracy"].diff, lines["nmi"].diff
    assert acc.test == "McNemar" and acc.n == 300 and acc.p == pytest.approx(sp.binomtest(40, 40).pvalue)
    assert acc.low < acc.mean < acc.high and acc.mean == pytest.approx(40 / 300)
    assert nmi.mean == pytest.approx(0.1) and math.isnan(nmi.p) and nmi.test == "none (one seed)"


def test_a_reference_encoder_pairs_with_every_latent_size():
    rows = [row("acai", s, 0.6 + s / 100) for s in range(3)]
    rows += [row("pixels", s, 0.2, latent_dim=1024, budget=0) for s in range(3)]
    [line] = compare(rows, "pixels", "acai")
    assert line.diff.n == 3 and line.diff.mean == pytest.approx(0.41)


def test_learned_encoders_pair_at_the_same_budget():
    # snapshots along training (or a run continued to a longer budget) are groups at several
    # budgets: A at 2^12 must not pair with B at 2^14
    rows = [row(e, s, v + b / 2**20 + s / 100, budget=b) for s in range(3) for b in (4096, 16384)
            for e, v in (("baseline", 0.5), ("acai", 0.6))]
    rows += [row("pixels", s, 0.2, latent_dim=1024, budget=0) for s in range(3)]
    lines = compare(rows, "baseline", "acai")
    assert [(x.a.budget, x.b.budget) for x in lines] == [(4096, 4096), (16384, 16384)]
    assert all(x.diff.mean == pytest.approx(0.1) for x in lines)
    text = format_comparison(lines, "baseline", "acai").splitlines()
    assert [line.split()[2] for line in text[1:3]] == ["4,096", "16,384"]
    # a reference encoder pairs with every budget, and the line shows the learned one
    assert [x.b.budget for x in compare(rows, "pixels", "acai")] == [4096, 16384]
    # no budget in common: each budget pairs with each, and every line says which
    apart = [r for r in rows if (r["encoder"], r["budget"]) in (("baseline", 4096), ("acai", 16384))]
    [line] = compare(apart, "baseline", "acai")
    assert format_comparison([line], "baseline", "acai").splitlines()[1].split()[2:5] == ["4,096", "vs", "16,384"]


def test_bad_requests_name_what_is_stored():
    rows = [row("baseline", s, 0.5) for s in (0, 1)] + [row("acai", s, 0.6) for s in (2, 3)]
    with pytest.raises(UserError, match=r"share no training seed .* baseline has seeds \[0, 1\], acai has seeds "
                                        r"\[2, 3\]"):
        compare(rows, "baseline", "acai")
    with pytest.raises(UserError, match=r"matches \*\.nope\. Stored \(task\.metric\): kmeans\.accuracy"):
        compare(rows, "baseline", "acai", metric="nope")
    with pytest.raises(UserError, match=r"Neither encoder has scores on dataset 'mnist'.*baseline: digits"):
        compare(rows, "baseline", "acai", dataset="mnist")
    with pytest.raises(UserError, match=r"No scores stored for encoder 'vae'. Stored encoders: acai, baseline"):
        compare(rows, "baseline", "vae")
    with pytest.raises(UserError, match="two different encoders"):
        compare(rows, "acai", "acai")


def test_cli_compare_prints_the_paired_table_and_refuses_bad_input(tmp_path):
    with Store.in_workdir(tmp_path) as store:
        for encoder, values in (("baseline", [0.50, 0.55, 0.52]), ("acai", [0.70, 0.72, 0.69])):
            for seed, value in enumerate(values):
                run_id = f"{encoder}-{seed}"
                store.record_run(run_id, {"encoder": encoder, "dataset": "digits", "latent_dim": 256, "seed": seed,
                                          "budget": 2048}, {}, None)
                store.add_scores(run_id, [Score("kmeans", "accuracy", value, "map", {"seed": seed},
                                                {"probe_seed": 0})])
    runner = CliRunner()
    out = runner.invoke(main, ["compare", "--encoder", "baseline", "--encoder", "acai", "--workdir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    line = out.output.splitlines()[1].split()
    assert line[:6] == ["digits", "256", "2,048", "kmeans", "accuracy", "3"] and line[8] == "+0.1800"
    assert "paired t" in out.output and "Traceback" not in out.output
    bad = runner.invoke(main, ["compare", "--encoder", "baseline", "--workdir", str(tmp_path)])
    assert bad.exit_code == 2 and "exactly two encoders" in bad.output
    bad = runner.invoke(main, ["compare", "--encoder", "baseline", "--encoder", "acai", "--dataset", "mnist",
                               "--workdir", str(tmp_path)])
    assert bad.exit_code == 2 and "Stored datasets per encoder" in bad.output and "Traceback" not in bad.output
