"""Real processes of ``repeval``, killed on purpose: the launcher, the kill triggers, the chains
(kill, kill, ..., run to the end) and the comparisons of what they leave behind.

Processes come from a fork server (``multiprocessing``'s ``forkserver`` context) that imported
torch, faiss, scikit-learn, matplotlib and repeval once: each command is still a process of its
own (its own pid, files, signals; ``os.kill(pid, SIGKILL)`` ends it with no chance to clean
up), but starts in milliseconds instead of the seconds those imports take, so a CI run can
afford dozens of kills. A plain ``python -m repeval`` process is used where the real entry
point matters (``tests/faults/test_faults.py`` says which).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PRELOAD = ["numpy", "torch", "torch._dynamo", "torch.optim", "faiss", "sklearn", "sklearn.datasets",
           "scipy.optimize", "matplotlib", "matplotlib.pyplot", "jinja2", "repeval.cli", "encoders",
           "repeval.train", "repeval.pipeline", "repeval.probes", "repeval.extract", "repeval.report",
           "repeval.report.figures", "repeval.check", "repeval.data.digits"]
POLL_S = 0.002
SMALL = ["--dataset", "digits", "--threads", "1"]
TRAIN = ["train", "--encoder", "baseline", "--budget", "1024", "--snapshots", "64", *SMALL]
RUN = ["run", "--encoder", "baseline", "--encoder", "pca", "--task", "all", "--budget", "256", "--set",
       "kmeans.restarts=2", *SMALL]


def run_cli(args: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """The body of one process: ``repeval ARGS`` with ``env``, in ``cwd``, output to files;
    the process exits with the command's status (``os._exit``, as a fresh process would)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a process started from a shell
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from repeval.cli import main

    code = 0
    try:
        main(args, prog_name="repeval")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class Proc:
    """A started command: its multiprocessing handle, output files and start time."""

    process: multiprocessing.process.BaseProcess
    args: list[str]
    out: Path
    err: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.exitcode is None and self.process.is_alive()

    def wait(self, timeout: float = 300) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.join()
            raise AssertionError(f"repeval {' '.join(self.args)} did not end within {timeout} s")
        return self.process.exitcode

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()


class Launcher:
    """Starts ``repeval`` commands as processes of the fork server, each in ``env``."""

    def __init__(self, scratch: Path, env: dict[str, str]):
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.scratch, self.env = scratch, env
        self.count = 0

    def start(self, args: list[str], cwd: Path | None = None, **env: str) -> Proc:
        self.count += 1
        out, err = self.scratch / f"p{self.count}.out", self.scratch / f"p{self.count}.err"
        process = self.context.Process(target=run_cli, args=(list(map(str, args)), {**self.env, **env},
                                                             str(cwd or self.scratch), str(out), str(err)))
        process.start()
        return Proc(process, list(map(str, args)), out, err)

    def run(self, args: list[str], expect: int = 0, **env: str) -> Proc:
        proc = self.start(args, **env)
        code = proc.wait()
        assert code == expect, f"repeval {' '.join(proc.args)}: exit {code}, expected {expect}\n{proc.stderr[-3000:]}"
        return proc


# ------------------------------------------------------------------------------ triggers
class Trigger:
    """When to kill: ``fired(proc)`` is polled every few milliseconds while the process runs."""

    def arm(self, proc: Proc) -> None:
        """Called right after the start (to note what existed before)."""

    def fired(self, proc: Proc) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass
class After(Trigger):
    """``seconds`` after the start."""

    seconds: float

    def fired(self, proc: Proc) -> bool:
        return time.monotonic() - proc.started >= self.seconds

    def describe(self) -> str:
        return f"{self.seconds:.3f} s after the start"


@dataclass
class NewFiles(Trigger):
    """The ``n``-th new file matching ``pattern`` under ``folder`` appears, then ``delay`` s."""

    folder: Path
    pattern: str
    n: int
    delay: float = 0.0
    _seen: set = field(default_factory=set)
    _hit: float | None = None

    def _names(self) -> set[str]:
        return {str(p) for p in self.folder.glob(self.pattern)} if self.folder.exists() else set()

    def arm(self, proc: Proc) -> None:
        self._seen, self._hit, self._count = self._names(), None, 0

    def fired(self, proc: Proc) -> bool:
        if self._hit is None:
            new = self._names() - self._seen
            self._count += len(new)
            self._seen |= new
            if self._count >= self.n:
                self._hit = time.monotonic()
        return self._hit is not None and time.monotonic() - self._hit >= self.delay

    def describe(self) -> str:
        return f"new file #{self.n} matching {self.pattern} + {self.delay * 1000:.0f} ms"


@dataclass
class Grows(Trigger):
    """``path`` (the database's write-ahead log) grows the ``n``-th time beyond its header,
    then ``delay`` s: each growth is a store write (a run recorded, a task's scores), so with
    no delay the kill lands in the write or just after its commit, and with one in the
    probing that follows."""

    path: Path
    n: int
    delay: float = 0.0
    HEADER = 32  # bytes of a WAL file with no frames

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def arm(self, proc: Proc) -> None:
        self._last, self._hit, self._count = self._size(), None, 0

    def fired(self, proc: Proc) -> bool:
        if self._hit is None:
            size = self._size()
            if size > max(self._last, self.HEADER):
                self._count += 1
                if self._count >= self.n:
                    self._hit = time.monotonic()
            self._last = size
        return self._hit is not None and time.monotonic() - self._hit >= self.delay

    def describe(self) -> str:
        return f"store write #{self.n} + {self.delay * 1000:.0f} ms"


@dataclass
class Kill:
    """One attempt: what fired, and whether the process was still alive to be killed."""

    trigger: str
    killed: bool
    after_s: float


def attempt(launcher: Launcher, args: list[str], trigger: Trigger, signum: int = signal.SIGKILL,
            check: Callable[[], object] | None = None, poll: float = POLL_S) -> Kill:
    """Start ``repeval ARGS``, send ``signum`` when ``trigger`` fires (unless it ended first),
    wait for it, then run ``check`` (what must hold after a crash at that moment). ``trigger``
    is polled every ``poll`` seconds."""
    proc = launcher.start(args)
    trigger.arm(proc)
    killed = False
    while proc.alive():
        if trigger.fired(proc):
            try:
                os.kill(proc.pid, signum)
                killed = True
            except ProcessLookupError:
                pass
            break
        time.sleep(poll)
    code = proc.wait()
    if killed and signum == signal.SIGKILL:
        killed = code == -signal.SIGKILL  # it may have exited in the same instant
    elif not killed:
        assert code == 0, f"repeval {' '.join(args)} failed without a kill: exit {code}\n{proc.stderr[-3000:]}"
    if check is not None:
        check()
    return Kill(trigger.describe(), killed, time.monotonic() - proc.started)


def chain(launcher: Launcher, args: list[str], triggers: list[Trigger],
          check: Callable[[], object] | None = None) -> list[Kill]:
    """Kill ``repeval ARGS`` at each trigger in turn, each time rerunning it, then run it once
    more to the end; returns the attempts (the caller counts the kills that landed)."""
    kills = [attempt(launcher, args, t, check=check) for t in triggers]
    launcher.run(args)
    return kills


def rng_for(name: str, seed: int | None = None) -> random.Random:
    """The seeded generator of one scenario (``REPEVAL_FAULT_SEED`` moves all of them)."""
    base = int(os.environ.get("REPEVAL_FAULT_SEED", "16")) if seed is None else seed
    return random.Random(f"{base}:{name}")


# ------------------------------------------------------------------------------ what is compared
TIMESTAMPS = {"created_at", "updated_at", "time", "wall_time_s"}


def _strip(value, workdir: str):
    """``value`` without timestamps and with the workdir's path replaced by ``WORKDIR``."""
    if isinstance(value, dict):
        return {k: _strip(v, workdir) for k, v in value.items() if k not in TIMESTAMPS}
    if isinstance(value, list):
        return [_strip(v, workdir) for v in value]
    if isinstance(value, str):
        return value.replace(workdir, "WORKDIR")
    return value


def store_rows(workdir: Path) -> dict[str, list]:
    """Every run and score row of a workdir's store, timestamps left out, paths made relative,
    JSON columns parsed, sorted: what must equal an uninterrupted run's."""
    work = str(Path(workdir).resolve())
    out = {}
    with sqlite3.connect(f"{(Path(workdir) / 'repeval.db').resolve().as_uri()}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        for table in ("runs", "scores"):
            rows = []
            for row in conn.execute(f"SELECT * FROM {table}"):
                d = dict(row)
                d.pop("id", None)
                for key in ("spec", "provenance", "settings", "details"):
                    if key in d:
                        d[key] = json.loads(d[key])
                rows.append(_strip(d, work))
            out[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    conn.close()
    return out


def score_tables(html: str) -> list[dict]:
    """The report's tables of scores (every table but the provenance, which holds times)."""
    from html_tables import tables

    return [t for t in tables(html) if not re.search(r"provenance|generated", t["heading"], re.I)]


def model_state(run_dir: Path) -> dict:
    """The committed weights, optimiser and RNG states of a run directory (torch tensors)."""
    from repeval.checkpoint import Checkpoint

    state = Checkpoint(run_dir).load_state()
    return {k: state[k] for k in ("model", "classifier", "optimizers", "classifier_optimizer", "rng", "step",
                                  "complete")}


def same_state(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b
