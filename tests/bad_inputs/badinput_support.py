"""What every bad-input case shares: a snapshot of everything a store holds, and the two ways
of running the command line (in-process, or as a real process where the process matters: a
read-only mount, a lock held by another process). The fixtures are in ``conftest.py``."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from repeval.cli import main

REPO = Path(__file__).resolve().parents[2]
SEED_RUNS = [  # what the store holds before every case: a trained run and a fitted one, with scores
    ["run", "--encoder", "baseline", "--task", "knn", "--dataset", "digits", "--budget", "128", "--threads", "1"],
    ["run", "--encoder", "pca", "--task", "knn", "--dataset", "digits", "--threads", "1"],
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(work: Path) -> tuple[Any, dict[str, str]]:
    """Everything a workdir holds: the database's rows (every column, timestamps included; the
    file's sha256 when it cannot be read) and the sha256 of every other file under it."""
    db = work / "repeval.db"
    rows: Any = None
    if db.is_file():
        try:
            with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=0.1) as conn:
                rows = {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in ("runs", "scores")}
            conn.close()
        except sqlite3.Error:
            rows = _sha(db)
    files = {str(p.relative_to(work)): _sha(p) for p in sorted(work.rglob("*"))
             if p.is_file() and not p.name.startswith("repeval.db")}
    return rows, files


@dataclass
class Ctx:
    """One case's places: the workdir (a copy of the seeded store), a scratch folder, run ids."""

    work: Path
    tmp: Path
    runs: dict[str, str]  # encoder -> run id of the seeded runs
    env: dict[str, str] = field(default_factory=dict)

    def run_dir(self, encoder: str) -> Path:
        return self.work / "checkpoints" / self.runs[encoder]

    @property
    def fields(self) -> dict[str, str]:
        return {"work": str(self.work), "tmp": str(self.tmp), **{f"run_{k}": v for k, v in self.runs.items()}}


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def invoke(args: list[str], ctx: Ctx) -> Outcome:
    """``repeval ARGS`` in this process (click's runner), stdout and stderr apart."""
    env = {"REPEVAL_HOME": str(ctx.work), **ctx.env}
    result = CliRunner().invoke(main, args, env=env)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout, result.stderr, exc)


def process_env(ctx: Ctx) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPEVAL_")}
    env.update(REPEVAL_HOME=str(ctx.work), REPEVAL_CACHE=os.environ.get("REPEVAL_CACHE", str(ctx.tmp / "cache")),
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
               **ctx.env)
    return env


def spawn(args: list[str], ctx: Ctx, prefix: list[str] = (), timeout: float = 300) -> Outcome:
    """``repeval ARGS`` as a process of its own (``python -m repeval``), optionally under ``prefix``."""
    done = subprocess.run([*prefix, sys.executable, "-m", "repeval", *args], env=process_env(ctx), cwd=ctx.tmp,
                          capture_output=True, text=True, timeout=timeout)
    return Outcome(done.returncode, done.stdout, done.stderr)


