"""Aggregation of score rows over seeds, as the paper's tables do."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from repeval.jsonio import canonical_json
from repeval.store import SCORE_ORDER

GROUP_COLUMNS = ("dataset", "encoder", "latent", "latent_dim", "budget", "task", "metric")


RUN_SEED = "run seed"  # summarise()'s name for a probe seed that follows the run's seed


def group_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """The :func:`summarise` group of a score row: its :data:`GROUP_COLUMNS` values and its
    canonical settings, with a probe seed equal to the run's seed written as :data:`RUN_SEED`."""
    settings = row["settings"]
    if settings.get("seed") == row["seed"]:
        settings = {**settings, "seed": RUN_SEED}
    return (*(row[c] for c in GROUP_COLUMNS), canonical_json(settings))


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate score rows over seeds as the paper's tables do: mean ± np.std (docs/protocol.md §4.6).

    Rows are grouped by (dataset, encoder, latent, latent_dim, budget, task, metric,
    settings), where a probe ``seed`` setting equal to the row's run seed counts as
    ``"run seed"`` (``repeval run`` seeds each probe with its run's seed, so the seeds of one
    configuration pool). Each group gives the group columns plus ``mean``, ``std`` (population std,
    ddof=0), ``n`` (number of rows) and ``seeds`` (sorted). A NaN in any seed makes the
    group's mean and std NaN, so a failed seed is never averaged away. Groups come in the
    order of :data:`SCORE_ORDER`.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    summary = []
    for key, members in groups.items():
        values = np.array([m["value"] for m in members], dtype=float)
        summary.append({**dict(zip(GROUP_COLUMNS, key)), "settings": json.loads(key[-1]),
                        "mean": float(np.mean(values)), "std": float(np.std(values)),
                        "n": len(members), "seeds": sorted(m["seed"] for m in members)})
    order = [c for c in SCORE_ORDER if c in (*GROUP_COLUMNS, "settings")]
    return sorted(summary, key=lambda s: tuple(canonical_json(s[c]) if c == "settings" else s[c]
                                               for c in order))
