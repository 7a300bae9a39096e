"""The sweep driver: plan, prepare, dispatch, retry, collect, report.

1. The grid's cells become jobs (:mod:`repeval.sweep.jobs`), one per run directory.
2. The plan is printed: each run's state (done, incomplete, to run, claimed elsewhere) and
   the totals; ``--dry-run`` stops here.
3. Finished runs are collected into ``repeval.db``; each dataset the remaining jobs need is
   loaded once, so its compact cache exists before N jobs would each build it.
4. The launcher runs the jobs; the driver polls them, shows one progress line (done,
   running, failed, ETA from the measured run times), retries a failed job up to
   ``--retries`` times (it resumes from its last checkpoint) and collects each finished one.
5. A job that failed for good is reported with the last lines of its log; the sweep exits 1
   once the others are done. Ctrl-C (or SIGTERM) asks every job to checkpoint and stop; a
   second Ctrl-C kills them. Running the same sweep again skips what is done and resumes
   the rest.

The driver is the only writer of ``repeval.db``; jobs write their run directories.
``<workdir>/sweeps/<sweep id>/`` keeps the plan, an event log and the job payloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click

from repeval.jsonio import canonical_json
from repeval.paths import atomic_write_text
from repeval.sweep import jobs as jobs_mod
from repeval.sweep.claims import CLAIMED_ELSEWHERE_EXIT
from repeval.sweep.grid import Group, cells
from repeval.sweep.registry import LAUNCHERS, Handle, LaunchOptions
from repeval.sweep.worker import last_lines

DIVERGED_EXIT = 3  # repeval.errors.TrainingDiverged: deterministic, so not retried
POLL_S = 0.25
LOG_TAIL = 15


@dataclass
class SweepRequest:
    groups: list[Group]
    launcher: str
    options: LaunchOptions
    data_dir: Path | None = None
    allow_unverified: bool = False
    checkpoint_every: float | None = None  # the trainer's default when None
    precision: str = "auto"  # resolved once, here, for the launcher's device: each job gets fp32 or bf16
    dry_run: bool = False


def sweep_id(job_list: list[jobs_mod.Job]) -> str:
    key = canonical_json(sorted([j.run_id, [list(map(list, i.expect)) for i in j.invocations]] for j in job_list))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """One display for the whole sweep: a bar on a terminal, else a line per event."""

    def __init__(self, total: int, done: int, events_log: Path, capacity: int = 1):
        self.total, self.done, self.failed, self.claimed = total, done, 0, 0
        self.capacity = capacity
        self.running: dict[Handle, float] = {}
        self.durations: list[float] = []
        self.pending = 0
        self.events_log = events_log
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, unit="run", dynamic_ncols=True, file=sys.stderr,
                            bar_format="sweep: {n_fmt}/{total_fmt} done |{bar:24}|{postfix}")

    def eta(self) -> str:
        if not self.durations:
            return "after the first run" if self.pending or self.running else "-"
        mean = sum(self.durations) / len(self.durations)
        now = time.monotonic()
        left = self.pending * mean + sum(max(0.0, mean - (now - t)) for t in self.running.values())
        return _fmt_s(left / max(1, min(self.capacity, self.pending + len(self.running))))

    def status(self, with_done: bool = True) -> str:
        extra = f", {self.claimed} claimed elsewhere" if self.claimed else ""
        done = f"{self.done}/{self.total} done, " if with_done else ""
        return f"{done}{len(self.running)} running, {self.failed} failed{extra}, ETA {self.eta()}"

    def event(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        line = f"[{stamp}] {message} ({self.status()})"
        with open(self.events_log, "a", encoding="utf-8") as f:
            f.write(f"{datetime.now(timezone.utc).isoformat(timespec='milliseconds')} {message}\n")
        if self.bar is not None:
            self.bar.n = self.done
            self.bar.set_postfix_str(self.status(with_done=False), refresh=False)
            self.bar.write(f"[{stamp}] {message}", file=sys.stderr)
            self.bar.refresh()
        else:
            click.echo(line, err=True)

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.status(with_done=False))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plan(request: SweepRequest, session) -> tuple[list[jobs_mod.Job], dict[str, tuple[str, str]]]:
    job_list = jobs_mod.build_jobs(cells(request.groups), session.device, request.precision)
    states = {j.run_id: jobs_mod.state(j, request.options.workdir) for j in job_list}
    return job_list, states


def print_plan(job_list, states, session, echo: Callable[[str], Any], sid: str) -> None:
    counts: dict[str, int] = {}
    for j in job_list:
        counts[states[j.run_id][0]] = counts.get(states[j.run_id][0], 0) + 1
    echo(f"Sweep {sid}: {len(job_list)} run(s); launcher {session.description}.")
    width = max(len(j.run_id) for j in job_list)
    for j in job_list:
        st, detail = states[j.run_id]
        echo(f"  {st:<17} {j.run_id:<{width}}  {', '.join(j.tasks)}" + (f"  ({detail})" if detail else ""))
    order = (jobs_mod.DONE, jobs_mod.INCOMPLETE, jobs_mod.TO_RUN, jobs_mod.CLAIMED)
    echo("Totals: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in order) + f" (of {len(job_list)}).")


def _prepare_data(job_list, request: SweepRequest, echo) -> None:
    """Load each dataset once (building its compact cache) before the jobs start."""
    from repeval import data

    options = data.DataOptions(data_dir=request.data_dir, allow_unverified=request.allow_unverified)
    for name in dict.fromkeys(j.spec["dataset"] for j in job_list):
        entry = data.get(name)
        if entry.generated:
            continue  # nothing on disk to prepare
        t0 = time.perf_counter()
        data.load(name, options)
        echo(f"dataset {name} ready ({time.perf_counter() - t0:.1f} s)")


def run_sweep(request: SweepRequest, echo: Callable[[str], Any] = click.echo) -> int:
    """Plan and run the sweep; returns the exit status (0 all done, 1 a job failed for good,
    130 interrupted)."""
    options = request.options
    options.workdir = Path(options.workdir).resolve()
    launcher = LAUNCHERS.get(request.launcher)
    session = launcher.open(options)  # validates the options; starts nothing
    try:
        job_list, states = plan(request, session)
        sid = sweep_id(job_list)
        options.sweep_dir = options.workdir / "sweeps" / sid
        print_plan(job_list, states, session, echo, sid)
        if request.dry_run:
            return 0
        return _execute(request, session, job_list, states, sid, echo)
    finally:
        session.close()


def _payload(job: jobs_mod.Job, request: SweepRequest, session, attempt: int) -> dict[str, Any]:
    data_dir = str(Path(request.data_dir).resolve()) if request.data_dir else None
    return {"job": job.to_dict(), "attempt": attempt, "cwd": os.getcwd(), "env": {},
            "options": {"workdir": str(request.options.workdir), "data_dir": data_dir,
                        "allow_unverified": request.allow_unverified, "threads": session.threads,
                        "checkpoint_every": request.checkpoint_every}}


def _execute(request, session, job_list, states, sid, echo) -> int:
    from repeval.sweep.collect import collect, open_store

    options = request.options
    sweep_dir = options.sweep_dir
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / "plan.json", json.dumps(
        {"sweep": sid, "launcher": request.launcher, "description": session.description,
         "jobs": [j.to_dict() for j in job_list]}, indent=1, sort_keys=True, default=str))
    done_ids = [j.run_id for j in job_list if states[j.run_id][0] == jobs_mod.DONE]
    todo = [j for j in job_list if states[j.run_id][0] in (jobs_mod.INCOMPLETE, jobs_mod.TO_RUN)]
    claimed = [j for j in job_list if states[j.run_id][0] == jobs_mod.CLAIMED]
    store, _ = open_store(options.workdir, log=lambda m: echo(m))
    try:
        if done_ids:
            collect(options.workdir, [j.run_dir(options.workdir) for j in job_list if j.run_id in done_ids],
                    store=store)
        if todo:
            _prepare_data(todo, request, echo)
        progress = Progress(len(job_list), len(done_ids), sweep_dir / "events.log", session.capacity)
        progress.claimed = len(claimed)
        failed, interrupted = _dispatch(todo, request, session, progress, store, echo)
        progress.close()
        # a last pass: whatever finished (also after an interruption) is in the store
        collect(options.workdir, [j.run_dir(options.workdir) for j in job_list if jobs_mod.is_done(j, options.workdir)],
                store=store)
        rows = store.scores(run_id=[j.run_id for j in job_list])
    finally:
        store.close()
    return _report(job_list, failed, interrupted, claimed, rows, options.workdir, echo)


def _dispatch(todo, request, session, progress: Progress, store, echo) -> tuple[dict[str, dict], bool]:
    """Run ``todo`` through ``session``; returns (failed jobs by run id, interrupted)."""
    from repeval.sweep.collect import collect_run

    options = request.options
    pending = deque(todo)
    attempts = {j.run_id: 0 for j in todo}
    running: dict[Handle, tuple[jobs_mod.Job, float]] = {}
    failed: dict[str, dict[str, Any]] = {}
    stopping = killing = False
    progress.pending = len(pending)

    stop = {"asked": 0}  # Ctrl-C / SIGTERM count: the loop acts on it between polls (never mid-start)

    def on_signal(signum, frame):
        stop["asked"] += 1
        if stop["asked"] > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt

    if pending:
        session.begin()  # first: starting Ray may set handlers of its own
    old_handlers = ({s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
                    if _main_thread() else {})
    try:
        while pending or running:
            try:
                if stop["asked"] and not stopping:
                    stopping = True
                    pending.clear()
                    progress.pending = 0
                    click.echo(f"\nStopping: asked {len(running)} running job(s) to checkpoint and stop (Ctrl-C "
                               "again kills them). Run the same sweep again to resume.", err=True)
                    for handle in running:
                        handle.stop()
                if not stopping:
                    free = min(session.capacity - len(running), len(pending))
                    batch = [pending.popleft() for _ in range(max(0, free))]
                    if batch:
                        for job in batch:
                            attempts[job.run_id] += 1
                        handles = session.start([_payload(j, request, session, attempts[j.run_id]) for j in batch])
                        now = time.monotonic()
                        for job, handle in zip(batch, handles):
                            running[handle] = (job, now)
                            progress.running[handle] = now
                        progress.pending = len(pending)
                        for job, handle in zip(batch, handles):
                            n = attempts[job.run_id]
                            progress.event(f"started {job.label} [{job.run_id}]"
                                           + (f", attempt {n} of {options.retries + 1}" if n > 1 else "")
                                           + f" on {handle.where}")
                time.sleep(POLL_S)
                for handle in list(running):
                    code = handle.poll()
                    if code is None:
                        continue
                    job, t0 = running.pop(handle)
                    progress.running.pop(handle, None)
                    elapsed = time.monotonic() - t0
                    run_dir = job.run_dir(options.workdir)
                    complete = code == 0 and jobs_mod.is_done(job, options.workdir)
                    if complete:
                        collect_run(store, run_dir)
                        progress.done += 1
                        progress.durations.append(elapsed)
                        progress.event(f"done {job.label} in {_fmt_s(elapsed)}")
                        continue
                    if code == CLAIMED_ELSEWHERE_EXIT:
                        progress.claimed += 1
                        progress.event(f"{job.label}: claimed by another process meanwhile; left to it")
                        continue
                    why = (f"exit status {code}" if code else "exit status 0 but scores missing from scores.json")
                    if handle.failure:
                        why += f"; {handle.failure}"
                    if stopping:
                        progress.event(f"stopped {job.label} ({why}); it resumes on the next run of this sweep")
                        continue
                    if code != DIVERGED_EXIT and attempts[job.run_id] <= options.retries:
                        pending.append(job)
                        progress.pending = len(pending)
                        progress.event(f"{job.label} failed ({why}); retrying, it resumes from its last checkpoint")
                        continue
                    failed[job.run_id] = {"job": job, "why": why, "where": handle.where,
                                          "attempts": attempts[job.run_id], "log": last_lines(run_dir, LOG_TAIL)}
                    progress.failed += 1
                    progress.event(f"FAILED {job.label} ({why}) after {attempts[job.run_id]} attempt(s)")
                progress.tick()
            except KeyboardInterrupt:  # the second Ctrl-C
                killing = True
                for handle in running:
                    handle.kill()
                echo("Killed the running jobs; they resume from their last checkpoints on the next run.")
                break
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    return failed, stopping or killing


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _report(job_list, failed, interrupted, claimed, rows, workdir: Path, echo) -> int:
    from repeval.results import format_results
    from repeval.summary import summarise

    if rows:
        echo(format_results(summarise(rows), "summary"))
    done = sum(jobs_mod.is_done(j, workdir) for j in job_list)
    echo(f"\n{done} of {len(job_list)} run(s) done; scores in {workdir / 'repeval.db'} "
         "(`repeval report` renders them).")
    for run_id, f in failed.items():
        job = f["job"]
        echo(f"\nFAILED {job.label} [{run_id}]: {f['why']}, after {f['attempts']} attempt(s) (last on {f['where']}). "
             f"Last lines of {job.run_dir(workdir) / jobs_mod.LOG_NAME}:")
        for line in f["log"] or ["(the log is empty)"]:
            echo(f"    {line}")
    if claimed:
        echo(f"\n{len(claimed)} run(s) were claimed by other processes and left to them; run the sweep again "
             "once they finish to collect their scores.")
    if interrupted:
        echo("\nInterrupted: the stopped runs saved checkpoints; run the same command again to resume.")
        return 130
    return 1 if failed else 0
