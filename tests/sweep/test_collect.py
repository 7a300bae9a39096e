"""scores.json beside every run, and `repeval collect`: the database is an index of run directories."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from repeval.cli import main
from repeval.store import DB_FILENAME


def invoke(*args, expect=0):
    result = CliRunner().invoke(main, [*args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.output


def dump(db):
    """Every row of both tables, every column but the autoincrement id, in a stable order."""
    conn = sqlite3.connect(db)
    try:
        runs = sorted(conn.execute("SELECT * FROM runs").fetchall())
        cols = [c[1] for c in conn.execute("PRAGMA table_info(scores)") if c[1] != "id"]
        scores = sorted(conn.execute(f"SELECT {', '.join(cols)} FROM scores").fetchall(), key=repr)
    finally:
        conn.close()
    return runs, scores


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A workdir with a trained run and a reference run, each probed with two tasks."""
    work = tmp_path_factory.mktemp("work")
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("REPEVAL_CACHE", str(cache))
    try:
        for encoder in ("baseline", "pixels"):
            budget = ("--budget", "128") if encoder == "baseline" else ()
            invoke("run", "--encoder", encoder, "--dataset", "digits", *budget, "--task", "knn", "--task", "linear",
                   "--workdir", str(work))
    finally:
        mp.undo()
    return work


@pytest.mark.slow
def test_every_run_writes_scores_json_beside_its_checkpoint(scored):
    runs = sorted((scored / "checkpoints").iterdir())
    assert len(runs) == 2
    for run in runs:
        record = json.loads((run / "scores.json").read_text())
        assert record["run_id"] == run.name and record["spec"] == json.loads((run / "spec.json").read_text())
        assert record["provenance"] == json.loads((run / "provenance.json").read_text())
        tasks = {(s["task"], s["metric"]) for s in record["scores"]}
        assert {("knn", "accuracy"), ("linear", "accuracy")} <= tasks
        assert (("linear", "accuracy_online") in tasks) == run.name.startswith("baseline")
        assert all(s["created_at"] and s["settings"] for s in record["scores"])


@pytest.mark.slow
def test_collect_rebuilds_a_deleted_or_damaged_database_exactly(scored):
    work = scored  # the run directories stay where they ran (a copy would move their paths)
    db = work / DB_FILENAME
    original = dump(db)
    assert original[0] and original[1]
    out = invoke("collect", "--workdir", str(work))  # collecting what is already there changes nothing
    assert "collected 2 run(s)" in out and dump(db) == original
    for suffix in ("", "-wal", "-shm"):
        (work / f"{DB_FILENAME}{suffix}").unlink(missing_ok=True)
    invoke("collect", "--workdir", str(work))
    assert dump(db) == original
    invoke("collect", "--workdir", str(work))
    assert dump(db) == original
    db.write_bytes(b"this is not a database" * 100)
    result = CliRunner().invoke(main, ["collect", "--workdir", str(work)], catch_exceptions=False)
    assert result.exit_code == 0 and "is damaged" in result.output
    assert dump(db) == original
    assert len(list(work.glob(f"{DB_FILENAME}.corrupt-*"))) == 1


@pytest.mark.slow
def test_collect_a_folder_copied_back_into_another_workdir(scored, tmp_path):
    copied = tmp_path / "from-cluster"
    shutil.copytree(scored / "checkpoints", copied)
    fresh = tmp_path / "fresh"
    out = invoke("collect", str(copied), "--workdir", str(fresh))
    assert "collected 2 run(s)" in out
    runs, scores = dump(fresh / DB_FILENAME)
    o_runs, o_scores = dump(scored / DB_FILENAME)
    assert scores == o_scores
    checkpoint = [c[1] for c in sqlite3.connect(fresh / DB_FILENAME).execute("PRAGMA table_info(runs)")]
    at = checkpoint.index("checkpoint")
    assert [r[:at] + r[at + 1:] for r in runs] == [r[:at] + r[at + 1:] for r in o_runs]
    assert all(str(copied) in r[at] for r in runs)  # where the run directory is now


@pytest.mark.slow
def test_collect_reports_unreadable_records_and_keeps_the_rest(scored, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(scored / "checkpoints", work / "checkpoints")
    bad = sorted((work / "checkpoints").iterdir())[0]
    (bad / "scores.json").write_text("{not json")
    result = CliRunner().invoke(main, ["collect", "--workdir", str(work)], catch_exceptions=False)
    assert result.exit_code == 1 and "collected 1 run(s)" in result.output
    assert "skipped:" in result.output and "not readable JSON" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_no_store_writes_only_the_run_directory(tmp_path):
    work = tmp_path / "work"
    out = invoke("run", "--encoder", "pixels", "--dataset", "digits", "--task", "knn", "--no-store",
                 "--workdir", str(work))
    assert "knn" in out and "accuracy" in out
    assert not (work / DB_FILENAME).exists()
    [run] = (work / "checkpoints").iterdir()
    assert json.loads((run / "scores.json").read_text())["scores"][0]["task"] == "knn"


@pytest.mark.slow
def test_scores_are_on_disk_as_each_task_finishes(tmp_path):
    """The second task fails while it runs (k larger than the train split: in range, but only the
    probe knows the bank's size), which stops the run after the first task: its scores are kept."""
    work = tmp_path / "work"
    out = invoke("run", "--encoder", "pixels", "--dataset", "digits", "--task", "linear", "--task", "knn",
                 "--set", "knn.k=100000", "--workdir", str(work), expect=2)
    assert "Traceback" not in out and "exceeds the 1257 train latents" in out
    [run] = (work / "checkpoints").iterdir()
    assert {s["task"] for s in json.loads((run / "scores.json").read_text())["scores"]} == {"linear"}
