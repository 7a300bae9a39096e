"""The report's numbers: score tables per dataset × latent dim, and the paper comparison.

Everything here is plain data and text (no plotting, no HTML): stored score rows are
aggregated over seeds with :func:`repeval.store.summarise` (mean ± population std, as the
paper's tables, acai.md §4.6) and formatted into strings the template prints as they are.

Conventions shown in every table:

* accuracies in percent, Mean Distance ×10⁻³ (as the paper's Table 1), NMI/ARI and
  Smoothness as stored;
* the best *learned* encoder per column is marked, in the metric's direction (lower is
  better for ``mean_distance`` and ``smoothness``); reference encoders (raw pixels, PCA;
  budget 0 because they are fitted, not trained) sit at the bottom as floors;
* a row of a table is one (encoder, latent, budget): scores at different budgets are never
  averaged together. Columns split into variants (a, b, ...) when one probe was run with
  different settings in the same table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from repeval.specs import PAPER_BUDGET
from repeval.store import canonical_json, summarise

LEARNED_ORDER = ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai")
REFERENCE_ORDER = ("pixels", "pca")
DATASET_ORDER = ("mnist", "svhn", "svhn-extra", "cifar10", "lines")
MINUS = "\u2212"

PAPER_DECIMALS = 2  # the paper's tables print two decimals


@dataclass(frozen=True)
class MetricView:
    """How one (task, metric) is shown: header, unit, display scale, decimals, direction."""

    probe: str
    label: str
    scale: float = 1.0
    decimals: int = 3
    direction: str | None = "higher"  # "higher", "lower", or None (no best marker)
    note: str = ""

    def display(self, value: float) -> float:
        return value * self.scale


# Column order of every score table; unknown (task, metric) pairs follow in name order.
METRIC_VIEWS: dict[tuple[str, str], MetricView] = {
    ("linear", "accuracy_online"): MetricView(
        "Linear, online", "acc. %", 100, 2,
        note="the paper's Table 2 protocol: a dense layer trained alongside the autoencoder on the "
             "stop-gradient latent; median of the last 20 evaluations"),
    ("linear", "accuracy"): MetricView(
        "Linear, offline", "acc. %", 100, 2,
        note="a linear classifier trained on the frozen latents after training (not the paper's protocol)"),
    ("kmeans", "accuracy"): MetricView("k-means", "acc. %", 100, 2,
                                       note="Hungarian-matched clustering accuracy on the test split"),
    ("kmeans", "nmi"): MetricView("k-means", "NMI", 1, 3),
    ("kmeans", "ari"): MetricView("k-means", "ARI", 1, 3),
    ("knn", "accuracy"): MetricView("kNN", "acc. %", 100, 2, note="cosine, k = 20, weighted votes"),
    ("interpolation", "mean_distance"): MetricView(
        "Lines", "mean distance ×10⁻³", 1000, 2, "lower",
        note="cosine distance of decoded interpolants to the nearest true line (lower is better)"),
    ("interpolation", "smoothness"): MetricView(
        "Lines", "smoothness", 1, 3, "lower",
        note="largest normalised angle step minus the even step (lower is better)"),
}


def metric_view(task: str, metric: str) -> MetricView:
    """The view of a (task, metric); unknown pairs are shown as stored, with no best marker."""
    return METRIC_VIEWS.get((task, metric), MetricView(task, metric, 1, 4, None))


# ------------------------------------------------------------------------------ formatting
def fmt_number(value: float, decimals: int) -> str:
    """Fixed decimals with a typographic minus (never ``−0.00``); NaN as ``NaN``."""
    if math.isnan(value):
        return "NaN"
    text = f"{value:.{decimals}f}"
    if text.startswith("-"):
        text = text[1:] if float(text) == 0 else MINUS + text[1:]
    return text


def fmt_signed(value: float, decimals: int) -> str:
    """A difference, always signed: ``+1.20``, ``−0.35``, ``+0.00``."""
    if math.isnan(value):
        return "NaN"
    text = f"{abs(value):.{decimals}f}"
    return ("+" if value >= 0 or float(text) == 0 else MINUS) + text


def fmt_mean_std(mean: float, std: float | None, n: int, decimals: int) -> str:
    """``mean ± std``; a single value (n = 1, or no std) alone."""
    if std is None or n < 2 or math.isnan(mean):
        return fmt_number(mean, decimals)
    return f"{fmt_number(mean, decimals)} ± {fmt_number(std, decimals)}"


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def fmt_budget(budget: int) -> str:
    """Training images: ``16,384 (2¹⁴)``; ``fitted`` for reference encoders (budget 0)."""
    if budget == 0:
        return "fitted"
    power = budget.bit_length() - 1
    exact = f" (2{str(power).translate(_SUPERSCRIPT)})" if budget == 1 << power else ""
    return f"{budget:,}{exact}"


def fmt_budget_share(budget: int) -> str:
    """A budget relative to the paper's 2^24 images, e.g. ``1/1,024 of the paper's``."""
    if budget >= PAPER_BUDGET:
        return "the paper's budget" if budget == PAPER_BUDGET else f"{budget / PAPER_BUDGET:.1f}× the paper's"
    ratio = PAPER_BUDGET / budget
    return f"1/{ratio:,.0f} of the paper's" if ratio == int(ratio) else f"{budget / PAPER_BUDGET:.2%} of the paper's"


# ------------------------------------------------------------------------------ data status
@dataclass(frozen=True)
class DataStatus:
    """Where a run's data came from and whether it was checked against official checksums.

    ``level``: ``unverified`` (the data's checksums differ from the official ones, e.g. a
    rebuilt CIFAR-10 accepted with ``--allow-unverified``), ``unknown`` (the run recorded
    no data origin), or ``recorded`` (the recorded check, e.g. "md5 checked by torchvision",
    "generated", "user-supplied file").
    """

    level: str
    text: str
    fingerprint: str
    source: str

    @property
    def flagged(self) -> bool:
        return self.level != "recorded"


def data_status(provenance: dict[str, Any]) -> DataStatus:
    """Read ``provenance["data"]`` (see :func:`repeval.provenance.collect`)."""
    data = provenance.get("data")
    if not isinstance(data, dict):
        return DataStatus("unknown", "data origin not recorded", "", "")
    verified = str(data.get("verified", ""))
    if not verified:
        level = "unknown"
    elif verified.upper().startswith("NO"):
        level = "unverified"
    else:
        level = "recorded"
    return DataStatus(level, verified or "not recorded", str(data.get("fingerprint", "")),
                      str(data.get("source", "")))


# ------------------------------------------------------------------------------ score tables
def dataset_rank(dataset: str) -> tuple[int, str]:
    """The paper's datasets first, in its order; others by name."""
    return (DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER), dataset)


def encoder_rank(encoder: str, reference: bool) -> tuple[int, int, str]:
    """Paper order for the learned families, others by name; reference encoders last."""
    order = REFERENCE_ORDER if reference else LEARNED_ORDER
    return (int(reference), order.index(encoder) if encoder in order else len(order), encoder)


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

    @property
    def budget_text(self) -> str:
        return fmt_budget(self.budget)

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
        return sorted({r.budget for r in self.rows if not r.reference})

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


def unique_flags(statuses: Iterable[DataStatus]) -> list[DataStatus]:
    """The flagged statuses, without repeats, in first-seen order."""
    seen: dict[tuple[str, str], DataStatus] = {}
    for s in statuses:
        if s.flagged:
            seen.setdefault((s.level, s.text), s)
    return list(seen.values())


def _column_order(task: str, metric: str) -> tuple[int, str, str]:
    keys = list(METRIC_VIEWS)
    return (keys.index((task, metric)), "", "") if (task, metric) in METRIC_VIEWS else (len(keys), task, metric)


def anchor(*parts: object) -> str:
    """An HTML id made of safe characters only."""
    text = "-".join(str(p) for p in parts)
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower() or "x"


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
            table_rows[row_key] = Row(
                encoder=g["encoder"], latent=g["latent"], budget=g["budget"], latent_dim=g["latent_dim"],
                reference=g["budget"] == 0, cells=[None] * len(columns), run_ids=ids,
                data=[data_status(runs[i]["provenance"]) if i in runs else data_status({}) for i in ids])
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


# ------------------------------------------------------------------------------ paper comparison
@dataclass
class Ours:
    """One of our score groups beside a paper value."""

    dataset: str
    latent: str
    budget: int
    n: int
    text: str
    diff: str | None  # ours − paper, in the paper's unit; None for a different protocol
    protocol: str
    settings: str
    data_flags: list[DataStatus]

    @property
    def budget_text(self) -> str:
        return fmt_budget(self.budget)

    @property
    def below_paper_budget(self) -> bool:
        return 0 < self.budget < PAPER_BUDGET


@dataclass
class PaperRow:
    dataset: str  # the paper's name, e.g. "MNIST"
    latent_dim: int
    encoder: str
    quantity: str
    label: str
    unit: str
    paper: str
    status: str
    ours: list[Ours]  # same protocol
    other: list[Ours]  # different protocol (shown for context, no difference)

    @property
    def verified(self) -> bool:
        return not self.status.startswith("unverified")


@dataclass
class PaperTable:
    id: str
    title: str
    section: str
    aggregate: str
    protocols: list[dict[str, Any]]  # the "ours" entries of each quantity, with the quantity label
    rows: list[PaperRow]  # every paper value

    @property
    def matched(self) -> list[PaperRow]:
        return [r for r in self.rows if r.ours or r.other]

    @property
    def has_other(self) -> bool:
        return any(p["protocol"] != "same" for p in self.protocols)

    def grid(self) -> dict[str, Any]:
        """The paper's values laid out as in the paper: (dataset, dim, quantity) × family."""
        families = sorted({r.encoder for r in self.rows}, key=lambda e: encoder_rank(e, False))
        lines: dict[tuple[str, int, str], dict[str, PaperRow]] = {}
        for r in self.rows:
            lines.setdefault((r.dataset, r.latent_dim, r.label), {})[r.encoder] = r
        return {"families": families, "lines": [
            {"dataset": k[0], "latent_dim": k[1], "label": k[2],
             "cells": [v.get(f) for f in families]} for k, v in lines.items()]}


def paper_tables(paper: dict[str, Any], rows: list[dict[str, Any]],
                 runs: dict[str, dict[str, Any]]) -> list[PaperTable]:
    """The tables of ``reports/paper.json`` with our matching score groups beside each value.

    A paper value for (dataset, latent dim, family) is matched with every group of ours on
    one of the dataset's mapped datasets (``datasets[...]["ours"]``) at the same latent dim
    and family, for each (task, metric) the quantity maps to; one line per group (latent,
    budget and probe settings can differ). Differences are ours − paper in the paper's unit,
    and only for the same protocol.
    """
    groups = summarise(rows)
    data_by_group: dict[tuple[Any, ...], list[DataStatus]] = {}
    for r in rows:
        key = (r["dataset"], r["latent_dim"], r["encoder"], r["latent"], r["budget"])
        status = data_status(runs[r["run_id"]]["provenance"]) if r["run_id"] in runs else data_status({})
        data_by_group.setdefault(key, []).append(status)
    index: dict[tuple[str, int, str, str, str], list[dict[str, Any]]] = {}
    for g in groups:
        index.setdefault((g["dataset"], g["latent_dim"], g["encoder"], g["task"], g["metric"]), []).append(g)
    datasets = paper.get("datasets", {})
    out = []
    for table in paper["tables"]:
        protocols = [{**p, "quantity": q["label"], "unit": q["unit"]}
                     for q in table["quantities"].values() for p in q["ours"]]
        paper_rows = []
        for v in table["values"]:
            quantity = table["quantities"][v["quantity"]]
            row = PaperRow(v["dataset"], v["latent_dim"], v["encoder"], v["quantity"], quantity["label"],
                           quantity["unit"], fmt_mean_std(v["mean"], v.get("std"), 2, PAPER_DECIMALS),
                           v["status"], [], [])
            for mapping in quantity["ours"]:
                for ours_dataset in datasets.get(v["dataset"], {}).get("ours", []):
                    for g in index.get((ours_dataset, v["latent_dim"], v["encoder"], mapping["task"],
                                        mapping["metric"]), []):
                        mean, std = g["mean"] * mapping["scale"], g["std"] * mapping["scale"]
                        same = mapping["protocol"] == "same"
                        flags = unique_flags(data_by_group.get(
                            (g["dataset"], g["latent_dim"], g["encoder"], g["latent"], g["budget"]), []))
                        (row.ours if same else row.other).append(Ours(
                            g["dataset"], g["latent"], g["budget"], g["n"],
                            fmt_mean_std(mean, std, g["n"], PAPER_DECIMALS),
                            fmt_signed(mean - v["mean"], PAPER_DECIMALS) if same else None,
                            mapping["protocol"], canonical_json(g["settings"]), flags))
            paper_rows.append(row)
        out.append(PaperTable(table["id"], table["title"], table["section"], table.get("aggregate", ""),
                              protocols, paper_rows))
    return out


def load_paper(text: str) -> dict[str, Any]:
    """Parse ``reports/paper.json`` (its layout is documented in that file's keys)."""
    paper = json.loads(text)
    for table in paper["tables"]:
        for v in table["values"]:
            if v["quantity"] not in table["quantities"]:
                raise ValueError(f"{table['id']}: value for unknown quantity {v['quantity']!r}")
    return paper
