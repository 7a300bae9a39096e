"""Claims: at most one process trains a run at a time, on one host or across hosts.

A claim is ``<run dir>/claim.json``, created with ``O_CREAT | O_EXCL`` (which fails when the
file exists, atomically, also on a shared filesystem) and holding the claimant's host, pid,
the pid's start time, when it started and its latest heartbeat. The holder rewrites the
file every :data:`HEARTBEAT_S` seconds and deletes it when it ends.

A claim is **live** unless one of these says its holder is gone, in which case it is
**stale** and the next claimant takes it over (and says so in its log):

- it was made on this host and its pid is not running (or is running another program: the
  pid's start time differs);
- it was made on another host and its heartbeat is older than the staleness limit
  (:data:`STALE_AFTER_S`, ``REPEVAL_CLAIM_STALE_S``). A process on another host cannot be
  asked directly, so a host that is alive but paused longer than the limit loses its claim;
  its heartbeat notices and stops it.

Taking over is safe against two claimants at once: the stale file is renamed away (only one
rename of it succeeds), checked to be the one judged stale, and the new claim is again an
``O_EXCL`` create.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from repeval.errors import UserError
from repeval.paths import atomic_write_text, host_name

FILENAME = "claim.json"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
CLAIMED_ELSEWHERE_EXIT = 75  # EX_TEMPFAIL: try again later
JOB_WAIT_S = 60.0  # how long a sweep job waits for a live claim to end before it gives up


def heartbeat_s() -> float:
    return float(os.environ.get("REPEVAL_CLAIM_HEARTBEAT_S", HEARTBEAT_S))


def stale_after_s() -> float:
    return float(os.environ.get("REPEVAL_CLAIM_STALE_S", STALE_AFTER_S))


class ClaimedElsewhere(UserError):
    """The run is being trained by a live process elsewhere; exit status 75 (try later)."""

    exit_code = CLAIMED_ELSEWHERE_EXIT


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def pid_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, from /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22 of proc(5), counted after the name


def pid_running(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` runs on this host (and, when ``start`` is known, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if start is not None:
        now = pid_start(pid)
        return now is None or now == start
    return True


def read(path: Path) -> dict[str, Any] | None:
    """The claim in ``path`` (``None`` when there is none; ``{}`` when it cannot be read yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def judge(info: dict[str, Any], path: Path, stale_after: float | None = None,
          now: float | None = None) -> tuple[bool, str]:
    """``(live, why)`` for the claim ``info`` read from ``path``."""
    stale_after = stale_after_s() if stale_after is None else stale_after
    now = time.time() if now is None else now
    if not info.get("token"):  # being written this instant, or damaged: judge by the file's age
        try:
            age = now - Path(path).stat().st_mtime
        except FileNotFoundError:
            return False, "it vanished"
        if age > stale_after:
            return False, f"it is unreadable and {age:.0f} s old"
        return True, "it is being written"
    host, pid = info.get("host"), int(info.get("pid", -1))
    beat_age = now - float(info.get("heartbeat", 0.0))
    if host == host_name():
        if pid_running(pid, info.get("pid_start")):
            return True, f"pid {pid} runs on this host"
        return False, f"pid {pid} on this host ({host}) is gone"
    if beat_age > stale_after:
        return False, f"no heartbeat from {host} for {beat_age:.0f} s (limit {stale_after:.0f} s)"
    return True, f"{host} sent a heartbeat {beat_age:.0f} s ago"


def describe(info: dict[str, Any]) -> str:
    if not info.get("token"):
        return "a claimant whose claim file is still being written"
    return f"host {info.get('host')} pid {info.get('pid')} since {info.get('started_at')}"


@dataclass
class Claim:
    """A claim this process holds; :meth:`release` (or leaving the ``with`` block) ends it."""

    path: Path
    info: dict[str, Any]
    _stop: threading.Event
    _thread: threading.Thread | None = None
    lost: bool = False

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def heartbeat(self) -> bool:
        """Refresh the heartbeat; False (and :attr:`lost`) when the claim is no longer ours."""
        current = read(self.path)
        if not current or current.get("token") != self.info["token"]:
            self.lost = True
            return False
        t = time.time()
        self.info = {**self.info, "heartbeat": t, "heartbeat_at": _iso(t)}
        atomic_write_text(self.path, json.dumps(self.info, indent=1, sort_keys=True))
        return True

    def start_heartbeat(self, every: float | None = None, on_lost: Callable[[str], Any] | None = None) -> None:
        """Heartbeat from a daemon thread every ``every`` seconds. If the claim is lost (taken
        over while this process looked dead), ``on_lost`` is called with a message; by
        default the process is sent SIGTERM, so that training checkpoints and stops."""
        every = heartbeat_s() if every is None else every

        def lost_default(message: str) -> None:
            print(message, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

        def beat() -> None:
            while not self._stop.wait(every):
                try:
                    ok = self.heartbeat()
                except OSError:
                    continue  # a filesystem hiccup: try again at the next beat
                if not ok:
                    holder = read(self.path) or {}
                    (on_lost or lost_default)(
                        f"repeval: lost the claim on {self.path.parent.name} to {describe(holder)}; stopping.")
                    return

        self._thread = threading.Thread(target=beat, name="repeval-claim-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        current = read(self.path)
        if current and current.get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)


def acquire(run_dir: Path, *, stale_after: float | None = None, log: Callable[[str], Any] = print,
            what: str = "", wait_s: float = 0.0) -> Claim:
    """Claim ``run_dir`` for this process, taking over a stale claim (logged through
    ``log``); raises :class:`ClaimedElsewhere` when a live process still holds it after
    ``wait_s`` seconds (a retry may start while the attempt it replaces is still saving its
    checkpoint)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / FILENAME
    deadline = time.monotonic() + wait_s
    attempts = 0
    while attempts < 20:
        attempts += 1
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = read(path)
            if info is None:
                continue  # released just now: try again
            live, why = judge(info, path, stale_after)
            if live and time.monotonic() < deadline:
                attempts -= 1
                time.sleep(0.2)
                continue
            if live:
                raise ClaimedElsewhere(
                    f"Run {run_dir.name}{what} is claimed by {describe(info)} ({why}): another sweep or "
                    f"`repeval run --job` is training it. Wait for it to finish; a claim whose holder died is "
                    f"taken over automatically (on this host at once, from another host once its heartbeat is "
                    f"older than {stale_after_s() if stale_after is None else stale_after:.0f} s). If you "
                    f"know it is dead, delete {path}.")
            _take_over(path, info, why, log)
            continue
        t = time.time()
        info = {"host": host_name(), "pid": os.getpid(), "pid_start": pid_start(os.getpid()),
                "started_at": _iso(t), "heartbeat": t, "heartbeat_at": _iso(t), "token": secrets.token_hex(8)}
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(info, indent=1, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        return Claim(path, info, threading.Event())
    raise UserError(f"Could not claim {run_dir}: its claim file kept changing under this process. "
                    "Check that no other process deletes files there, then run again.")


def _take_over(path: Path, info: dict[str, Any], why: str, log: Callable[[str], Any]) -> None:
    """Move the stale claim ``info`` out of the way, unless another claimant already did."""
    moved = path.with_name(f".{path.name}.stale.{host_name()}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return  # another claimant moved it first
    if (read(moved) or {}).get("token") != info.get("token"):
        # a newer claim replaced the stale one between our read and the rename: put it back
        try:
            os.link(moved, path)
        except FileExistsError:
            pass
        moved.unlink(missing_ok=True)
        return
    moved.unlink(missing_ok=True)
    log(f"repeval: took over the stale claim on {path.parent.name} of {describe(info)}: {why}.")
