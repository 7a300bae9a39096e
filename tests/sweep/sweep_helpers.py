"""Helpers of the sweep tests: run `repeval sweep` as a real process, read what it stored.

Every sweep here runs the same tiny grid (``GRID``: a baseline trained for 1,024 digits
images and the pixels reference, kNN probe), so any launcher, any interruption and any retry
must end with the reference's scores exactly.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GRID = ("--encoder", "baseline", "--encoder", "pixels", "--dataset", "digits", "--budget", "1024", "--seed", "0",
        "--task", "knn")
STEPS = 1024 // 64


def env(cache: Path, **extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), str(HERE), e.get("PYTHONPATH", "")) if p)
    e.update(OMP_NUM_THREADS="1", REPEVAL_CACHE=str(cache), **extra)
    for key in ("REPEVAL_HOME", "REPEVAL_DATA"):
        e.pop(key, None)
    return e


def sweep_argv(workdir: Path, *args: str, grid=GRID) -> list[str]:
    return [sys.executable, "-m", "repeval", "sweep", *grid, "--workdir", str(workdir), *args]


def run_sweep(workdir: Path, cache: Path, *args: str, expect: int = 0, grid=GRID, timeout: float = 600,
              **extra_env: str) -> str:
    proc = subprocess.run(sweep_argv(workdir, *args, grid=grid), env=env(cache, **extra_env), capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == expect, out
    return out


def start_sweep(workdir: Path, cache: Path, *args: str, grid=GRID) -> subprocess.Popen:
    return subprocess.Popen(sweep_argv(workdir, *args, grid=grid), env=env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def score_rows(workdir: Path) -> list[tuple]:
    """What the sweep computed: every score's identity, value and details (not when or how fast)."""
    conn = sqlite3.connect(Path(workdir) / "repeval.db")
    try:
        return sorted(conn.execute("SELECT run_id, latent, task, metric, settings, value, details FROM scores"))
    finally:
        conn.close()


def run_dir(workdir: Path, encoder: str) -> Path:
    [found] = [p for p in (Path(workdir) / "checkpoints").glob(f"{encoder}-*") if p.is_dir()]
    return found


def last_step(run: Path) -> int | None:
    try:
        return json.loads((run / "history.json").read_text())["step"][-1]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def wait_for(condition, timeout: float = 300, every: float = 0.01, what: str = "the condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def mid_training(workdir: Path):
    """The baseline run's claim once it has checkpointed at least once and not finished training."""
    def check():
        runs = list((Path(workdir) / "checkpoints").glob("baseline-*"))
        if not runs:
            return None
        step = last_step(runs[0])
        claim = runs[0] / "claim.json"
        if step is None or not 0 < step < STEPS or not claim.is_file():
            return None
        try:
            return json.loads(claim.read_text())
        except ValueError:
            return None
    return check


def no_live_claims(workdir: Path) -> bool:
    from repeval.sweep import claims

    for f in Path(workdir).glob("checkpoints/*/claim.json"):
        info = claims.read(f)
        if info is not None and claims.judge(info, f)[0]:
            return False
    return True


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
