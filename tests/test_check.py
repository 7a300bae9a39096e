"""The regression gate: verdicts under tolerances and directions, baseline validation, round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from repeval.check import (
    CheckResult,
    Comparison,
    RowKey,
    Tolerance,
    compare,
    default_tolerance,
    format_check,
    load_baseline,
    write_baseline,
)
from repeval.errors import UserError

KEY = {"dataset": "mnist", "encoder": "acai", "latent": "map", "latent_dim": 32, "budget": 64, "seed": 0}


def brow(task, metric, value, seed=0, **extra):
    """A baseline row."""
    return {**KEY, "seed": seed, "task": task, "metric": metric, "value": value, **extra}


def srow(task, metric, value, seed=0, settings=None, run_id="r0"):
    """A store row, as Store.scores() returns it."""
    return {**KEY, "seed": seed, "task": task, "metric": metric, "value": value,
            "settings": settings if settings is not None else {}, "details": {}, "run_id": run_id}


def write_json(path, rows, tolerances=None, **top):
    doc = {"format": "repeval-baseline", "version": 1, "rows": rows, **top}
    if tolerances is not None:
        doc["tolerances"] = tolerances
    path.write_text(json.dumps(doc))
    return path


def statuses(result):
    return {(c.key.task, c.key.metric, c.key.seed): c.status for c in result.comparisons}


def test_tolerance_is_the_larger_of_abs_and_rel():
    tol = Tolerance(abs=0.01, rel=0.1)
    assert (tol.allowed(0.5), tol.allowed(-0.5), tol.allowed(0.05)) == (0.05, 0.05, 0.01)
    assert Tolerance(rel=0.05).allowed(math.nan) == 0.0


def test_verdicts_respect_tolerance_direction_and_nan(tmp_path):
    baseline = load_baseline(write_json(tmp_path / "b.json", [
        brow("kmeans", "accuracy", 0.9),            # abs 0.005, current exactly 0.005 lower
        brow("knn", "accuracy", 0.9),               # current just beyond
        brow("linear", "accuracy", 0.9),            # improvement
        brow("linear", "accuracy_online", 0.9),     # within tolerance, upwards
        brow("interpolation", "mean_distance", 0.1, seed=0),  # rel 0.05 -> 0.005; lower is better
        brow("interpolation", "mean_distance", 0.1, seed=1),
        brow("interpolation", "smoothness", 0.2, seed=0),     # abs 0.01; lower is better
        brow("interpolation", "smoothness", 0.2, seed=1),
        brow("kmeans", "nmi", None),                # NaN vs NaN
        brow("kmeans", "ari", None),                # NaN vs number
        brow("knn", "nmi", 0.5),                    # number vs NaN
        brow("probe", "loss", 1.0),                 # unknown metric: two-sided, exact
        brow("probe", "loss", 1.0, seed=1),
        brow("kmeans", "accuracy", 0.9, seed=7),    # missing from the store
    ]))
    rows = [srow("kmeans", "accuracy", 0.895), srow("knn", "accuracy", 0.8949),
            srow("linear", "accuracy", 0.95), srow("linear", "accuracy_online", 0.904),
            srow("interpolation", "mean_distance", 0.0949, seed=0),
            srow("interpolation", "mean_distance", 0.1051, seed=1),
            srow("interpolation", "smoothness", 0.21, seed=0),
            srow("interpolation", "smoothness", 0.1, seed=1),
            srow("kmeans", "nmi", math.nan), srow("kmeans", "ari", 0.5), srow("knn", "nmi", math.nan),
            srow("probe", "loss", 0.5), srow("probe", "loss", 1.0, seed=1),
            srow("knn", "accuracy", 0.9, seed=3)]  # extra
    result = compare(baseline, rows)
    assert statuses(result) == {
        ("kmeans", "accuracy", 0): "unchanged", ("knn", "accuracy", 0): "regression",
        ("linear", "accuracy", 0): "improvement", ("linear", "accuracy_online", 0): "unchanged",
        ("interpolation", "mean_distance", 0): "improvement",
        ("interpolation", "mean_distance", 1): "regression",
        ("interpolation", "smoothness", 0): "unchanged", ("interpolation", "smoothness", 1): "improvement",
        ("kmeans", "nmi", 0): "unchanged", ("kmeans", "ari", 0): "regression",
        ("knn", "nmi", 0): "regression", ("probe", "loss", 0): "regression", ("probe", "loss", 1): "unchanged",
        ("kmeans", "accuracy", 7): "missing", ("knn", "accuracy", 3): "extra",
    }
    assert not result.ok
    assert [len(result.regressions), len(result.missing), len(result.improvements), len(result.unchanged),
            len(result.extra)] == [5, 1, 3, 5, 1]


def test_improvements_and_extras_pass_missing_fails(tmp_path):
    baseline = load_baseline(write_json(tmp_path / "b.json", [brow("knn", "accuracy", 0.9)]))
    assert compare(baseline, [srow("knn", "accuracy", 0.99), srow("knn", "nmi", 0.1)]).ok
    assert not compare(baseline, [srow("knn", "nmi", 0.1)]).ok


def test_row_tolerance_beats_file_tolerance_beats_default(tmp_path):
    baseline = load_baseline(write_json(tmp_path / "b.json", [
        brow("knn", "accuracy", 0.5, tolerance={"rel": 0.1}),
        brow("linear", "accuracy", 0.5),
        brow("kmeans", "nmi", 0.5),
    ], tolerances={"accuracy": {"abs": 0.02}}))
    result = compare(baseline, [srow("knn", "accuracy", 0.45), srow("linear", "accuracy", 0.48),
                                srow("kmeans", "nmi", 0.494)])
    assert {(c.key.task, c.key.metric): (c.status, c.allowed) for c in result.comparisons} == {
        ("knn", "accuracy"): ("unchanged", 0.05),
        ("linear", "accuracy"): ("unchanged", 0.02),
        ("kmeans", "nmi"): ("regression", 0.005),
    }


def test_task_metric_tolerance_beats_metric_tolerance_and_undeclared_metrics_are_exact(tmp_path):
    baseline = load_baseline(write_json(tmp_path / "b.json", [
        brow("knn", "accuracy", 0.5), brow("linear", "accuracy", 0.5), brow("knn", "top7", 0.5),
        brow("plugin_probe", "score", 0.5),
    ], tolerances={"accuracy": {"abs": 0.02}, "knn.accuracy": {"abs": 0.1}}))
    result = compare(baseline, [srow("knn", "accuracy", 0.45), srow("linear", "accuracy", 0.45),
                                srow("knn", "top7", 0.5 + 1e-9), srow("plugin_probe", "score", 0.6)])
    assert {(c.key.task, c.key.metric): (c.status, c.allowed) for c in result.comparisons} == {
        ("knn", "accuracy"): ("unchanged", 0.1),  # its task's own key wins
        ("linear", "accuracy"): ("regression", 0.02),
        ("knn", "top7"): ("regression", 0.0),  # no probe declares it: exact, two-sided
        ("plugin_probe", "score"): ("regression", 0.0),  # an unknown task: exact even when better
    }


def test_settings_pick_the_matching_score_and_ambiguity_is_an_error(tmp_path):
    rows = [srow("knn", "accuracy", 0.9, settings={"k": 20}), srow("knn", "accuracy", 0.5, settings={"k": 200})]
    pinned = load_baseline(write_json(tmp_path / "p.json", [brow("knn", "accuracy", 0.9, settings={"k": 20})]))
    result = compare(pinned, rows)
    assert [(c.status, c.current) for c in result.comparisons] == [("extra", 0.5), ("unchanged", 0.9)]
    loose = load_baseline(write_json(tmp_path / "l.json", [brow("knn", "accuracy", 0.9)]))
    with pytest.raises(UserError, match=r"several scores for dataset=mnist.*task=knn, metric=accuracy "
                                        r"\(run r0 settings=\{\"k\":20\}; run r0 settings=\{\"k\":200\}\)\. "
                                        r"Add the intended \"settings\""):
        compare(loose, rows)


def test_format_check_table_and_summary(tmp_path):
    baseline = load_baseline(write_json(tmp_path / "b.json", [
        brow("knn", "accuracy", 0.9, n=3, spread=0.02), brow("kmeans", "accuracy", 0.9),
        brow("interpolation", "mean_distance", 0.1), brow("kmeans", "nmi", 0.5, seed=1)]))
    result = compare(baseline, [srow("knn", "accuracy", 0.8), srow("kmeans", "accuracy", 0.901),
                                srow("interpolation", "mean_distance", 0.05), srow("linear", "accuracy", 0.7)])
    assert format_check(result).splitlines() == [
        "status       dataset  encoder  latent  latent_dim  budget  seed  task           metric         baseline  current   delta  allowed  n  spread",  # noqa: E501 (an expected table line)
        "regression   mnist    acai     map             32      64     0  knn            accuracy            0.9      0.8    -0.1    0.005  3    0.02",  # noqa: E501 (an expected table line)
        "missing      mnist    acai     map             32      64     1  kmeans         nmi                 0.5        -       -    0.005  -       -",  # noqa: E501 (an expected table line)
        "improvement  mnist    acai     map             32      64     0  interpolation  mean_distance       0.1     0.05   -0.05    0.005  -       -",  # noqa: E501 (an expected table line)
        "extra        mnist    acai     map             32      64     0  linear         accuracy              -      0.7       -        -  -       -",  # noqa: E501 (an expected table line)
        "unchanged    mnist    acai     map             32      64     0  kmeans         accuracy            0.9    0.901  +0.001    0.005  -       -",  # noqa: E501 (an expected table line)
        "FAIL: 1 regression, 1 missing, 1 improvement, 1 unchanged, 1 extra",
    ]


def test_format_check_summary_when_passing():
    result = CheckResult([Comparison(RowKey("lines", "vae", "mean", 16, 0, 2, "interpolation", "smoothness"),
                                     "unchanged", baseline=math.nan, current=math.nan, allowed=0.01)])
    assert format_check(result).splitlines()[1:] == [
        "unchanged  lines    vae      mean            16       0     2  interpolation  smoothness       nan      nan    nan     0.01  -       -",  # noqa: E501 (an expected table line)
        "PASS: 0 regressions, 0 missing, 0 improvements, 1 unchanged, 0 extra",
    ]


def test_write_then_load_round_trip(tmp_path):
    rows = [srow("knn", "accuracy", 0.75, settings={"k": 20}), srow("knn", "accuracy", 0.5, settings={"k": 10}),
            srow("interpolation", "smoothness", math.nan), srow("kmeans", "nmi", 0.25, seed=1)]
    path = tmp_path / "ci" / "baseline.json"
    assert write_baseline(rows, path) == 4
    assert path.read_text().splitlines()[:9] == [
        "{", '  "format": "repeval-baseline",', '  "version": 1,', '  "tolerances": {',
        '    "accuracy": {"abs": 0.005, "rel": 0.0},', '    "nmi": {"abs": 0.005, "rel": 0.0},',
        '    "smoothness": {"abs": 0.01, "rel": 0.0}', "  },", '  "rows": ['], "one row per line"
    doc = json.loads(path.read_text())
    assert len(path.read_text().splitlines()) == 9 + len(doc["rows"]) + 2
    assert doc["tolerances"] == {"accuracy": {"abs": 0.005, "rel": 0.0}, "nmi": {"abs": 0.005, "rel": 0.0},
                                 "smoothness": {"abs": 0.01, "rel": 0.0}}
    assert [(r["task"], r["seed"], r["value"], r["settings"]) for r in doc["rows"]] == [
        ("interpolation", 0, None, {}), ("knn", 0, 0.5, {"k": 10}), ("knn", 0, 0.75, {"k": 20}),
        ("kmeans", 1, 0.25, {})]
    baseline = load_baseline(path)
    assert baseline.tolerances == {"accuracy": default_tolerance("knn", "accuracy"),
                                   "nmi": default_tolerance("kmeans", "nmi"),
                                   "smoothness": default_tolerance("interpolation", "smoothness")}
    result = compare(baseline, rows)
    assert result.ok and len(result.unchanged) == 4


def test_write_baseline_records_n_and_spread_over_training_and_probe_seeds(tmp_path):
    def probe(seed, index, value):
        row = srow("kmeans", "accuracy", value, seed=seed, settings={"seed": seed + 10_000 * index},
                   run_id=f"r{seed}")
        row["details"] = {"probe_seed": index}
        return row

    rows = [probe(0, 0, 0.5), probe(0, 1, 0.7), probe(1, 0, 0.6), probe(1, 1, 0.8),
            srow("knn", "accuracy", 0.9)]
    path = tmp_path / "b.json"
    assert write_baseline(rows, path) == 5
    doc = json.loads(path.read_text())
    noise = {(r["task"], r["seed"], r["settings"].get("seed")): (r["n"], r["spread"]) for r in doc["rows"]}
    spread = round(float(np.std([0.5, 0.7, 0.6, 0.8])), 6)
    assert noise == {("kmeans", 0, 0): (4, spread), ("kmeans", 0, 10_000): (4, spread),
                     ("kmeans", 1, 1): (4, spread), ("kmeans", 1, 10_001): (4, spread), ("knn", 0, None): (1, 0.0)}
    result = compare(load_baseline(path), rows)
    assert result.ok and {(c.n, c.spread) for c in result.comparisons} == {(4, spread), (1, 0.0)}
    assert format_check(result).splitlines()[0].split()[-2:] == ["n", "spread"]


def test_write_baseline_takes_given_tolerances(tmp_path):
    path = tmp_path / "b.json"
    write_baseline([srow("knn", "accuracy", 0.75)], path, tolerances={"accuracy": Tolerance(abs=0.02, rel=0.01)})
    assert load_baseline(path).tolerances == {"accuracy": Tolerance(abs=0.02, rel=0.01)}


def test_write_baseline_refuses_indistinguishable_rows_and_empty_stores(tmp_path):
    rows = [srow("knn", "accuracy", 0.75, run_id="acai-a"), srow("knn", "accuracy", 0.5, run_id="acai-b")]
    with pytest.raises(UserError, match=r"several runs give the same score key and settings.*\n"
                                        r"  dataset=mnist, .*metric=accuracy, settings=\{\}: runs acai-a, acai-b\n"):
        write_baseline(rows, tmp_path / "b.json")
    with pytest.raises(UserError, match="No scores to write to the baseline"):
        write_baseline([], tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


GOOD = brow("knn", "accuracy", 0.9)


@pytest.mark.parametrize("content, message", [
    ('{"format": "repeval-baseline",\n "version": 1,,}', "not valid JSON: Expecting property name enclosed "
                                                         "in double quotes at line 2, column 15"),
    ('[1, 2]', 'not a repeval baseline (expected "format": "repeval-baseline" at the top level)'),
    ('{"format": "other", "version": 1, "rows": []}',
     'not a repeval baseline (expected "format": "repeval-baseline" at the top level)'),
    ('{"format": "repeval-baseline", "version": "1", "rows": []}', '"version" must be 1, got "1"'),
    ('{"format": "repeval-baseline", "version": 1, "rows": []}', "'rows' must be a non-empty list of score rows"),
    (json.dumps({"format": "repeval-baseline", "version": 1,
                 "rows": [GOOD, {k: v for k, v in GOOD.items() if k != "seed"}]}), "rows[1] lacks the key 'seed'"),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "value": "0.9"}]}),
     'rows[0].value must be a number (or null for NaN), got "0.9"'),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "value": True}]}),
     "rows[0].value must be a number (or null for NaN), got true"),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "n": 0}]}),
     "rows[0].n must be a positive integer (the values behind the row), got 0"),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "spread": -1}]}),
     "rows[0].spread must be a non-negative number (their std), got -1"),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "latent_dim": "32"}]}),
     'rows[0].latent_dim must be an integer, got "32"'),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "task": 3}]}),
     "rows[0].task must be a string, got 3"),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [GOOD, {**GOOD, "value": 0.1}]}),
     "rows[0] and rows[1] are the same score (dataset=mnist, encoder=acai, latent=map, latent_dim=32, "
     "budget=64, seed=0, task=knn, metric=accuracy); keep one"),
    (json.dumps({"format": "repeval-baseline", "version": 1,
                 "rows": [{**GOOD, "settings": {"k": 1}}, {**GOOD, "settings": {"k": 1}}]}),
     "rows[0] and rows[1] are the same score (dataset=mnist, encoder=acai, latent=map, latent_dim=32, "
     "budget=64, seed=0, task=knn, metric=accuracy, same settings); keep one"),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "settings": {"k": 1}}, GOOD]}),
     "rows[0] and rows[1] are the same score (dataset=mnist, encoder=acai, latent=map, latent_dim=32, "
     'budget=64, seed=0, task=knn, metric=accuracy, and a row without "settings" matches any settings); '
     "keep one, or give both their settings"),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [GOOD],
                 "tolerances": {"accuracy": {"absolute": 0.1}}}),
     'tolerances.accuracy must be an object with keys \'abs\' and/or \'rel\', got {"absolute": 0.1}'),
    (json.dumps({"format": "repeval-baseline", "version": 1, "rows": [{**GOOD, "tolerance": {"rel": -1}}]}),
     "rows[0].tolerance.rel must be a non-negative number, got -1"),
])
def test_malformed_baselines_name_the_problem(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(UserError) as info:
        load_baseline(path)
    assert info.value.message == (f"Baseline {path}: {message}. Fix the file, or write a fresh one with "
                                  f"`repeval check --write-baseline {path}`.")


def test_newer_baseline_version_says_to_upgrade(tmp_path):
    path = write_json(tmp_path / "b.json", [GOOD], version=2)
    with pytest.raises(UserError) as info:
        load_baseline(path)
    assert info.value.message == (f"Baseline {path} has format version 2, newer than this repeval reads (1). "
                                  "Upgrade repeval (pip install -U repeval).")


def test_rows_with_different_settings_are_not_duplicates(tmp_path):
    path = write_json(tmp_path / "b.json", [{**GOOD, "settings": {"k": 1}}, {**GOOD, "settings": {"k": 2}}])
    assert len(load_baseline(path).rows) == 2


def test_missing_baseline_file_says_how_to_write_one(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(UserError) as info:
        load_baseline(path)
    assert info.value.message == (f"Baseline {path} does not exist. Write one from the current results with "
                                  f"`repeval check --write-baseline {path}`, or fix the path.")
