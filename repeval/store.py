"""The results store: one embedded SQLite database per workdir (``<workdir>/repeval.db``).

SQLite only: aggregation over seeds is :mod:`repeval.summary`, text output :mod:`repeval.results`.

Two tables (DESIGN.md, "store"):

* ``runs`` — one row per trained (or fitted) encoder: its RunSpec, provenance and
  checkpoint directory. The spec's encoder, dataset, latent_dim, seed and budget are copied
  into columns so that scores can be filtered without parsing JSON.
* ``scores`` — one row per probe number: which run, which tensor was the latent
  (``map``, ``mean``, ...), which task and metric, the value, the probe settings (canonical
  JSON, sorted keys) and free-form details. The run's identifying columns are copied into
  each score so that a score row reads on its own.

A score is identified by ``(run_id, latent, task, metric, settings)``: re-running the same
probe with the same settings replaces the previous value, so the store holds the latest
value per key. NaN values are stored as SQL ``NULL`` and read back as ``float('nan')``.

Concurrency: the database runs in WAL mode with a 30 s busy timeout (env
``REPEVAL_DB_TIMEOUT``, seconds) and every write is one ``BEGIN IMMEDIATE`` transaction, so
several processes (e.g. one ``repeval run`` per encoder) may write at once and no row is
lost. A database that stays locked past the timeout, a damaged file and a workdir that
cannot be written are :class:`~repeval.errors.UserError` s naming the file and the fix
(:func:`database_error`), raised before anything is written, so the store is left as it was.

The schema is versioned with ``PRAGMA user_version``. :data:`MIGRATIONS` maps each
version to the step that brings a database from the previous version to it; opening a
database written by a newer repeval is refused with a :class:`~repeval.errors.UserError`.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.jsonio import canonical_json

DB_FILENAME = "repeval.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # REPEVAL_DB_TIMEOUT overrides it (seconds)


def busy_timeout_s() -> float:
    """How long a command waits for another process's write lock (``REPEVAL_DB_TIMEOUT``)."""
    import os

    raw = os.environ.get("REPEVAL_DB_TIMEOUT", "")
    try:
        value = float(raw) if raw else BUSY_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not (0 <= value < 1e6):
        raise UserError(f"REPEVAL_DB_TIMEOUT={raw!r} is not a number of seconds >= 0; unset it (the default "
                        f"waits {BUSY_TIMEOUT_S:g} s) or give e.g. REPEVAL_DB_TIMEOUT=60.")
    return value


def database_error(path: Path, exc: BaseException, timeout: float | None = None) -> UserError:
    """The user's view of an SQLite failure on the results database ``path``: locked by
    another process, not writable, or damaged, each with its fix."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        waited = f" (waited {timeout:g} s)" if timeout is not None else ""
        return UserError(f"The results database {path} is locked by another process{waited}: {text}. Wait for the "
                         "other repeval command (or the program holding the lock) to finish and run this one again; "
                         "REPEVAL_DB_TIMEOUT=SECONDS waits longer. Nothing was written.")
    if "readonly" in low or "read-only" in low or "unable to open" in low or "permission" in low:
        return UserError(f"The results database {path} cannot be opened for writing ({text}): the workdir is "
                         "read-only or not yours. Choose a writable --workdir (or REPEVAL_HOME), or fix its "
                         "permissions. Nothing was written.")
    if "disk i/o" in low or "full" in low:
        return UserError(f"The results database {path} could not be written ({text}): the disk is full or failing. "
                         "Free space, or choose another --workdir. Nothing was written.")
    return UserError(f"The results database {path} is damaged or is not a repeval database ({text}). Move it away "
                     "(the run directories under checkpoints/ are kept, and `repeval run` reuses them, so rerunning "
                     "the probes rebuilds the scores) or choose another --workdir.")

FilterValue = str | int | Sequence[str | int] | None

# Columns of a score row as returned by Store.scores() (and written by repeval.results as CSV).
SCORE_COLUMNS = ("dataset", "encoder", "latent", "latent_dim", "seed", "budget", "task", "metric",
                 "value", "settings", "details", "wall_time_s", "run_id", "created_at")
# Stable order of score rows (Store.scores, summarise).
SCORE_ORDER = ("dataset", "latent_dim", "encoder", "task", "metric", "seed", "budget", "latent",
               "settings", "run_id")
RUN_ORDER = ("dataset", "latent_dim", "encoder", "seed", "budget", "run_id")
SPEC_COLUMNS = ("encoder", "dataset", "latent_dim", "seed", "budget")


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute("""
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            encoder TEXT NOT NULL,
            dataset TEXT NOT NULL,
            latent_dim INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            budget INTEGER NOT NULL,
            spec TEXT NOT NULL,
            provenance TEXT NOT NULL,
            checkpoint TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    conn.execute("""
        CREATE TABLE scores (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            dataset TEXT NOT NULL,
            encoder TEXT NOT NULL,
            latent TEXT NOT NULL,
            latent_dim INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            budget INTEGER NOT NULL,
            task TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL,
            settings TEXT NOT NULL,
            details TEXT NOT NULL,
            wall_time_s REAL NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, latent, task, metric, settings)
        )""")
    conn.execute("CREATE INDEX scores_by_group ON scores (dataset, encoder, latent_dim, task, metric)")


# version -> step from (version - 1) to version; version 1 creates the schema.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _create_v1}


@dataclass(frozen=True)
class Score:
    """One probe number to add to a run.

    ``latent`` names the tensor that was probed (e.g. ``"map"``, ``"mean"``); ``settings``
    are the probe's explicit settings (part of the score's identity); ``details`` hold
    anything else worth keeping (e.g. the cluster-to-class mapping).
    """

    task: str
    metric: str
    value: float
    latent: str
    settings: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    created_at: str | None = None  # when it was computed (default: when it is added)


def _check_score(run_id: str, s: Score) -> None:
    for name in ("task", "metric", "latent"):
        value = getattr(s, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"run {run_id!r}: a score's {name} must be non-empty text, got {value!r}")
    if isinstance(s.value, bool) or not isinstance(s.value, (int, float)) or math.isinf(s.value):
        raise ValueError(f"run {run_id!r}: {s.task}.{s.metric} must be a real number (finite, or NaN for "
                         f"'no number'), got {s.value!r}")
    for name in ("settings", "details"):
        if not isinstance(getattr(s, name), dict):
            raise ValueError(f"run {run_id!r}: {s.task}.{s.metric} {name} must be a dict, got "
                             f"{type(getattr(s, name)).__name__}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """Runs and scores in ``path`` (an SQLite file; parent directories are created).

    Use as a context manager, or call :meth:`close`. A database in a folder that cannot be
    written (a read-only mount, an archive) is opened read-only: reading works, and a write
    is a :class:`~repeval.errors.UserError` saying the workdir is read-only.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.timeout = busy_timeout_s()
        self.read_only = self.path.is_file() and not os.access(self.path.parent, os.W_OK)
        try:
            if not self.read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            target = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1" if self.read_only else str(self.path)
            self._conn = sqlite3.connect(target, timeout=self.timeout, isolation_level=None, uri=self.read_only)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"Cannot open the results database {self.path}: {exc}. "
                            "Check that the workdir (--workdir / REPEVAL_HOME) is writable.") from None
        try:
            if self.read_only:  # nothing can change the file under us: read it as it is
                self._check_schema()
                return
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._enable_wal()
            # WAL + NORMAL: a commit survives a crash of the process; only a power cut may lose
            # the last commits, never corrupt the file (sqlite.org/pragma.html#pragma_synchronous).
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            self._check_schema()
        except sqlite3.Error as exc:
            self._conn.close()
            raise database_error(self.path, exc, self.timeout) from None
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def in_workdir(cls, workdir: Path) -> "Store":
        """The store of a workdir: ``<workdir>/repeval.db``."""
        return cls(Path(workdir) / DB_FILENAME)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; it takes the write lock at once (waiting up to the timeout).
        An SQLite failure rolls it back and becomes a :func:`database_error`."""
        if self.read_only:
            raise database_error(self.path, sqlite3.OperationalError("the folder is read-only"), self.timeout)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise database_error(self.path, exc, self.timeout) from None
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the transaction is gone with the failure; nothing of it was committed
            if isinstance(exc, sqlite3.Error):
                raise database_error(self.path, exc, self.timeout) from None
            raise

    def check_writable(self) -> None:
        """Take the write lock once and let it go, so a locked or read-only database fails
        before a command does any work (:func:`database_error`)."""
        with self._write():
            pass

    def _check_schema(self) -> None:
        """Both tables are readable (a damaged file often fails only here, not at opening)."""
        for table in ("runs", "scores"):
            self._conn.execute(f"SELECT * FROM {table} LIMIT 1").fetchall()

    def _enable_wal(self) -> None:
        """Switch to WAL mode (a no-op once done; the mode is stored in the file).

        The switch needs an exclusive lock and SQLite does not wait on the busy handler for
        it, so processes that create the database together retry here until the timeout.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:
            return
        with self._write() as conn:
            version = self._version()  # re-read under the write lock: another process may have migrated
            if version > SCHEMA_VERSION:
                raise UserError(f"The results database {self.path} has schema version {version}, newer "
                                f"than this repeval understands ({SCHEMA_VERSION}). Upgrade repeval "
                                "(pip install -U repeval) to read it.")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def record_run(self, run_id: str, spec: dict[str, Any], provenance: dict[str, Any],
                   checkpoint: str | None, *, created_at: str | None = None,
                   updated_at: str | None = None) -> None:
        """Insert or update a run; ``spec`` must hold encoder, dataset, latent_dim, seed, budget.

        On update, ``created_at`` is kept and everything else is replaced. The timestamps
        default to now; ``repeval collect`` passes the ones a run directory's ``scores.json``
        holds, so that indexing the same files again changes nothing.
        """
        missing = [key for key in SPEC_COLUMNS if key not in spec]
        if missing:
            raise ValueError(f"run {run_id!r}: spec lacks {', '.join(missing)}")
        now = updated_at or _now()
        created = created_at or now
        with self._write() as conn:
            conn.execute(
                """INSERT INTO runs (run_id, encoder, dataset, latent_dim, seed, budget, spec,
                                     provenance, checkpoint, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (run_id) DO UPDATE SET
                       encoder = excluded.encoder, dataset = excluded.dataset,
                       latent_dim = excluded.latent_dim, seed = excluded.seed, budget = excluded.budget,
                       spec = excluded.spec, provenance = excluded.provenance,
                       checkpoint = excluded.checkpoint, updated_at = excluded.updated_at""",
                (run_id, spec["encoder"], spec["dataset"], int(spec["latent_dim"]), int(spec["seed"]),
                 int(spec["budget"]), canonical_json(spec), canonical_json(provenance), checkpoint,
                 created, now))

    def add_scores(self, run_id: str, scores: Sequence[Score]) -> None:
        """Add (or replace, per score key) the scores of a recorded run, in one transaction.

        Each score is checked first (a ValueError names the bad one, and nothing is written):
        names are non-empty text, the value a real number that is finite or NaN (stored as
        NULL: "no number"; infinity is refused), settings and details JSON objects."""
        for s in scores:
            _check_score(run_id, s)
        now = _now()
        with self._write() as conn:
            run = conn.execute("SELECT dataset, encoder, latent_dim, seed, budget FROM runs WHERE run_id = ?",
                               (run_id,)).fetchone()
            if run is None:
                raise ValueError(f"run {run_id!r} is not in {self.path}; record it with record_run first")
            dataset, encoder, latent_dim, seed, budget = run
            conn.executemany(
                """INSERT INTO scores (run_id, dataset, encoder, latent, latent_dim, seed, budget, task,
                                       metric, value, settings, details, wall_time_s, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (run_id, latent, task, metric, settings) DO UPDATE SET
                       value = excluded.value, details = excluded.details,
                       wall_time_s = excluded.wall_time_s, created_at = excluded.created_at""",
                [(run_id, dataset, encoder, s.latent, latent_dim, seed, budget, s.task, s.metric,
                  None if math.isnan(s.value) else float(s.value), canonical_json(s.settings),
                  canonical_json(s.details), float(s.wall_time_s), s.created_at or now) for s in scores])

    def _select(self, table: str, columns: Sequence[str], order: Sequence[str],
                filters: dict[str, FilterValue]) -> list[dict[str, Any]]:
        clauses, params = [], []
        for column, wanted in filters.items():
            if wanted is None:
                continue
            values = [wanted] if isinstance(wanted, (str, int)) else list(wanted)
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        try:
            cursor = self._conn.execute(
                f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY {', '.join(order)}", params)
            return [dict(zip(columns, row)) for row in cursor]
        except sqlite3.Error as exc:
            raise database_error(self.path, exc, self.timeout) from None

    def scores(self, *, dataset: FilterValue = None, encoder: FilterValue = None,
               latent: FilterValue = None, latent_dim: FilterValue = None, seed: FilterValue = None,
               budget: FilterValue = None, task: FilterValue = None, metric: FilterValue = None,
               run_id: FilterValue = None) -> list[dict[str, Any]]:
        """Score rows as flat dicts (keys :data:`SCORE_COLUMNS`), in :data:`SCORE_ORDER`.

        Each filter is one value or a list of accepted values; ``None`` does not filter.
        ``settings`` and ``details`` come back as dicts, a stored NaN as ``float('nan')``.
        A row of a run trained in another precision than fp32 also has ``precision`` (from
        its run's spec), which :func:`repeval.summary.group_key` keeps apart.
        """
        rows = self._select("scores", SCORE_COLUMNS, SCORE_ORDER, {
            "dataset": dataset, "encoder": encoder, "latent": latent, "latent_dim": latent_dim,
            "seed": seed, "budget": budget, "task": task, "metric": metric, "run_id": run_id})
        precisions = self._precisions()
        for row in rows:
            row["value"] = math.nan if row["value"] is None else row["value"]
            row["settings"] = json.loads(row["settings"])
            row["details"] = json.loads(row["details"])
            if row["run_id"] in precisions:
                row["precision"] = precisions[row["run_id"]]
        return rows

    def _precisions(self) -> dict[str, str]:
        """The runs trained in another precision than fp32, and theirs."""
        try:
            cursor = self._conn.execute("SELECT run_id, json_extract(spec, '$.precision') FROM runs "
                                        "WHERE json_extract(spec, '$.precision') IS NOT NULL")
            return {run_id: precision for run_id, precision in cursor if precision != "fp32"}
        except sqlite3.Error as exc:
            raise database_error(self.path, exc, self.timeout) from None

    def runs(self, *, dataset: FilterValue = None, encoder: FilterValue = None,
             latent_dim: FilterValue = None, seed: FilterValue = None, budget: FilterValue = None,
             run_id: FilterValue = None) -> list[dict[str, Any]]:
        """Run rows as dicts (``spec`` and ``provenance`` parsed), in :data:`RUN_ORDER`."""
        columns = ("run_id", "encoder", "dataset", "latent_dim", "seed", "budget", "spec", "provenance",
                   "checkpoint", "created_at", "updated_at")
        rows = self._select("runs", columns, RUN_ORDER, {
            "dataset": dataset, "encoder": encoder, "latent_dim": latent_dim, "seed": seed,
            "budget": budget, "run_id": run_id})
        for row in rows:
            row["spec"] = json.loads(row["spec"])
            row["provenance"] = json.loads(row["provenance"])
        return rows
