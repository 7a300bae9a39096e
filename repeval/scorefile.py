"""``scores.json``: a run's scores in its own run directory, the durable record.

``repeval run`` rewrites ``<workdir>/checkpoints/<run_id>/scores.json`` atomically after
training and after each task, before the same rows go into ``repeval.db``. The database is
an index of these files: ``repeval collect`` upserts them (with the timestamps they hold, so
collecting twice changes nothing) and rebuilds a deleted or corrupted database completely.
Sweep workers on other hosts write only this file, never the database (SQLite's WAL mode
does not work across hosts).

Format (``FORMAT`` 1)::

    {"format": 1, "run_id": ..., "spec": {RunSpec}, "provenance": {...}, "checkpoint": PATH,
     "created_at": ..., "updated_at": ...,
     "scores": [{"task", "metric", "value", "latent", "settings", "details", "wall_time_s",
                 "created_at"}, ...]}

A score's key is ``(latent, task, metric, settings)``, the store's key within a run; a
rewritten score replaces the old one. A NaN value is written as ``null``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from repeval.jsonio import canonical_json, json_default
from repeval.paths import atomic_write_text

FILENAME = "scores.json"
FORMAT = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def path_of(run_dir: Path) -> Path:
    return Path(run_dir) / FILENAME


def read(run_dir: Path) -> dict[str, Any] | None:
    """The record of ``run_dir``, or ``None`` when it has none. A file that is not a scores
    record raises :class:`ValueError` naming the problem."""
    f = path_of(run_dir)
    if not f.is_file():
        return None
    try:
        record = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{f} is not readable JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{f} is not a scores record of format {FORMAT}")
    for key, kind in (("run_id", str), ("spec", dict), ("provenance", dict), ("scores", list)):
        if not isinstance(record.get(key), kind):
            raise ValueError(f"{f} lacks {key!r} (a {kind.__name__})")
    return record


def _key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return row["latent"], row["task"], row["metric"], canonical_json(row["settings"])


def record_run(run_dir: Path, run_id: str, spec: dict[str, Any], provenance: dict[str, Any],
               checkpoint: str, at: str | None = None) -> dict[str, Any]:
    """Create or refresh the record of a run (its scores kept); returns it."""
    at = at or now()
    try:
        record = read(run_dir)
    except ValueError:
        record = None  # unreadable: rewritten from what this run knows
    if record is None or record["run_id"] != run_id:
        record = {"format": FORMAT, "run_id": run_id, "created_at": at, "scores": []}
    record.update(spec=spec, provenance=provenance, checkpoint=checkpoint, updated_at=at)
    _write(run_dir, record)
    return record


def add_scores(run_dir: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add (or replace, per key) score rows of a recorded run; returns the record."""
    record = read(run_dir)
    if record is None:
        raise ValueError(f"{path_of(run_dir)} does not exist; record the run first")
    merge_scores(record, rows)
    _write(run_dir, record)
    return record


def merge_scores(record: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add (or replace, per key) score rows in a record held in memory; returns it."""
    by_key = {_key(r): r for r in record["scores"]}
    for row in rows:
        value = row["value"]
        clean = {**row, "value": None if value is None or math.isnan(value) else float(value)}
        by_key[_key(clean)] = clean
    record["scores"] = list(by_key.values())
    return record


def holds(record: dict[str, Any], latent: str, task: str, settings: dict[str, Any]) -> bool:
    """Whether the record has scores of ``task`` on ``latent`` with exactly these settings."""
    key = canonical_json(settings)
    return any(r["latent"] == latent and r["task"] == task and canonical_json(r["settings"]) == key
               for r in record["scores"])


def _write(run_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path_of(run_dir), json.dumps(record, indent=1, sort_keys=True, default=json_default) + "\n")


def store_rows(record: dict[str, Any], **filters: Any) -> list[dict[str, Any]]:
    """The record's scores as rows shaped like :meth:`repeval.store.Store.scores` returns
    them (NaN for ``null``), filtered by ``latent`` and ``task`` when given (a value or a list)."""
    spec = record["spec"]
    precision = {"precision": spec["precision"]} if spec.get("precision", "fp32") != "fp32" else {}
    out = []
    for row in record["scores"]:
        if any(want is not None and row[k] not in ([want] if isinstance(want, str) else want)
               for k, want in filters.items()):
            continue
        out.append({"dataset": spec["dataset"], "encoder": spec["encoder"], "latent": row["latent"],
                    "latent_dim": spec["latent_dim"], "seed": spec["seed"], "budget": spec["budget"],
                    "task": row["task"], "metric": row["metric"],
                    "value": math.nan if row["value"] is None else row["value"],
                    "settings": row["settings"], "details": row["details"],
                    "wall_time_s": row.get("wall_time_s", 0.0), "run_id": record["run_id"],
                    "created_at": row.get("created_at"), **precision})
    return out
