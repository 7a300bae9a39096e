"""Score rows as text for people and programs: ``repeval results`` and ``repeval run``'s table."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from repeval.errors import UserError
from repeval.jsonio import canonical_json, json_default, json_safe
from repeval.store import SCORE_COLUMNS

# Columns shown by format_results("table"): compact, settings abbreviated.
TABLE_COLUMNS = ("dataset", "encoder", "latent", "latent_dim", "budget", "seed", "task", "metric",
                 "value", "settings")
# Columns shown by format_results("summary") for summarise() groups.
SUMMARY_COLUMNS = ("dataset", "encoder", "latent", "latent_dim", "budget", "task", "metric", "mean", "std",
                   "ci95", "n", "settings")
NUMERIC_COLUMNS = {"latent_dim", "budget", "seed", "value", "mean", "std", "n"}
SETTINGS_WIDTH = 32


def _abbreviate(settings: dict[str, Any]) -> str:
    text = ",".join(f"{k}={canonical_json(v)}" for k, v in sorted(settings.items()))
    return text if len(text) <= SETTINGS_WIDTH else text[:SETTINGS_WIDTH - 3] + "..."


def aligned_table(headers: Sequence[str], cells: Sequence[Sequence[str]], numeric: set[str]) -> str:
    """Fixed-width columns: the ``numeric`` ones right-aligned, the others left-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if h in numeric else v.ljust(w)
                         for h, v, w in zip(headers, values, widths)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def _format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No scores stored."
    return aligned_table(TABLE_COLUMNS, [[str(row[c]) for c in TABLE_COLUMNS[:-2]]
                                         + [f"{row['value']:.4f}", _abbreviate(row["settings"])] for row in rows],
                         NUMERIC_COLUMNS)


def _interval_text(group: dict[str, Any]) -> str:
    """A summary group's 95 % interval: ``low-high t`` over training seeds, ``low-high test``
    over test examples only (one model), ``-`` when there is none."""
    ci = group.get("ci")
    if not ci:
        return "-"
    return f"{ci['low']:.4f}-{ci['high']:.4f} {'t' if ci['kind'] == 't' else 'test'}"


def _format_summary(groups: list[dict[str, Any]]) -> str:
    if not groups:
        return "No scores stored."
    return aligned_table(SUMMARY_COLUMNS, [
        [str(g[c]) for c in SUMMARY_COLUMNS[:-5]]
        + [f"{g['mean']:.4f}", f"{g['std']:.4f}" if g["n"] > 1 else "-", _interval_text(g), str(g["n"]),
           _abbreviate(g["settings"])]
        for g in groups], NUMERIC_COLUMNS)


def _format_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SCORE_COLUMNS)
    for row in rows:
        writer.writerow(
            ["" if isinstance(row[c], float) and math.isnan(row[c]) else
             canonical_json(json_safe(row[c])) if isinstance(row[c], dict) else row[c]
             for c in SCORE_COLUMNS])
    return out.getvalue().rstrip("\n")  # like the other formats: the caller ends the line


def _format_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps([json_safe({c: row[c] for c in SCORE_COLUMNS}) for row in rows], indent=2,
                      allow_nan=False, default=json_default)


FORMATTERS: dict[str, Callable[[list[dict[str, Any]]], str]] = {
    "table": _format_table, "csv": _format_csv, "json": _format_json, "summary": _format_summary}


def format_results(rows: list[dict[str, Any]], fmt: str) -> str:
    """Score rows (from :meth:`Store.scores`), or :func:`summarise` groups, as text.

    * ``table`` — aligned columns for people; settings abbreviated to 32 characters, no
      details, run ids or times.
    * ``csv`` — every column of :data:`SCORE_COLUMNS`; settings/details as canonical JSON,
      NaN as an empty field.
    * ``json`` — a list of flat objects with every column; NaN as ``null``.
    * ``summary`` — for the groups of :func:`summarise` (not score rows): aligned columns
      with mean, std over seeds (``-`` for a single seed), the 95 % interval (``t``: over
      training seeds; ``test``: bootstrap over test examples, for one model) and n.
    """
    if fmt not in FORMATTERS:
        raise UserError(f"Unknown results format {fmt!r}; choose one of: {', '.join(FORMATTERS)}.")
    return FORMATTERS[fmt](rows)
