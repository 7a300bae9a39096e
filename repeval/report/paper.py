"""The paper's Tables 1–3 (``reports/paper.json``) beside our matching score groups.

Every paper value carries its standing, one of the three :data:`STANDINGS` (corroborated by a
reprint, corroborated by a secondary note, unverified recollection), declared per value in
the file (``status``: a key of its ``statuses``, whose ``level`` must be the standing's) and
shown wherever the value appears (docs/protocol.md §9).

Like is compared with like:

* a table of means ± std over reruns (``"cell": "mean_std"``: Tables 1 and 2) shows the
  paper's 95 % interval of its mean (Student-t, assuming ``reruns_assumed`` reruns, since
  the paper does not say how many) beside ours, and the difference ours − paper;
* a table of single draws (``"cell": "single"``: Table 3, one model per cell) sets the
  paper's number against the distribution of our models: inside, above or below our 95 %
  prediction interval for one model (n ≥ 2), or our one model's test-set interval (n = 1),
  and how many of our seeds it exceeds; never a difference of means.

Every interval lies in the metric's declared range (:attr:`repeval.probes.Metric.bounds`, in
the paper's unit); one cut there is marked. Differences and positions only where the protocol
is the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from repeval.devices import PAPER_BUDGET
from repeval.jsonio import canonical_json
from repeval.report.data_status import DataStatus, data_status, unique_flags
from repeval.report.format import fmt_budget, fmt_interval, fmt_mean_std, fmt_number, fmt_signed
from repeval.report.scores import encoder_rank
from repeval.stats import Interval, interval_from_std, prediction_interval
from repeval.summary import metric_bounds, summarise

PAPER_DECIMALS = 2  # the paper's tables print two decimals
CELL_KINDS = ("mean_std", "single")  # a table's cells: mean ± std over reruns, or one model each
DEFAULT_RERUNS = 3  # reruns assumed behind a paper ± when the file does not say


@dataclass(frozen=True)
class Standing:
    """How far a paper value has been checked: ``key`` (the file's ``status``), ``level`` (the
    words shown), ``mark`` (after the value), ``rank`` (2 strongest)."""

    key: str
    level: str
    mark: str
    rank: int

    @property
    def corroborated(self) -> bool:
        return self.rank > 0


STANDINGS: dict[str, Standing] = {s.key: s for s in (
    Standing("reprint", "corroborated by a reprint", "R", 2),
    Standing("secondary", "corroborated by a secondary note", "N", 1),
    Standing("recollection", "unverified recollection", "†", 0),
)}


@dataclass
class Ours:
    """One of our score groups beside a paper value (numbers in the paper's unit)."""

    dataset: str
    latent: str
    budget: int
    n: int
    text: str
    diff: str | None  # ours − paper (mean ± std tables, same protocol); None otherwise
    protocol: str
    settings: str
    data_flags: list[DataStatus]
    ci_text: str = ""  # our 95 % interval of the mean
    ci_note: str = ""
    position: str = ""  # single-draw tables: "above", "inside", "below" (our distribution)
    position_text: str = ""
    values_text: str = ""  # each model's value, by seed

    @property
    def budget_text(self) -> str:
        return fmt_budget(self.budget)

    @property
    def below_paper_budget(self) -> bool:
        return 0 < self.budget < PAPER_BUDGET


@dataclass
class PaperRow:
    dataset: str  # the paper's name, e.g. "MNIST"
    latent_dim: int | None  # None for a reference row (one value per dataset)
    encoder: str
    quantity: str
    label: str
    unit: str
    paper: str
    standing: Standing
    source: str  # the status's source text
    ours: list[Ours]  # same protocol
    other: list[Ours]  # different protocol (shown for context, no difference)
    ci_text: str = ""  # the paper's 95 % interval of its mean (mean ± std tables)
    ci_note: str = ""

    @property
    def status(self) -> str:
        """The standing and its source, as one line (shown on hover)."""
        return f"{self.standing.level}: {self.source}"

    @property
    def verified(self) -> bool:
        """Corroborated by some source (a reprint or a secondary note)."""
        return self.standing.corroborated


@dataclass
class PaperTable:
    id: str
    title: str
    section: str
    aggregate: str
    cell: str  # one of CELL_KINDS
    protocols: list[dict[str, Any]]  # the "ours" entries of each quantity, with the quantity label
    rows: list[PaperRow]  # every paper value
    references: list[PaperRow] = field(default_factory=list)  # other methods printed beside the table
    references_note: str = ""
    reruns: int = DEFAULT_RERUNS

    @property
    def single(self) -> bool:
        return self.cell == "single"

    @property
    def matched(self) -> list[PaperRow]:
        return [r for r in self.rows if r.ours or r.other]

    @property
    def has_other(self) -> bool:
        return any(p["protocol"] != "same" for p in self.protocols)

    @property
    def standings(self) -> list[tuple[Standing, int]]:
        """Each standing its values have, strongest first, with how many."""
        counts: dict[str, int] = {}
        for r in [*self.rows, *self.references]:
            counts[r.standing.key] = counts.get(r.standing.key, 0) + 1
        return [(s, counts[s.key]) for s in sorted(STANDINGS.values(), key=lambda s: -s.rank) if s.key in counts]

    def grid(self) -> dict[str, Any]:
        """The paper's values laid out as in the paper: (dataset, dim, quantity) × family,
        then its reference columns (one value per dataset)."""
        families = sorted({r.encoder for r in self.rows}, key=lambda e: encoder_rank(e, False))
        methods = list(dict.fromkeys(r.encoder for r in self.references))
        refs = {(r.dataset, r.encoder): r for r in self.references}
        lines: dict[tuple[str, int | None, str], dict[str, PaperRow]] = {}
        for r in self.rows:
            lines.setdefault((r.dataset, r.latent_dim, r.label), {})[r.encoder] = r
        return {"families": families, "methods": methods, "lines": [
            {"dataset": k[0], "latent_dim": k[1], "label": k[2], "cells": [v.get(f) for f in families],
             "references": [refs.get((k[0], m)) for m in methods]} for k, v in lines.items()]}


def paper_bounds(quantity: dict[str, Any]) -> tuple[float | None, float | None] | None:
    """The declared range of the quantity's first same-protocol metric, in the paper's unit."""
    for mapping in quantity["ours"]:
        bounds = metric_bounds(mapping["task"], mapping["metric"])
        if bounds is not None:
            return tuple(None if b is None else b * mapping["scale"] for b in bounds)  # type: ignore[return-value]
    return None


def _interval_note(interval: Interval, what: str) -> str:
    return what + (" (cut at the metric's range)" if interval.clipped else "")


def _position(paper: float, values: list[float], ci: dict[str, Any] | None, scale: float,
              bounds: tuple[float | None, float | None] | None, decimals: int) -> tuple[str, str]:
    """Where a single draw of the paper falls among our models: ``(position, what)``, read
    together as e.g. "above | our 95 % range for one model [..]; above 3 of our 3 models"."""
    if len(values) >= 2:
        interval = prediction_interval(values, bounds=bounds)
        if interval is None:
            return "", ""
        beaten = sum(v < paper for v in values)
        return interval.position(paper), (
            f"our 95 % range for one model {fmt_interval(interval.low, interval.high, decimals)}"
            + ("ᶜ" if interval.clipped else "") + f"; above {beaten} of our {len(values)} models")
    if ci is not None:
        interval = Interval(ci["low"] * scale, ci["high"] * scale, ci["kind"], bool(ci.get("clipped")))
        return interval.position(paper), (
            f"our one model's test-set interval {fmt_interval(interval.low, interval.high, decimals)} "
            "(the test set's luck only; train more seeds for a range over models)")
    where = "above" if paper > values[0] else "below" if paper < values[0] else "equal to"
    return where, "our one model (no interval: one seed)"


def _row(table: dict[str, Any], v: dict[str, Any], statuses: dict[str, Any], reruns: int,
         latent_dim: int | None, encoder: str) -> PaperRow:
    quantity = table["quantities"][v["quantity"]]
    standing = STANDINGS[v["status"]]
    row = PaperRow(v["dataset"], latent_dim, encoder, v["quantity"], quantity["label"], quantity["unit"],
                   fmt_mean_std(v["mean"], v.get("std"), 2, PAPER_DECIMALS), standing,
                   statuses[v["status"]]["source"], [], [])
    if table.get("cell") == "mean_std" and v.get("std") is not None:
        interval = interval_from_std(v["mean"], v["std"], reruns, bounds=paper_bounds(quantity))
        if interval is not None:
            row.ci_text = fmt_interval(interval.low, interval.high, PAPER_DECIMALS) + ("ᶜ" if interval.clipped else "")
            row.ci_note = _interval_note(interval, f"95 % t interval of the paper's mean, assuming {reruns} reruns "
                                                   "(the paper does not say how many)")
    return row


def paper_tables(paper: dict[str, Any], rows: list[dict[str, Any]],
                 runs: dict[str, dict[str, Any]]) -> list[PaperTable]:
    """The tables of ``reports/paper.json`` with our matching score groups beside each value.

    A paper value for (dataset, latent dim, family) is matched with every group of ours on
    one of the dataset's mapped datasets (``datasets[...]["ours"]``) at the same latent dim
    and family, for each (task, metric) the quantity maps to; one line per group (latent,
    budget and probe settings can differ). A reference row (``references``: another method
    printed beside the table) is matched with our encoder named in its ``ours``, at any
    latent dim, for context only. Mean ± std tables get both 95 % intervals and ours −
    paper; single-draw tables the paper's position in our distribution (module docstring).
    """
    groups = summarise(rows)
    data_by_group: dict[tuple[Any, ...], list[DataStatus]] = {}
    for r in rows:
        key = (r["dataset"], r["latent_dim"], r["encoder"], r["latent"], r["budget"])
        status = data_status(runs[r["run_id"]]["provenance"]) if r["run_id"] in runs else data_status({})
        data_by_group.setdefault(key, []).append(status)
    index: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for g in groups:
        index.setdefault((g["dataset"], g["encoder"], g["task"], g["metric"]), []).append(g)
    datasets = paper.get("datasets", {})
    statuses = paper.get("statuses", {})
    reruns = int(paper.get("reruns_assumed", DEFAULT_RERUNS))
    out = []
    for table in paper["tables"]:
        single = table.get("cell") == "single"
        protocols = [{**p, "quantity": q["label"], "unit": q["unit"]}
                     for q in table["quantities"].values() for p in q["ours"]]

        def match(row: PaperRow, v: dict[str, Any], encoder: str, dim: int | None, same_allowed: bool) -> None:
            quantity = table["quantities"][v["quantity"]]
            bounds = paper_bounds(quantity)
            for mapping in quantity["ours"]:
                same = mapping["protocol"] == "same" and same_allowed
                for ours_dataset in datasets.get(v["dataset"], {}).get("ours", []):
                    for g in index.get((ours_dataset, encoder, mapping["task"], mapping["metric"]), []):
                        if dim is not None and g["latent_dim"] != dim:
                            continue
                        scale = mapping["scale"]
                        mean, std = g["mean"] * scale, g["std"] * scale
                        flags = unique_flags(data_by_group.get(
                            (g["dataset"], g["latent_dim"], g["encoder"], g["latent"], g["budget"]), []))
                        ci = g.get("ci")
                        o = Ours(g["dataset"], g["latent"], g["budget"], g["n"],
                                 fmt_mean_std(mean, std, g["n"], PAPER_DECIMALS),
                                 fmt_signed(mean - v["mean"], PAPER_DECIMALS) if same and not single else None,
                                 mapping["protocol"], canonical_json(g["settings"]), flags)
                        if ci:
                            o.ci_text = fmt_interval(ci["low"] * scale, ci["high"] * scale, PAPER_DECIMALS) \
                                + ("ᶜ" if ci.get("clipped") else "")
                            o.ci_note = ("95 % t interval over our training seeds" if ci["kind"] == "t" else
                                         "95 % bootstrap over the test examples (one model: the test set's luck "
                                         "only)") + (" (cut at the metric's range)" if ci.get("clipped") else "")
                        models = g.get("model_means", {})
                        o.values_text = ", ".join(f"seed {s}: {fmt_number(m * scale, PAPER_DECIMALS)}"
                                                  for s, m in sorted(models.items()))
                        if single and same:
                            o.position, o.position_text = _position(
                                v["mean"], [models[s] * scale for s in sorted(models)], ci, scale, bounds,
                                PAPER_DECIMALS)
                        (row.ours if same else row.other).append(o)

        paper_rows = []
        for v in table["values"]:
            row = _row(table, v, statuses, reruns, v["latent_dim"], v["encoder"])
            match(row, v, v["encoder"], v["latent_dim"], True)
            paper_rows.append(row)
        references = []
        for v in table.get("references", []):
            row = _row(table, v, statuses, reruns, None, v.get("label", v["method"]))
            if v.get("ours"):
                match(row, v, v["ours"], None, False)
            references.append(row)
        out.append(PaperTable(table["id"], table["title"], table["section"], table.get("aggregate", ""),
                              table.get("cell", "mean_std"), protocols, paper_rows, references,
                              table.get("references_note", ""), reruns))
    return out


def load_paper(text: str) -> dict[str, Any]:
    """Parse ``reports/paper.json`` (its layout is documented in that file's keys) and check
    its declared vocabulary: every value's ``status`` is a key of ``statuses`` whose
    ``level`` is that standing's (:data:`STANDINGS`), every table's ``cell`` is one of
    :data:`CELL_KINDS` and every quantity is declared."""
    paper = json.loads(text)
    statuses = paper.get("statuses")
    if not isinstance(statuses, dict):
        raise ValueError("no 'statuses' (the standing of the values) declared")
    for key, status in statuses.items():
        if key not in STANDINGS or status.get("level") != STANDINGS[key].level or not status.get("source"):
            raise ValueError(f"status {key!r} must be one of {sorted(STANDINGS)} with its level "
                             f"({', '.join(repr(s.level) for s in STANDINGS.values())}) and a source")
    for table in paper["tables"]:
        if table.get("cell", "mean_std") not in CELL_KINDS:
            raise ValueError(f"{table['id']}: cell must be one of {CELL_KINDS}, got {table.get('cell')!r}")
        for v in [*table["values"], *table.get("references", [])]:
            if v["quantity"] not in table["quantities"]:
                raise ValueError(f"{table['id']}: value for unknown quantity {v['quantity']!r}")
            if v.get("status") not in statuses:
                raise ValueError(f"{table['id']}: value {v.get('dataset')} {v.get('latent_dim', '')} "
                                 f"{v.get('encoder', v.get('method'))} has status {v.get('status')!r}, "
                                 f"not one of {sorted(statuses)}")
    return paper
