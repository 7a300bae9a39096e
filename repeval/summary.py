"""Aggregation of score rows over probe seeds and training seeds, with their intervals.

Noise has three sources, kept apart (DESIGN.md, "Noise"): the training seed (one trained
model per run), the probe seed (a stochastic probe re-run on one model's cached latents;
``repeval run --probe-seeds N``) and the test set. :func:`summarise` aggregates *within a
model over its probe seeds first*, then over the models (training seeds), and attaches a
95 % interval: Student-t over the per-model means when there are two models or more,
else, for a score stored with its per-example correctness (accuracies), a bootstrap over
the test examples (labelled as covering test-set sampling only). Every interval lies in
its metric's declared range (:attr:`repeval.probes.Metric.bounds`): one that reached past
it is cut at the range and marked ``clipped`` (docs/protocol.md §8, "Aggregation").
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from repeval.jsonio import canonical_json
from repeval.store import SCORE_ORDER

GROUP_COLUMNS = ("dataset", "encoder", "latent", "latent_dim", "budget", "task", "metric")


RUN_SEED = "run seed"  # summarise()'s name for a probe seed that follows the run's seed
PROBE_SEED_STRIDE = 10_000  # probe seed j of base seed s is s + j · stride


def probe_seed(base: int, index: int) -> int:
    """The settings seed of probe seed ``index`` (0, 1, …) of a run with seed ``base``: the
    base itself for the first, so one probe seed is the behaviour without the option."""
    return base + index * PROBE_SEED_STRIDE


def probe_index(row: dict[str, Any]) -> int | None:
    """The probe-seed index ``repeval run`` recorded with a row (``details["probe_seed"]``)."""
    details = row.get("details") or {}
    index = details.get("probe_seed") if isinstance(details, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None


def group_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """The :func:`summarise` group of a score row: its :data:`GROUP_COLUMNS` values and its
    canonical settings, with a probe seed that follows the run's seed written as
    :data:`RUN_SEED` (probe seed ``j`` of a row recorded with ``details["probe_seed"] = j``
    counts from its base seed, so a model's probe seeds share one group). A row of a run
    trained in bf16 (``row["precision"]``) gets ``precision`` in its group's settings, so
    bf16 and fp32 runs are never pooled, and tables name the difference as a setting."""
    settings = row["settings"]
    seed = settings.get("seed")
    index = probe_index(row)
    if isinstance(seed, int) and not isinstance(seed, bool) and index is not None:
        seed = seed - index * PROBE_SEED_STRIDE
        settings = {**settings, "seed": seed}
    if seed == row["seed"]:
        settings = {**settings, "seed": RUN_SEED}
    if row.get("precision", "fp32") != "fp32":  # a bf16 run's scores are not pooled with fp32 runs'
        settings = {**settings, "precision": row["precision"]}
    return (*(row[c] for c in GROUP_COLUMNS), canonical_json(settings))


def per_model(members: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A group's rows by model (run id; rows without one count one model per training seed),
    each model's rows in probe-seed order."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for m in members:
        runs.setdefault(f"{m.get('run_id') or ''} seed {m['seed']}", []).append(m)
    for rows in runs.values():
        rows.sort(key=lambda r: (probe_index(r) or 0, canonical_json(r["settings"])))
    return runs


def per_example(rows: list[dict[str, Any]]) -> np.ndarray | None:
    """One model's per-example correctness, averaged over its probe seeds (each example's
    share of probe seeds that got it right); ``None`` unless every row has it, equally long."""
    from repeval.stats import correctness

    vectors = [correctness(r) for r in rows]
    if not vectors or any(v is None for v in vectors) or len({v.size for v in vectors}) != 1:
        return None
    return np.mean(np.stack(vectors), axis=0)


def metric_bounds(task: str, metric: str) -> tuple[float | None, float | None] | None:
    """The declared range of a (task, metric) (:attr:`repeval.probes.Metric.bounds`), or
    ``None`` for a metric no registered probe declares (its intervals are left as computed)."""
    from repeval.probes import metric_facts

    facts = metric_facts(task, metric)
    return facts.bounds if facts is not None else None


def summarise(rows: list[dict[str, Any]], intervals: bool = True) -> list[dict[str, Any]]:
    """Aggregate score rows as the paper's tables do, probe seeds first (docs/protocol.md §4.6).

    Rows are grouped by (dataset, encoder, latent, latent_dim, budget, task, metric,
    settings) as :func:`group_key` says. Each group gives the group columns plus:

    * ``mean``, ``std``: over the models (training seeds) of each model's mean over its probe
      seeds; ``std`` is the population std (ddof=0), as the paper's; ``n`` the number of
      models, ``seeds`` their training seeds (sorted);
    * ``probe_seeds``: probe seeds per model (the fewest any model has), ``probe_std``: the
      mean over models of the population std over probe seeds (0 for one probe seed);
    * ``model_means``: training seed → that model's mean (for paired comparisons);
    * ``ci``: a 95 % interval ``{"low", "high", "kind", "clipped"}`` — ``kind`` ``"t"`` over
      the models (n ≥ 2), or ``"bootstrap"`` over the test examples (n = 1, for scores stored
      with their per-example correctness) — or ``None``; it never leaves the metric's declared
      range (:func:`metric_bounds`), and ``clipped`` says an end was cut there (typical at
      n = 2, where the t interval has one degree of freedom). ``intervals=False`` skips it.

    A NaN in any row makes the group's mean, std and interval NaN/None, so a failed seed is
    never averaged away. Groups come in the order of :data:`SCORE_ORDER`.
    """
    from repeval.stats import bootstrap_interval, t_interval, within

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    summary = []
    for key, members in groups.items():
        models = per_model(members)
        seeds = {run_id: rows_[0]["seed"] for run_id, rows_ in models.items()}
        means = {run_id: float(np.mean([r["value"] for r in rows_])) for run_id, rows_ in models.items()}
        values = np.array(list(means.values()), dtype=float)
        probe_std = [float(np.std([r["value"] for r in rows_])) for rows_ in models.values()]
        mean = float(np.mean(values))
        ci = None
        if intervals and not math.isnan(mean):
            bounds = metric_bounds(key[GROUP_COLUMNS.index("task")], key[GROUP_COLUMNS.index("metric")])
            interval = t_interval(values, bounds=bounds) if len(values) >= 2 else None
            if interval is None and len(values) == 1:
                vector = per_example(next(iter(models.values())))
                interval = within(bootstrap_interval(vector), bounds) if vector is not None else None
            if interval is not None:
                ci = {"low": interval.low, "high": interval.high, "kind": interval.kind, "clipped": interval.clipped}
        summary.append({**dict(zip(GROUP_COLUMNS, key)), "settings": json.loads(key[-1]),
                        "mean": mean, "std": float(np.std(values)), "n": len(models),
                        "seeds": sorted(seeds.values()), "probe_seeds": min(len(r) for r in models.values()),
                        "probe_std": float(np.mean(probe_std)), "ci": ci,
                        "model_means": {seeds[run_id]: value for run_id, value in means.items()}})
    order = [c for c in SCORE_ORDER if c in (*GROUP_COLUMNS, "settings")]
    return sorted(summary, key=lambda s: tuple(canonical_json(s[c]) if c == "settings" else s[c]
                                               for c in order))
