"""The report's score tables: one per dataset × latent dim, encoders × probe metrics.

Stored score rows are aggregated over seeds with :func:`repeval.summary.summarise` (mean ±
population std, as the paper's tables, ``docs/protocol.md`` §4.6) and formatted into
strings the template prints as they are. What each metric column shows (heading, unit,
scale, decimals, direction) is its probe's declaration (:mod:`repeval.probes`).

Conventions shown in every table:

* the best *learned* encoder per column is marked, in the metric's direction; reference
  encoders (raw pixels, PCA; budget 0 because they are fitted, not trained) sit at the
  bottom as floors;
* a row of a table is one (encoder, latent, budget): scores at different budgets are never
  averaged together. Columns split into variants (a, b, ...) when one probe was run with
  different settings in the same table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from repeval.devices import PAPER_BUDGET
from repeval.jsonio import canonical_json
from repeval.report.data_status import DataStatus, data_status, unique_flags
from repeval.report.format import anchor, fmt_budget, fmt_mean_std
from repeval.summary import summarise


def dataset_rank(dataset: str) -> tuple[int, str]:
    """Registration order of the datasets (the paper's first); unregistered ones by name."""
    from repeval.data import DATASETS

    return (DATASETS.index(dataset), dataset)


def encoder_rank(encoder: str, reference: bool) -> tuple[int, int, str]:
    """Registration order of the families (the paper's first); reference encoders last;
    unregistered ones (e.g. from a plugin no longer installed) by name."""
    from encoders import REGISTRY

    return (int(reference), REGISTRY.index(encoder), encoder)


@dataclass(frozen=True)
class MetricView:
    """How one (task, metric) is shown: heading, label with unit, display scale, decimals,
    direction and a note; made from the probe's :class:`repeval.probes.Metric` declaration."""

    probe: str
    label: str
    scale: float = 1.0
    decimals: int = 3
    direction: str | None = "higher"  # "higher", "lower", or None (no best marker)
    note: str = ""

    def display(self, value: float) -> float:
        return value * self.scale


def metric_view(task: str, metric: str) -> MetricView:
    """The declared view of a (task, metric); one no registered probe declares is shown as
    stored, with no best marker."""
    from repeval.probes import TASKS, metric_facts

    facts = metric_facts(task, metric)
    if facts is None:
        return MetricView(task, metric, 1, 4, None)
    return MetricView(facts.heading or TASKS.get(task).label or task, facts.column_label, facts.scale,
                      facts.decimals, None if facts.direction == "none" else facts.direction, facts.note)


def _column_order(task: str, metric: str) -> tuple[int, int, str, str]:
    """Tasks in registration order, each task's metrics in declaration order; others after, by name."""
    from repeval.probes import TASKS

    if task in TASKS:
        names = [m.name for m in TASKS.get(task).metrics]
        if metric in names:
            return (TASKS.index(task), names.index(metric), "", "")
    return (len(TASKS), 0, task, metric)


@dataclass
class Cell:
    """One table cell: the display text and what it was made of."""

    text: str
    mean: float
    std: float
    n: int
    seeds: list[int]
    settings: str
    best: bool = False


@dataclass
class Column:
    task: str
    metric: str
    view: MetricView
    variant: str  # "" or "a", "b", ... when the probe ran with several settings here
    settings: str  # canonical JSON of the settings of this column

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.task, self.metric, self.settings)


@dataclass
class Row:
    encoder: str
    latent: str
    budget: int
    latent_dim: int  # a reference floor may differ from its table's dim
    reference: bool
    cells: list[Cell | None]
    data: list[DataStatus]
    run_ids: list[str] = field(default_factory=list)
    external: bool = False  # an encoder from outside repeval (latents: or python:), compared like the learned

    @property
    def budget_text(self) -> str:
        return "external" if self.external else fmt_budget(self.budget)

    @property
    def provenance_anchor(self) -> str:
        """The provenance entry of the row's first run."""
        return anchor("run", self.run_ids[0]) if self.run_ids else ""

    @property
    def data_flags(self) -> list[DataStatus]:
        return unique_flags(self.data)

    @property
    def n(self) -> int | None:
        """The number of seeds when every cell of the row has the same, else ``None``."""
        counts = {c.n for c in self.cells if c is not None}
        return counts.pop() if len(counts) == 1 else None


@dataclass
class ScoreTable:
    """Encoders × probe metrics for one dataset and latent dim."""

    dataset: str
    latent_dim: int
    columns: list[Column]
    rows: list[Row]
    anchor: str

    @property
    def budgets(self) -> list[int]:
        return sorted({r.budget for r in self.rows if not r.reference and not r.external})

    @property
    def budget_texts(self) -> list[tuple[str, bool]]:
        """Each learned budget as text, and whether it is below the paper's 2^24 images."""
        return [(fmt_budget(b), b < PAPER_BUDGET) for b in self.budgets]

    @property
    def data_flags(self) -> list[DataStatus]:
        return unique_flags(d for r in self.rows for d in r.data)

    @property
    def rows_share_data_flags(self) -> bool:
        """Whether every row has the same data flags (then the heading's flag says it all)."""
        return len({tuple((d.level, d.text) for d in r.data_flags) for r in self.rows}) <= 1

    @property
    def variants(self) -> list[Column]:
        return [c for c in self.columns if c.variant]

    def column(self, task: str, metric: str) -> list[Column]:
        return [c for c in self.columns if (c.task, c.metric) == (task, metric)]


def score_tables(rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> list[ScoreTable]:
    """One :class:`ScoreTable` per (dataset, latent dim) of the learned encoders' scores.

    Reference encoders join the table of their own latent dim; one whose dim has no
    learned table (raw pixels: C×32×32 values) is a floor row in every table of its dataset.
    A dataset with reference encoders only gets one table per reference dim.
    ``rows`` come from :meth:`Store.scores`; ``runs`` maps run ids to :meth:`Store.runs` rows
    (for the data status of each row; a score whose run is missing is shown as ``unknown``).
    """
    run_ids: dict[tuple[Any, ...], list[str]] = {}
    for r in rows:
        ids = run_ids.setdefault((r["dataset"], r["latent_dim"], r["encoder"], r["latent"], r["budget"]), [])
        if r["run_id"] not in ids:
            ids.append(r["run_id"])
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for g in summarise(rows):
        by_dataset.setdefault(g["dataset"], []).append(g)
    tables = []
    for dataset in sorted(by_dataset, key=dataset_rank):
        members = by_dataset[dataset]
        dims = sorted({g["latent_dim"] for g in members if g["budget"] != 0}) or \
            sorted({g["latent_dim"] for g in members})
        for dim in dims:
            chosen = [g for g in members
                      if g["latent_dim"] == dim or (g["budget"] == 0 and g["latent_dim"] not in dims)]
            tables.append(_score_table(dataset, dim, chosen, run_ids, runs))
    return tables


def _score_table(dataset: str, dim: int, groups: list[dict[str, Any]],
                 run_ids: dict[tuple[Any, ...], list[str]], runs: dict[str, dict[str, Any]]) -> ScoreTable:
    settings_by_metric: dict[tuple[str, str], list[str]] = {}
    for g in groups:
        variants = settings_by_metric.setdefault((g["task"], g["metric"]), [])
        text = canonical_json(g["settings"])
        if text not in variants:
            variants.append(text)
    columns = []
    for (task, metric), variants in sorted(settings_by_metric.items(), key=lambda kv: _column_order(*kv[0])):
        for i, text in enumerate(sorted(variants)):
            columns.append(Column(task, metric, metric_view(task, metric),
                                  chr(ord("a") + i) if len(variants) > 1 else "", text))
    index = {c.key: i for i, c in enumerate(columns)}
    table_rows: dict[tuple[str, str, int, int], Row] = {}
    for g in groups:
        row_key = (g["encoder"], g["latent"], g["budget"], g["latent_dim"])
        if row_key not in table_rows:
            ids = run_ids.get((dataset, g["latent_dim"], g["encoder"], g["latent"], g["budget"]), [])
            external = any((runs[i].get("spec") or {}).get("source") for i in ids if i in runs)
            table_rows[row_key] = Row(
                encoder=g["encoder"], latent=g["latent"], budget=g["budget"], latent_dim=g["latent_dim"],
                reference=g["budget"] == 0 and not external, cells=[None] * len(columns), run_ids=ids,
                data=[data_status(runs[i]["provenance"]) if i in runs else data_status({}) for i in ids],
                external=external)
        col = index[(g["task"], g["metric"], canonical_json(g["settings"]))]
        view = columns[col].view
        mean, std = view.display(g["mean"]), view.display(g["std"])
        table_rows[row_key].cells[col] = Cell(fmt_mean_std(mean, std, g["n"], view.decimals), mean, std,
                                              g["n"], g["seeds"], columns[col].settings)
    ordered = sorted(table_rows.values(), key=lambda r: (*encoder_rank(r.encoder, r.reference), r.latent,
                                                         r.budget, r.latent_dim))
    for col, column in enumerate(columns):
        _mark_best(column.view.direction, [r.cells[col] for r in ordered if not r.reference])
    return ScoreTable(dataset, dim, columns, ordered, anchor("scores", dataset, dim))


def _mark_best(direction: str | None, cells: list[Cell | None]) -> None:
    """Mark the best finite mean (all ties) among ``cells``, unless all are equal (or fewer than two)."""
    finite = [c for c in cells if c is not None and not math.isnan(c.mean)]
    if direction is None or len({c.mean for c in finite}) < 2:
        return
    pick = max if direction == "higher" else min
    best = pick(c.mean for c in finite)
    for c in finite:
        c.best = c.mean == best
