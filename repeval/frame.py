"""``Results``: the score rows a Python call returns, with the views researchers ask for.

The rows are the store's own (``repeval.store.Store.scores``: dataset, encoder, latent,
latent size, seed, budget, task, metric, value, settings, details with provenance keys, the
run id and time), plus ``reused`` for rows a call found already stored. Every view is
computed by the modules the command line uses — :func:`repeval.summary.summarise` (means
and 95 % intervals, as ``repeval results``/``run`` print), :func:`repeval.compare.compare`
(as ``repeval compare``), :func:`repeval.check.write_baseline` (as ``repeval check
--write-baseline``), :func:`repeval.trackers.log_rows` (as ``repeval export``) — so the
shell and Python give the same numbers. pandas is imported only by the DataFrame views.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.jsonio import canonical_json

LONG_COLUMNS = ("dataset", "encoder", "latent", "latent_dim", "budget", "seed", "task", "metric", "value",
                "probe_seed", "settings", "reused", "run_id", "wall_time_s", "created_at")
WIDE_INDEX = ("dataset", "encoder", "latent", "latent_dim", "budget", "seed", "probe_seed")
FILTERS = ("dataset", "encoder", "latent", "latent_dim", "seed", "budget", "task", "metric", "run_id")


def _matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    for key, want in filters.items():
        if want is None:
            continue
        if key not in FILTERS:
            raise UserError(f"Unknown filter {key}=...; filter by one of: {', '.join(FILTERS)}.")
        accepted = want if isinstance(want, (list, tuple, set, frozenset)) else [want]
        if row.get(key) not in accepted:
            return False
    return True


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={canonical_json(v)}" for k, v in sorted(settings.items()))


class Results(Sequence):
    """Score rows with views: :meth:`score`, :meth:`to_dataframe`, :meth:`summary`,
    :meth:`compare`, :meth:`to_baseline`, :meth:`log_to`, and an HTML table in notebooks.

    It is a sequence of row dicts (``results[0]["value"]``), in the store's order."""

    def __init__(self, rows: Sequence[dict[str, Any]] = ()) -> None:
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]

    # ---------------------------------------------------------------- the sequence
    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Results(self.rows[index])
        return self.rows[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __add__(self, other: "Results") -> "Results":
        return Results([*self.rows, *other.rows])

    def filter(self, **filters: Any) -> "Results":
        """The rows whose columns equal the filters (a value, or a list of accepted values)."""
        return Results([r for r in self.rows if _matches(r, filters)])

    @property
    def reused(self) -> bool:
        """Whether every row was found stored rather than computed by the call."""
        return bool(self.rows) and all(r.get("reused") for r in self.rows)

    # ---------------------------------------------------------------- numbers
    def summary(self) -> list[dict[str, Any]]:
        """:func:`repeval.summary.summarise` of the rows: per (dataset, encoder, latent, latent
        size, budget, task, metric, settings) the mean over training seeds (probe seeds
        averaged first), the population std, n and the 95 % interval."""
        from repeval.summary import summarise

        return summarise(self.rows)

    def score(self, task: str, metric: str = "accuracy", encoder: str | None = None, **filters: Any) -> float:
        """One number: ``task``'s ``metric`` (of ``encoder`` when the rows hold several), the
        mean over training seeds as :meth:`summary` gives it. More than one matching group
        (other datasets, latent sizes, budgets or probe settings) is ambiguous: the error lists
        them and the filter that picks one."""
        rows = self.filter(task=task, metric=metric, encoder=encoder, **filters).rows
        if not rows:
            have = sorted({f"{r['task']}/{r['metric']}" for r in self.filter(encoder=encoder).rows})
            encoders = sorted({r["encoder"] for r in self.rows})
            raise UserError(f"No score {task}/{metric}{f' of {encoder}' if encoder else ''} in these results. They "
                            f"hold (task/metric): {', '.join(have) or 'nothing'}; encoders: "
                            f"{', '.join(encoders) or 'none'}.")
        groups = Results(rows).summary()
        if len(groups) > 1:
            differ = [c for c in ("encoder", "dataset", "latent", "latent_dim", "budget")
                      if len({g[c] for g in groups}) > 1]
            listing = "; ".join(f"{', '.join(f'{c}={g[c]!r}' for c in differ)}"
                                + (f" settings {_settings_text(g['settings'])}" if not differ else "")
                                for g in groups[:6])
            hint = (f"pass {differ[0]}=... to pick one" if differ else
                    "filter the rows first (results.filter(...)) or call summary()")
            raise UserError(f"{len(groups)} groups match {task}/{metric}: {listing}. Say which: {hint}.")
        return float(groups[0]["mean"])

    # ---------------------------------------------------------------- frames
    def to_dataframe(self, kind: str = "long"):
        """The rows as a pandas DataFrame.

        * ``long`` — one row per score (what seaborn wants): :data:`LONG_COLUMNS`, settings
          as canonical JSON text, ``probe_seed`` from the details.
        * ``wide`` — one row per model (dataset, encoder, latent, size, budget, seed, probe
          seed), one column per ``task/metric`` (the settings added where a task/metric was
          stored under several).
        * ``summary`` — :meth:`summary` as a table: mean, std, n, 95 % interval
          (``ci_low``, ``ci_high``, ``ci_kind``), seeds, probe seeds.
        """
        import pandas as pd

        if kind == "long":
            return pd.DataFrame([self._long(r) for r in self.rows], columns=list(LONG_COLUMNS))
        if kind == "wide":
            long = pd.DataFrame([self._long(r) for r in self.rows], columns=list(LONG_COLUMNS))
            if long.empty:
                return pd.DataFrame(columns=list(WIDE_INDEX))
            variants = long.groupby(["task", "metric"])["settings"].nunique()
            long["column"] = [f"{t}/{m}" if variants[(t, m)] == 1 else f"{t}/{m} [{s}]"
                              for t, m, s in zip(long["task"], long["metric"], long["settings"])]
            seeded = long["probe_seed"].fillna(0).max() > 0  # several probe seeds: one row per probe seed
            index = [c for c in WIDE_INDEX if c != "probe_seed" or seeded]
            if seeded:
                long["probe_seed"] = long["probe_seed"].fillna(-1).astype(int)
            wide = long.pivot(index=index, columns="column", values="value")
            wide.columns.name = None
            wide = wide.reset_index()
            return wide.replace({"probe_seed": {-1: None}}) if seeded else wide
        if kind == "summary":
            out = []
            for g in self.summary():
                ci = g.get("ci") or {}
                out.append({**{c: g[c] for c in ("dataset", "encoder", "latent", "latent_dim", "budget", "task",
                                                 "metric")},
                            "settings": canonical_json(g["settings"]), "mean": g["mean"], "std": g["std"],
                            "n": g["n"], "ci_low": ci.get("low", math.nan), "ci_high": ci.get("high", math.nan),
                            "ci_kind": ci.get("kind"), "seeds": g["seeds"], "probe_seeds": g["probe_seeds"]})
            return pd.DataFrame(out, columns=["dataset", "encoder", "latent", "latent_dim", "budget", "task",
                                              "metric", "settings", "mean", "std", "n", "ci_low", "ci_high",
                                              "ci_kind", "seeds", "probe_seeds"])
        raise UserError(f"to_dataframe(kind={kind!r}): choose 'long' (one row per score), 'wide' (one row per "
                        "model) or 'summary' (means and 95 % intervals).")

    @staticmethod
    def _long(row: dict[str, Any]) -> dict[str, Any]:
        details = row.get("details") or {}
        index = details.get("probe_seed") if isinstance(details, dict) else None
        return {**{c: row.get(c) for c in LONG_COLUMNS}, "settings": canonical_json(row.get("settings") or {}),
                "probe_seed": index, "reused": bool(row.get("reused", False))}

    # ---------------------------------------------------------------- the command line's views
    def compare(self, a: str, b: str, *, dataset: str | None = None, task: str | None = None,
                metric: str | None = None):
        """B − A, paired as ``repeval compare`` pairs them (over shared training seeds, or on
        the same test examples for one seed), as a DataFrame: one row per dataset, task,
        metric, settings, latent size and budget, with the difference, its 95 % interval, p,
        n and the test."""
        import pandas as pd

        from repeval.compare import compare

        lines = compare(self.rows, a, b, dataset=dataset, task=task, metric=metric)
        return pd.DataFrame([{"dataset": x.dataset, "task": x.task, "metric": x.metric, "settings": x.settings,
                              "latent_dim_a": x.a.latent_dim, "latent_dim_b": x.b.latent_dim,
                              "budget_a": x.a.budget, "budget_b": x.b.budget, "a": x.a.mean, "b": x.b.mean,
                              "difference": x.diff.mean, "low": x.diff.low, "high": x.diff.high, "p": x.diff.p,
                              "n": x.diff.n, "test": x.diff.test, "significant": x.diff.significant}
                             for x in lines])

    def to_baseline(self, path: str | Path) -> int:
        """Write the rows as a ``repeval check`` baseline file; returns the rows written."""
        from repeval.check import write_baseline

        return write_baseline([{k: v for k, v in r.items() if k != "reused"} for r in self.rows], Path(path))

    def log_to(self, tracker, *, prefix: str = "") -> dict[str, float]:
        """Log the scores to an experiment tracker (the ``mlflow`` module or anything with
        ``log_metrics``, a W&B run, a TensorBoard ``SummaryWriter``), as ``repeval export``
        does; returns the metrics logged."""
        from repeval.trackers import log_rows

        return log_rows(self.rows, tracker, prefix=prefix)

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        encoders = sorted({r["encoder"] for r in self.rows})
        tasks = sorted({r["task"] for r in self.rows})
        reused = sum(bool(r.get("reused")) for r in self.rows)
        return (f"<Results: {len(self.rows)} scores of {', '.join(encoders) or 'no encoder'} "
                f"({', '.join(tasks) or 'no task'}){f', {reused} reused from the store' if reused else ''}>")

    def _repr_html_(self) -> str:
        """The summary as an HTML table: mean ± std, the 95 % interval and n per group, with
        the budget and every probe setting (k-means restarts among them) visible."""
        from repeval.results import _interval_text

        groups = self.summary()
        head = ("<tr><th>dataset</th><th>encoder</th><th>latent</th><th>budget</th><th>task</th><th>metric</th>"
                "<th>mean</th><th>± std</th><th>95 % interval</th><th>n</th><th>settings</th></tr>")
        body = []
        for g in groups:
            cells = [g["dataset"], g["encoder"], f"{g['latent']} ({g['latent_dim']})", f"{g['budget']:,}",
                     g["task"], g["metric"], "undefined" if math.isnan(g["mean"]) else f"{g['mean']:.4f}",
                     f"{g['std']:.4f}" if g["n"] > 1 else "-", _interval_text(g), str(g["n"]),
                     _settings_text(g["settings"])]
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        reused = sum(bool(r.get("reused")) for r in self.rows)
        note = (f"<p>{len(self.rows)} score rows; {reused} reused from the store, not recomputed.</p>" if reused
                else f"<p>{len(self.rows)} score rows.</p>")
        return f"<div><table>{head}{''.join(body)}</table>{note}</div>"
