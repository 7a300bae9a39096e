"""``repeval collect``: index run directories' ``scores.json`` into ``repeval.db``.

The run directories are the durable record (:mod:`repeval.scorefile`); the database is an
index of them. Collecting upserts each run and its scores with the existing keys and the
timestamps the files hold, so collecting the same files twice leaves the database exactly
as it was, and a deleted database is rebuilt completely. A database that SQLite cannot read
(or whose integrity check fails) is moved aside (``repeval.db.corrupt-<time>``) and rebuilt.
Only the process that owns the workdir writes ``repeval.db``: the sweep driver, or you.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from repeval.errors import UserError


@dataclass
class Collected:
    runs: int = 0
    scores: int = 0
    skipped: list[str] = field(default_factory=list)  # one line per run directory that could not be read
    moved_aside: Path | None = None


def run_dirs(folder: Path) -> list[Path]:
    """The run directories under ``folder``: itself (a run directory), ``folder/checkpoints/*``
    (a workdir) or ``folder/*`` (a folder of run directories, e.g. copied back from a cluster)."""
    folder = Path(folder)
    if (folder / "scores.json").is_file() or (folder / "spec.json").is_file():
        return [folder]
    base = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
    return sorted(p.parent for p in base.glob("*/scores.json"))


def _healthy(db: Path) -> tuple[bool, str]:
    try:
        conn = sqlite3.connect(db, timeout=30)
    except sqlite3.Error as exc:
        return False, str(exc)
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()
        return (result is not None and result[0] == "ok"), (result[0] if result else "no answer")
    except sqlite3.DatabaseError as exc:
        return False, str(exc)
    finally:
        conn.close()


def open_store(workdir: Path, log: Callable[[str], Any] = print):
    """The workdir's store; a corrupted ``repeval.db`` is moved aside first (returned second)."""
    from repeval.store import DB_FILENAME, Store

    db = Path(workdir) / DB_FILENAME
    moved = None
    if db.exists():
        ok, why = _healthy(db)
        if not ok:
            moved = db.with_name(f"{DB_FILENAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                f = Path(f"{db}{suffix}")
                if f.exists():
                    os.replace(f, Path(f"{moved}{suffix}"))
            log(f"repeval: {db} is damaged ({why}); moved it to {moved} and rebuilding it from the run directories.")
    return Store(db), moved


def collect_run(store, run_dir: Path) -> int:
    """Upsert one run directory; returns the number of scores. A directory that is not a
    complete record raises :class:`ValueError` naming what is wrong."""
    from repeval import scorefile
    from repeval.store import Score

    record = scorefile.read(run_dir)
    if record is None:
        raise ValueError(f"{run_dir} has no {scorefile.FILENAME}")
    if record["run_id"] != Path(run_dir).name:
        raise ValueError(f"{run_dir / scorefile.FILENAME} is the record of run {record['run_id']!r}, not of "
                         f"{Path(run_dir).name!r} (a renamed or copied directory?)")
    recorded = record.get("checkpoint")
    here = str(run_dir)
    if recorded and Path(recorded).resolve() == Path(run_dir).resolve():
        here = recorded  # keep the path as the run wrote it
    try:
        store.record_run(record["run_id"], record["spec"], record["provenance"], here,
                         created_at=record.get("created_at"), updated_at=record.get("updated_at"))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{run_dir / scorefile.FILENAME} has an incomplete spec ({exc})") from None
    scores = []
    for row in record["scores"]:
        try:
            scores.append(Score(task=row["task"], metric=row["metric"],
                                value=math.nan if row["value"] is None else float(row["value"]),
                                latent=row["latent"], settings=row["settings"], details=row.get("details", {}),
                                wall_time_s=float(row.get("wall_time_s", 0.0)), created_at=row.get("created_at")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{run_dir / scorefile.FILENAME} has a malformed score ({exc})") from None
    if scores:
        store.add_scores(record["run_id"], scores)
    return len(scores)


def collect(workdir: Path, folders: list[Path] | None = None, log: Callable[[str], Any] = print,
            store=None) -> Collected:
    """Upsert every run directory found in ``folders`` (default: the workdir's) into the
    workdir's ``repeval.db`` (or ``store`` when given)."""
    folders = [Path(f) for f in (folders or [workdir])]
    for f in folders:
        if not f.is_dir():
            raise UserError(f"{f} is not a folder. Give a workdir, a folder of run directories or a run "
                            "directory (one holding scores.json).")
    result = Collected()
    own = store is None
    if own:
        store, result.moved_aside = open_store(workdir, log)
    try:
        for folder in folders:
            for run_dir in run_dirs(folder):
                try:
                    result.scores += collect_run(store, run_dir)
                    result.runs += 1
                except ValueError as exc:
                    result.skipped.append(str(exc))
    finally:
        if own:
            store.close()
    return result
