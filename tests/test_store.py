"""The results store: round trips, upserts, NaN, filters, formats, schema versions, concurrency."""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from repeval.errors import UserError
from repeval.results import format_results
from repeval.store import DB_FILENAME, SCHEMA_VERSION, Score, Store
from repeval.summary import summarise


def spec(encoder="acai", dataset="mnist", latent_dim=32, seed=0, budget=16384, **extra):
    return {"encoder": encoder, "dataset": dataset, "latent_dim": latent_dim, "seed": seed,
            "budget": budget, "hparams": {"advweight": 0.5}, **extra}


@pytest.fixture
def store(tmp_path):
    with Store.in_workdir(tmp_path / "work") as s:
        yield s


def test_in_workdir_creates_the_database_file(tmp_path):
    with Store.in_workdir(tmp_path / "a" / "b") as s:
        assert s.path == tmp_path / "a" / "b" / DB_FILENAME
    assert (tmp_path / "a" / "b" / DB_FILENAME).is_file()
    conn = sqlite3.connect(tmp_path / "a" / "b" / DB_FILENAME)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_run_round_trip_and_upsert_keeps_created_at(store):
    store.record_run("r1", spec(), {"git": "abc"}, "/ckpt/r1")
    [run] = store.runs()
    assert {k: run[k] for k in ("run_id", "encoder", "dataset", "latent_dim", "seed", "budget", "spec",
                                "provenance", "checkpoint")} == {
        "run_id": "r1", "encoder": "acai", "dataset": "mnist", "latent_dim": 32, "seed": 0,
        "budget": 16384, "spec": spec(), "provenance": {"git": "abc"}, "checkpoint": "/ckpt/r1"}
    created = run["created_at"]
    store.record_run("r1", spec(), {"git": "def"}, None)
    [run] = store.runs()
    assert (run["provenance"], run["checkpoint"], run["created_at"]) == ({"git": "def"}, None, created)


def test_record_run_needs_the_identifying_spec_keys(store):
    with pytest.raises(ValueError, match="spec lacks seed, budget"):
        store.record_run("r1", {"encoder": "acai", "dataset": "mnist", "latent_dim": 32}, {}, None)


def test_scores_round_trip_copy_run_columns(store):
    store.record_run("r1", spec(seed=3), {}, None)
    store.add_scores("r1", [Score("kmeans", "accuracy", 0.75, "map", {"nredo": 10, "k": 10},
                                  {"mapping": [1, 0]}, 2.5)])
    [row] = store.scores()
    del row["created_at"]
    assert row == {"dataset": "mnist", "encoder": "acai", "latent": "map", "latent_dim": 32, "seed": 3,
                   "budget": 16384, "task": "kmeans", "metric": "accuracy", "value": 0.75,
                   "settings": {"k": 10, "nredo": 10}, "details": {"mapping": [1, 0]},
                   "wall_time_s": 2.5, "run_id": "r1"}


def test_add_scores_needs_a_recorded_run(store):
    with pytest.raises(ValueError, match="run 'nope' is not in"):
        store.add_scores("nope", [Score("knn", "accuracy", 0.5, "map", {})])


def test_same_key_replaces_and_other_settings_or_latent_add(store):
    store.record_run("r1", spec(), {}, None)
    store.add_scores("r1", [Score("knn", "accuracy", 0.5, "map", {"k": 20, "t": 0.07})])
    # Same settings in another key order: the same score, replaced.
    store.add_scores("r1", [Score("knn", "accuracy", 0.625, "map", {"t": 0.07, "k": 20}, {"n": 1})])
    store.add_scores("r1", [Score("knn", "accuracy", 0.25, "map", {"k": 10, "t": 0.07}),
                            Score("knn", "accuracy", 0.375, "mean", {"k": 20, "t": 0.07})])
    got = [(r["latent"], r["settings"]["k"], r["value"], r["details"]) for r in store.scores()]
    assert sorted(got) == [("map", 10, 0.25, {}), ("map", 20, 0.625, {"n": 1}), ("mean", 20, 0.375, {})]


def test_nan_is_stored_as_null_and_read_back_as_nan(store):
    store.record_run("r1", spec(), {}, None)
    store.add_scores("r1", [Score("interpolation", "smoothness", math.nan, "map", {})])
    [row] = store.scores()
    assert math.isnan(row["value"])
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT value FROM scores").fetchall() == [(None,)]
    conn.close()


def test_a_failing_write_adds_nothing(store):
    store.record_run("r1", spec(), {}, None)
    with pytest.raises(TypeError):
        store.add_scores("r1", [Score("knn", "accuracy", 0.5, "map", {}),
                                Score("knn", "nmi", 0.5, "map", {"bad": object()})])
    assert store.scores() == []


def fill(store):
    """Two datasets, two encoders, two seeds; values encode their coordinates."""
    for dataset in ("mnist", "cifar10"):
        for encoder in ("vae", "acai"):
            for seed in (1, 0):
                run_id = f"{encoder}-{dataset}-s{seed}"
                store.record_run(run_id, spec(encoder, dataset, seed=seed), {}, None)
                store.add_scores(run_id, [Score(task, metric, seed + 0.5, "map", {})
                                          for task, metric in (("kmeans", "nmi"), ("kmeans", "accuracy"),
                                                               ("knn", "accuracy"))])


def test_scores_are_in_stable_order(store):
    fill(store)
    got = [(r["dataset"], r["encoder"], r["task"], r["metric"], r["seed"]) for r in store.scores(dataset="cifar10")]
    assert got == [("cifar10", e, t, m, s) for e in ("acai", "vae")
                   for t, m in (("kmeans", "accuracy"), ("kmeans", "nmi"), ("knn", "accuracy"))
                   for s in (0, 1)]


def test_filters_take_values_or_lists(store):
    fill(store)
    assert [r["run_id"] for r in store.scores(encoder="vae", task="knn", seed=1)] == ["vae-cifar10-s1", "vae-mnist-s1"]
    assert len(store.scores(metric=["nmi", "accuracy"], dataset="mnist", latent_dim=32)) == 12
    assert store.scores(latent_dim=64) == []
    assert store.scores(run_id=[]) == []
    assert [r["run_id"] for r in store.runs(encoder="acai", seed=[0])] == ["acai-cifar10-s0", "acai-mnist-s0"]


def test_newer_schema_is_refused_with_upgrade_advice(tmp_path):
    path = tmp_path / DB_FILENAME
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UserError, match=rf"{DB_FILENAME} has schema version 2, newer .* Upgrade repeval"):
        Store(path)


def test_a_file_that_is_not_a_database_is_a_user_error(tmp_path):
    path = tmp_path / DB_FILENAME
    path.write_bytes(b"not a database at all, just some text" * 10)
    with pytest.raises(UserError, match="The results database .* is damaged .*Move it away"):
        Store(path)


ROWS = [
    {"dataset": "mnist", "encoder": "acai", "latent": "map", "latent_dim": 32, "seed": 0, "budget": 16384,
     "task": "knn", "metric": "accuracy", "value": 0.98125, "settings": {"k": 20, "temperature": 0.07},
     "details": {}, "wall_time_s": 1.5, "run_id": "acai-mnist-32", "created_at": "2024-01-02T03:04:05+00:00"},
    {"dataset": "lines", "encoder": "vae", "latent": "mean", "latent_dim": 16, "seed": 1, "budget": 0,
     "task": "interpolation", "metric": "smoothness", "value": math.nan,
     "settings": {"n_pairs": 100, "n_steps": 16, "threshold": 0.5}, "details": {"note": "a,b"},
     "wall_time_s": 0.25, "run_id": "vae-lines-16", "created_at": "2024-01-02T03:04:06+00:00"},
]


def test_table_format_is_aligned_and_abbreviates_settings():
    assert format_results(ROWS, "table").splitlines() == [
        "dataset  encoder  latent  latent_dim  budget  seed  task           metric       value  settings",
        "mnist    acai     map             32   16384     0  knn            accuracy    0.9812  k=20,temperature=0.07",
        "lines    vae      mean            16       0     1  interpolation  smoothness     nan  n_pairs=100,n_steps=16,thresh...",  # noqa: E501 (an expected table line)
    ]
    assert format_results([], "table") == "No scores stored."


def test_csv_format_has_every_column():
    text = format_results(ROWS, "csv")
    assert text.splitlines()[0] == ("dataset,encoder,latent,latent_dim,seed,budget,task,metric,value,settings,"
                                    "details,wall_time_s,run_id,created_at")
    assert list(csv.reader(io.StringIO(text)))[1:] == [
        ["mnist", "acai", "map", "32", "0", "16384", "knn", "accuracy", "0.98125",
         '{"k":20,"temperature":0.07}', "{}", "1.5", "acai-mnist-32", "2024-01-02T03:04:05+00:00"],
        ["lines", "vae", "mean", "16", "1", "0", "interpolation", "smoothness", "",
         '{"n_pairs":100,"n_steps":16,"threshold":0.5}', '{"note":"a,b"}', "0.25", "vae-lines-16",
         "2024-01-02T03:04:06+00:00"],
    ]


def test_json_format_is_strict_with_null_for_nan():
    text = format_results(ROWS, "json")
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert data == [{**ROWS[0]}, {**ROWS[1], "value": None}]


def test_summary_format_shows_mean_std_and_n_over_seeds():
    rows = [{**ROWS[0], "seed": 0, "value": 0.25}, {**ROWS[0], "seed": 1, "value": 0.75}, ROWS[1]]
    assert format_results(summarise(rows), "summary").splitlines() == [
        "dataset  encoder  latent  latent_dim  budget  task           metric        mean     std  ci95             n  settings",  # noqa: E501 (an expected table line)
        "lines    vae      mean            16       0  interpolation  smoothness     nan       -  -                1  n_pairs=100,n_steps=16,thresh...",  # noqa: E501 (an expected table line)
        "mnist    acai     map             32   16384  knn            accuracy    0.5000  0.2500  0.0000-1.0000 t  2  k=20,temperature=0.07",  # noqa: E501 (an expected table line)
    ]


def test_unknown_format_is_a_user_error():
    with pytest.raises(UserError, match="Unknown results format 'xml'; choose one of: table, csv, json, summary"):
        format_results(ROWS, "xml")


def test_summarise_mean_population_std_and_seeds():
    def row(seed, value, settings=None, encoder="acai"):
        return {"dataset": "mnist", "encoder": encoder, "latent": "map", "latent_dim": 32, "budget": 64,
                "task": "kmeans", "metric": "accuracy", "seed": seed, "value": value,
                "settings": settings or {"nredo": 10}}

    rows = [row(2, 0.75), row(0, 0.25), row(1, 0.5, {"nredo": 1}), row(0, 1.0, encoder="vae"),
            row(1, math.nan, encoder="vae")]
    got = summarise(rows)
    assert [(g["encoder"], g["settings"], g["mean"], g["std"], g["n"], g["seeds"]) for g in got[:2]] == [
        ("acai", {"nredo": 10}, 0.5, 0.25, 2, [0, 2]),
        ("acai", {"nredo": 1}, 0.5, 0.0, 1, [1]),
    ]
    assert (got[2]["encoder"], math.isnan(got[2]["mean"]), math.isnan(got[2]["std"]), got[2]["n"],
            got[2]["seeds"]) == ("vae", True, True, 2, [0, 1])
    assert set(got[0]) == {"dataset", "encoder", "latent", "latent_dim", "budget", "task", "metric",
                           "settings", "mean", "std", "n", "seeds", "probe_seeds", "probe_std", "ci",
                           "model_means"}


def test_summarise_pools_probe_seeds_that_follow_the_run_seed():
    def row(seed, value, probe_seed):
        return {"dataset": "mnist", "encoder": "acai", "latent": "map", "latent_dim": 32, "budget": 64,
                "task": "kmeans", "metric": "accuracy", "seed": seed, "value": value,
                "settings": {"restarts": 20, "seed": probe_seed}}

    got = summarise([row(0, 0.25, 0), row(1, 0.75, 1), row(2, 0.5, 7)])
    assert [(g["settings"], g["mean"], g["n"], g["seeds"]) for g in got] == [
        ({"restarts": 20, "seed": "run seed"}, 0.5, 2, [0, 1]),
        ({"restarts": 20, "seed": 7}, 0.5, 1, [2]),
    ]


WORKERS = 4
BATCHES = 50
PER_BATCH = 8


def _write_concurrently(workdir: str, worker: int, barrier) -> None:
    """One writer process: wait for all, then open the (possibly new) store and write many batches.

    The short pause between transactions stands for the probe work between real writes; it
    lets the writers' transactions interleave instead of one writer holding the lock throughout.
    """
    barrier.wait()
    with Store.in_workdir(Path(workdir)) as store:
        store.record_run("shared", spec(), {"writer": worker}, None)
        store.record_run(f"w{worker}", spec(seed=worker), {}, None)
        for batch in range(BATCHES):
            store.add_scores(f"w{worker}", [Score("knn", f"m{batch}", batch + i / 10, "map", {"i": i})
                                            for i in range(PER_BATCH)])
            store.add_scores("shared", [Score("knn", "accuracy", float(batch), "map",
                                              {"writer": worker, "batch": batch})])
            time.sleep(0.002)


def test_concurrent_writers_lose_no_row(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_write_concurrently, args=(str(tmp_path), w, barrier)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0] * WORKERS
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    with Store.in_workdir(tmp_path) as store:
        assert len(store.runs()) == WORKERS + 1
        for w in range(WORKERS):
            got = {(r["metric"], r["settings"]["i"], r["value"]) for r in store.scores(run_id=f"w{w}")}
            assert got == {(f"m{b}", i, b + i / 10) for b in range(BATCHES) for i in range(PER_BATCH)}
        shared = {(r["settings"]["writer"], r["settings"]["batch"]) for r in store.scores(run_id="shared")}
        assert shared == {(w, b) for w in range(WORKERS) for b in range(BATCHES)}


def test_scores_that_are_no_numbers_are_refused_before_anything_is_written(tmp_path):
    with Store(tmp_path / DB_FILENAME) as store:
        store.record_run("r1", {"encoder": "e", "dataset": "d", "latent_dim": 2, "seed": 0, "budget": 0}, {}, None)
        good = Score("knn", "accuracy", 0.5, "map", {})
        for bad in (Score("knn", "accuracy", float("inf"), "map", {}), Score("knn", "accuracy", "0.5", "map", {}),
                    Score("knn", "", 0.5, "map", {}), Score("knn", "accuracy", True, "map", {}),
                    Score("knn", "accuracy", 0.5, "map", settings=[1])):
            with pytest.raises(ValueError, match="run 'r1'"):
                store.add_scores("r1", [good, bad])
        assert store.scores() == []


def test_the_pipeline_never_stores_a_score_that_could_not_be_computed_as_a_number():
    """An undefined probe result (NaN: the lines benchmark's smoothness when no interpolation
    is defined) is kept as "no number", an infinite or non-numeric one refused; both with a
    line saying why."""
    from repeval.pipeline import computable
    from repeval.probes import Result
    from repeval.specs import RunSpec

    spec = RunSpec(encoder="acai", dataset="lines", latent_dim=64, depth=16, budget=64, seed=0)
    said = []
    kept = computable(spec, "interpolation", Result({"mean_distance": 0.01, "smoothness": float("nan"),
                                                     "other": float("inf"), "text": "high"},
                                                    {"n_undefined": 256}), said.append)
    assert kept.keys() == {"mean_distance", "smoothness"} and kept["mean_distance"] == 0.01
    assert math.isnan(kept["smoothness"])
    assert len(said) == 3 and "interpolation smoothness came out as nan" in said[0]
    assert "256 of the interpolations have no defined value" in said[0] and "stored as undefined" in said[0]
    assert "other came out as inf" in said[1] and "it is not stored" in said[1]
    assert "text came out as 'high'" in said[2] and "it is not stored" in said[2]
