"""The local launcher with real processes: 2 workers, kill -9 of a worker and of the driver,
Ctrl-C, a job failing for good, the plan's states. Each must end with the reference's scores."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
import sweep_helpers as h

from repeval.paths import host_name

pytestmark = pytest.mark.slow


def test_two_workers_finish_the_grid_and_a_rerun_skips_it(reference, sweep_cache):
    work, rows = reference
    assert len(rows) == 2  # one kNN accuracy per run
    for encoder in ("baseline", "pixels"):
        log = (h.run_dir(work, encoder) / "job.log").read_text()
        assert "== repeval sweep job" in log and "--no-store --job" in log and "== exit status 0" in log
        assert not (h.run_dir(work, encoder) / "claim.json").exists()
    before = (work / "repeval.db").stat().st_mtime_ns, h.score_rows(work)
    out = h.run_sweep(work, sweep_cache, "--jobs", "2")
    assert "Totals: 2 done, 0 incomplete, 0 to run" in out and "started" not in out
    assert h.score_rows(work) == before[1]


def test_kill_9_of_a_worker_retries_and_resumes_from_its_checkpoint(reference, sweep_cache, tmp_path):
    work = tmp_path / "work"
    driver = h.start_sweep(work, sweep_cache, "--jobs", "2", "--checkpoint-every", "0")
    try:
        claim = h.wait_for(h.mid_training(work), what="the baseline job to checkpoint mid-training")
        h.kill(claim["pid"])  # the `repeval run` process, by the pid its claim names
        out, _ = driver.communicate(timeout=600)
    finally:
        h.kill(driver.pid)
    assert driver.returncode == 0, out
    assert "failed (exit status 137" in out and "retrying" in out
    log = (h.run_dir(work, "baseline") / "job.log").read_text()
    assert "attempt 2" in log and "took over the stale claim" in log and "is gone" in log
    assert "resuming baseline-digits" in log  # from the checkpoint the killed attempt left
    assert h.score_rows(work) == reference[1]


def test_kill_9_of_the_driver_loses_nothing_and_a_rerun_resumes(reference, sweep_cache, tmp_path):
    work = tmp_path / "work"
    driver = h.start_sweep(work, sweep_cache, "--jobs", "2", "--checkpoint-every", "0")
    try:
        h.wait_for(h.mid_training(work), what="the baseline job to checkpoint mid-training")
        h.kill(driver.pid)
        driver.communicate(timeout=60)
    finally:
        h.kill(driver.pid)
    # the jobs notice that their driver died: they checkpoint, release their claims and exit
    h.wait_for(lambda: h.no_live_claims(work), timeout=120, every=0.2, what="the orphaned jobs to stop")
    step = h.last_step(h.run_dir(work, "baseline"))
    assert step is not None and step > 0
    out = h.run_sweep(work, sweep_cache, "--jobs", "2")
    if step < h.STEPS:
        assert f"checkpoint at step {step:,} of {h.STEPS:,}" in out
        assert "resuming baseline-digits" in (h.run_dir(work, "baseline") / "job.log").read_text()
    assert h.score_rows(work) == reference[1]


def test_ctrl_c_checkpoints_every_job_and_the_same_command_resumes(reference, sweep_cache, tmp_path):
    work = tmp_path / "work"
    driver = h.start_sweep(work, sweep_cache, "--jobs", "2", "--checkpoint-every", "0")
    try:
        h.wait_for(h.mid_training(work), what="the baseline job to checkpoint mid-training")
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=300)
    finally:
        h.kill(driver.pid)
    assert driver.returncode == 130, out
    assert "Stopping: asked" in out and "Interrupted" in out and "Traceback" not in out
    assert h.no_live_claims(work)
    log = (h.run_dir(work, "baseline") / "job.log").read_text()
    assert "checkpoint saved" in log or "== exit status 0" in log  # stopped cleanly, or had just finished
    out = h.run_sweep(work, sweep_cache, "--jobs", "2")
    assert h.score_rows(work) == reference[1]


def test_a_job_failing_for_good_is_reported_and_the_others_finish(sweep_cache, tmp_path):
    work = tmp_path / "work"
    grid = ("--encoder", "failing", "--encoder", "pixels", "--dataset", "digits", "--budget", "128", "--task", "knn")
    out = h.run_sweep(work, sweep_cache, "--jobs", "2", "--retries", "1", grid=grid, expect=1,
                    REPEVAL_PLUGINS="sweep_failing_plugin")
    assert "FAILED failing digits 256d seed 0" in out and "after 2 attempt(s)" in out
    assert "boom: this family always fails" in out  # the last lines of its log
    assert "1 of 2 run(s) done" in out
    assert [r[0].split("-")[0] for r in h.score_rows(work)] == ["pixels"]


def test_the_plan_shows_each_runs_state(reference, sweep_cache, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(reference[0] / "checkpoints", work / "checkpoints")
    seeds = ("--seed", "0", "--seed", "1", "--seed", "2", "--seed", "3")
    grid = tuple(a for a in h.GRID if a not in ("--seed", "0")) + seeds
    out = h.run_sweep(work, sweep_cache, "--dry-run", grid=grid)
    ids = re.findall(r"\b(baseline-digits-256-b1024-s(\d)-[0-9a-f]{12})\b", out)
    by_seed = {int(seed): run_id for run_id, seed in ids}
    assert sorted(by_seed) == [0, 1, 2, 3]
    # seed 1: an interrupted run (a checkpoint at step 5); seed 2: claimed by a live process elsewhere;
    # seed 3: a claim whose holder died on this host (taken over, so the run is simply to run)
    s1, s2, s3 = (work / "checkpoints" / by_seed[s] for s in (1, 2, 3))
    s1.mkdir()
    (s1 / "state.pt").write_bytes(b"")
    (s1 / "history.json").write_text(json.dumps({"step": [1, 2, 5]}))
    for run, host, pid in ((s2, "elsewhere", 1), (s3, host_name(), 2 ** 22 + 17)):
        run.mkdir(exist_ok=True)
        (run / "claim.json").write_text(json.dumps({"host": host, "pid": pid, "started_at": "earlier",
                                                    "heartbeat": time.time(), "token": "t"}))
    out = h.run_sweep(work, sweep_cache, "--dry-run", grid=grid)
    lines = {run_id: next(line for line in out.splitlines() if run_id in line) for run_id in by_seed.values()}
    assert lines[by_seed[0]].split()[0] == "done"
    assert lines[by_seed[1]].split()[0] == "incomplete" and "checkpoint at step 5 of 16" in lines[by_seed[1]]
    assert "claimed elsewhere" in lines[by_seed[2]] and "host elsewhere" in lines[by_seed[2]]
    assert lines[by_seed[3]].split()[:2] == ["to", "run"]
    assert "Totals: 2 done, 1 incomplete, 4 to run, 1 claimed elsewhere (of 8)." in out
    assert not (work / "repeval.db").exists() and not (work / "sweeps").exists()  # a dry run changes nothing
