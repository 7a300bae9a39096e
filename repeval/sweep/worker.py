"""The one way a sweep job runs, whatever launched it: ``repeval run`` of the job's spec.

:func:`run_job` takes a job payload (the job, the run options, the attempt number, extra
environment), runs each of the job's ``repeval run`` invocations as a child process with its
output appended to ``<run dir>/job.log``, and returns the exit status (a child killed by a
signal gives 128 + the signal's number, as a shell reports it). The local launcher runs it
as ``python -m repeval.sweep.worker PAYLOAD.json``; the SLURM launcher through submitit and
the Ray launcher as a Ray task call it directly on the worker host.

The ``repeval run`` child claims the run directory, heartbeats and writes only that
directory (``scores.json`` beside the checkpoint), never ``repeval.db``. It stops with its
parent: when the process that started it dies, even by ``kill -9``, it receives SIGTERM,
saves a checkpoint and exits, so a retry or a rerun of the sweep resumes it.

This module imports no torch (nor anything heavy), so a worker starts fast.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from repeval.sweep.jobs import LOG_NAME, Job

STOP_GRACE_S = 120.0  # how long a stopped child may take to checkpoint before it is killed
_children: list[subprocess.Popen] = []


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere); exits
    at once when the parent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    parent = os.getppid()
    libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def exit_status(returncode: int) -> int:
    """A child's status as a shell shows it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_dir(payload: dict[str, Any]) -> Path:
    return Path(payload["options"]["workdir"]) / "checkpoints" / payload["job"]["run_id"]


def stop_children(sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the ``repeval run`` children of this process (they checkpoint and stop)."""
    for child in list(_children):
        if child.poll() is None:
            try:
                child.send_signal(sig)
            except ProcessLookupError:
                pass


def wait_children(timeout: float = STOP_GRACE_S) -> None:
    deadline = time.monotonic() + timeout
    for child in list(_children):
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_job(payload: dict[str, Any], forward_signals: bool = False) -> int:
    """Run the job in ``payload``; returns its exit status (0 when every invocation succeeded).

    With ``forward_signals`` (the local launcher's worker process), SIGTERM and SIGINT are
    passed on to the running child, which checkpoints and stops; the job then reports the
    child's status."""
    job, options = payload["job"], payload["options"]
    directory = run_dir(payload)
    directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **payload.get("env", {})}
    if payload.get("cwd") and Path(payload["cwd"]).is_dir():
        cwd = payload["cwd"]
    else:
        cwd = None
    spec = Job.from_dict(job)
    previous = {}
    if forward_signals and threading.current_thread() is threading.main_thread():
        def forward(signum, frame):
            stop_children(signum)
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i, inv in enumerate(spec.invocations, 1):
            argv = spec.argv(inv, sys.executable, options)
            with open(directory / LOG_NAME, "ab", buffering=0) as log:
                log.write(_header(payload, i, len(spec.invocations), argv).encode())
                child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=cwd)
                _children.append(child)
                try:
                    status = exit_status(_wait(child))
                finally:
                    _children.remove(child)
                log.write(f"== exit status {status} at {_now()}\n".encode())
            if status != 0:
                return status
        return 0
    except BaseException:  # e.g. Ray's cancel (KeyboardInterrupt): the child checkpoints first
        stop_children()
        wait_children()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _wait(child: subprocess.Popen) -> int:
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
            continue


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _header(payload: dict[str, Any], i: int, n: int, argv: list[str]) -> str:
    where = f"host {socket.gethostname()} pid {os.getpid()}"
    extra = "".join(f" {k}={v}" for k, v in sorted(payload.get("env", {}).items()))
    part = f", invocation {i} of {n}" if n > 1 else ""
    return (f"\n== repeval sweep job {payload['job']['run_id']}: attempt {payload.get('attempt', 1)}{part}, "
            f"{where}, {_now()}{extra}\n== {' '.join(argv)}\n")


def last_lines(payload_or_dir: dict[str, Any] | Path, n: int = 15) -> list[str]:
    """The last ``n`` lines of a job's log (for failure reports)."""
    directory = payload_or_dir if isinstance(payload_or_dir, Path) else run_dir(payload_or_dir)
    try:
        with open(directory / LOG_NAME, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    # progress bars rewrite one line with carriage returns: keep what was last shown
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return [line for line in lines if line.strip()][-n:]


def main(argv: list[str] | None = None) -> int:
    """``python -m repeval.sweep.worker PAYLOAD.json``: run one job (the local launcher)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m repeval.sweep.worker PAYLOAD.json", file=sys.stderr)
        return 2
    die_with_parent()
    payload = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    return run_job(payload, forward_signals=True)


if __name__ == "__main__":
    sys.exit(main())
