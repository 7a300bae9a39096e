"""Fault injection with real processes: kill -9 at random moments (seeded: ``REPEVAL_FAULT_SEED``)
of ``train``, ``run`` (in training, in probing, in the store's writes), ``report`` and ``check``,
then the same command again; what is left must equal an uninterrupted run's: the store's rows
(timestamps aside), the report's score tables, the baseline file byte for byte, the trained
weights, optimiser and RNG states bit for bit. SIGTERM and SIGINT during training checkpoint
and resume exactly; eight concurrent ``run`` processes on one workdir lose no row.

Kill moments come from the seeded generator: a delay drawn within the command's measured
duration, or a watched file event (the n-th new state file of a training, the n-th change of
the database's write-ahead log) plus a drawn delay. Each scenario counts the kills that landed
on a live process; together at least 20 per run (``test_at_least_twenty_kills_landed``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultlib import (
    RUN,
    TRAIN,
    After,
    Grows,
    Kill,
    NewFiles,
    attempt,
    chain,
    model_state,
    rng_for,
    same_state,
    score_tables,
    store_rows,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LANDED: dict[str, int] = {}  # scenario -> kills that landed, for the total
# per-scenario floors of the kills that must land (of 5, 11, 5, 7 tried); the total of at least 20 is
# asserted separately. check's time-based kills aim at a command that lives tens of milliseconds and
# often ends first on a fast machine; its two kills inside the baseline's write always land.
MINIMUM = {"train": 4, "run": 8, "report": 4, "check": 2}


def landed(scenario: str, kills: list[Kill]) -> int:
    n = sum(k.killed for k in kills)
    LANDED[scenario] = n
    detail = "; ".join(f"{k.trigger} -> {'killed' if k.killed else 'ended first'} at {k.after_s:.2f} s" for k in kills)
    print(f"{scenario}: {n} of {len(kills)} kills landed: {detail}")
    assert n >= MINIMUM[scenario], f"only {n} of {len(kills)} kills of {scenario} landed: {detail}"
    return n


def run_dir(work: Path, budget: int) -> Path:
    """The baseline's run directory of ``budget`` images in ``work`` (one per budget)."""
    found = [p for p in (work / "checkpoints").glob(f"baseline-digits-256-b{budget}-s0-*") if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def consistent(work: Path):
    """After a crash: every run directory that holds a checkpoint reads back whole (its state
    matches the committed sha256, its spec its name), or holds none yet."""
    from repeval.checkpoint import Checkpoint

    def check():
        for path in (work / "checkpoints").glob("*"):
            found = Checkpoint(path)
            if found.exists():
                found.verify()
    return check


# ------------------------------------------------------------------------------ train
def test_kill_9_during_training_resumes_to_the_same_weights(launcher, reference, tmp_path):
    """Killed at random moments around its checkpoint commits (between a state file and the
    manifest that names it, or just after), training resumes from the last commit and ends
    with exactly the weights, optimiser and RNG states of the uninterrupted run."""
    rng = rng_for("train")
    work = tmp_path / "work"
    args = [*TRAIN, "--checkpoint-every", "0.001", "--workdir", work]
    folder = work / "checkpoints"
    triggers = [NewFiles(folder, "baseline-*-b1024-*/state.*.pt", rng.randint(1, 3), rng.uniform(0, 0.02))
                for _ in range(5)]
    kills = chain(launcher, args, triggers, check=lambda: consistent(work)() if folder.exists() else None)
    landed("train", kills)
    for budget in (1024, 64):  # the run and its snapshot
        assert same_state(model_state(run_dir(work, budget)), model_state(run_dir(reference.train_work, budget)))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_checkpoint_and_resume_exactly(launcher, reference, tmp_path, signum):
    """A scheduler's SIGTERM or a Ctrl-C in the middle of training (the periodic checkpoint is
    5 minutes away) saves a checkpoint and stops with one line; the rerun resumes it to the
    uninterrupted run's exact state."""
    work = tmp_path / "work"
    args = [*TRAIN, "--workdir", work]
    proc = launcher.start(args)
    snapshot = NewFiles(work / "checkpoints", "baseline-*-b64-*/checkpoint.json", 1)  # training is under way
    snapshot.arm(proc)
    while not snapshot.fired(proc):
        assert proc.alive(), proc.stderr
        time.sleep(0.002)
    os.kill(proc.pid, signum)
    assert proc.wait() == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Interrupted at step ") and "checkpoint saved" in last, proc.stderr
    from repeval.checkpoint import Checkpoint

    saved = Checkpoint(run_dir(work, 1024))
    assert 0 < saved.manifest["step"] < 16 and not saved.is_complete()
    assert f"step {saved.manifest['step']:,} of 16" in last
    launcher.run(args)
    assert same_state(model_state(run_dir(work, 1024)), model_state(run_dir(reference.train_work, 1024)))


def test_ctrl_c_of_the_real_command_line_process(reference, tmp_path):
    """The same through ``python -m repeval`` started afresh (no fork server): SIGINT ends it
    with exit 2 and a readable checkpoint; the second start finishes it to the uninterrupted
    weights."""
    work = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPEVAL_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
               REPEVAL_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "repeval", *map(str, TRAIN), "--workdir", str(work)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    snapshot = work / "checkpoints"
    deadline = time.monotonic() + 300
    while not (snapshot.exists() and any(snapshot.glob("baseline-*-b64-*/checkpoint.json"))):  # training is on
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("Error: Interrupted at step "), err[-2000:]
    consistent(work)()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert same_state(model_state(run_dir(work, 1024)), model_state(run_dir(reference.train_work, 1024)))


# ------------------------------------------------------------------------------ run
def test_kill_9_during_run_training_probing_and_store_writes(launcher, reference, tmp_path):
    """``run`` killed at drawn moments of its whole course, at the n-th write of the store
    (the kill lands in the write or right after it) and in the probing after a write; the
    reruns leave the store, and the report made from it, equal to the uninterrupted run's."""
    rng = rng_for("run")
    work = tmp_path / "work"
    wal = work / "repeval.db-wal"
    total = reference.seconds["run"]
    triggers = ([After(rng.uniform(0.05, 0.35 * total)) for _ in range(4)]
                + [Grows(wal, rng.randint(1, 6)) for _ in range(4)]
                + [Grows(wal, rng.randint(1, 6), rng.uniform(0.01, 0.25)) for _ in range(3)])
    rng.shuffle(triggers)
    args = [*RUN, "--workdir", work]
    kills = chain(launcher, args, triggers, check=lambda: consistent(work)() if work.exists() else None)
    landed("run", kills)
    assert store_rows(work) == store_rows(reference.work)
    launcher.run(["report", "--workdir", work, "--out", tmp_path / "report.html"])
    assert score_tables((tmp_path / "report.html").read_text()) == score_tables(reference.report.read_text())


# ------------------------------------------------------------------------------ report, check
def test_kill_9_during_report_leaves_the_old_report_or_none(launcher, reference, tmp_path):
    rng = rng_for("report")
    work = tmp_path / "work"
    shutil.copytree(reference.work, work)
    stored = store_rows(work)
    out = tmp_path / "report.html"
    last: dict[str, bytes | None] = {"whole": None}

    def check():  # the report is replaced in one step: absent, or the last one written whole
        now = out.read_bytes() if out.exists() else None
        assert now == last["whole"], "a killed report left a partial file"

    args = ["report", "--workdir", work, "--out", out]
    kills = []
    for i in range(5):
        kills.append(attempt(launcher, args, After(rng.uniform(0.02, 0.95 * reference.seconds["report"])), check=check))
        if i == 2:  # from here on an old report exists, which a killed rewrite must leave intact
            launcher.run(args)
            last["whole"] = out.read_bytes()
    landed("report", kills)
    launcher.run(args)
    assert score_tables(out.read_text()) == score_tables(reference.report.read_text())
    assert store_rows(work) == stored


def test_kill_9_during_check_leaves_no_partial_baseline(launcher, reference, tmp_path):
    rng = rng_for("check")
    work = tmp_path / "work"
    shutil.copytree(reference.work, work)
    stored = store_rows(work)
    written = tmp_path / "baseline.json"
    expected = reference.baseline.read_bytes()

    def check():
        assert not written.exists() or written.read_bytes() == expected, "a killed check left a partial baseline"

    write = ["check", "--workdir", work, "--write-baseline", written]
    short = 0.35 * reference.seconds["check"]  # the command lives a few tens of milliseconds
    in_write = NewFiles(tmp_path, ".baseline.json.*.tmp", 1)  # the file being written, before its rename
    kills = [attempt(launcher, write, After(rng.uniform(0.0, short)), check=check) for _ in range(3)]
    kills += [attempt(launcher, write, in_write, check=check, poll=0.0002) for _ in range(2)]
    kills += [attempt(launcher, ["check", "--workdir", work, "--baseline", reference.baseline],
                      After(rng.uniform(0.0, short))) for _ in range(2)]
    landed("check", kills)
    launcher.run(["check", "--workdir", work, "--write-baseline", written])
    assert written.read_bytes() == expected
    passed = launcher.run(["check", "--workdir", work, "--baseline", reference.baseline])
    assert passed.stdout.strip().splitlines()[-1].startswith("PASS")
    assert store_rows(work) == stored


# ------------------------------------------------------------------------------ concurrency
def test_eight_concurrent_runs_on_one_workdir_lose_no_row(launcher, tmp_path):
    work = tmp_path / "work"
    procs = [launcher.start(["run", "--encoder", "pixels", "--task", "knn", "--task", "kmeans", "--set",
                             "kmeans.restarts=2", "--seed", seed, "--json", "--workdir", work, *RUN[-4:]])
             for seed in range(8)]
    codes = [p.wait() for p in procs]
    assert codes == [0] * 8, [p.stderr[-1000:] for p in procs]
    printed = [row for p in procs for row in json.loads(p.stdout)]
    rows = store_rows(work)
    assert len(rows["runs"]) == 8 and len(rows["scores"]) == 8 * 4 == len(printed)
    key = ("run_id", "task", "metric", "value")
    assert sorted(tuple(r[k] for k in key) for r in rows["scores"]) == sorted(tuple(r[k] for k in key)
                                                                               for r in printed)


def test_at_least_twenty_kills_landed():
    """The total over the scenarios above (when they all ran in this session)."""
    if set(LANDED) != set(MINIMUM):
        pytest.skip(f"only {sorted(LANDED)} of the kill scenarios ran")
    assert sum(LANDED.values()) >= 20, LANDED
