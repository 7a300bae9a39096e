"""The paper's Tables 1–3 (``reports/paper.json``) beside our matching score groups.

Every paper value is an unverified recollection unless its status says otherwise
(``docs/protocol.md`` §9); differences are ours − paper in the paper's unit, and only where
the protocol is the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from repeval.devices import PAPER_BUDGET
from repeval.jsonio import canonical_json
from repeval.report.data_status import DataStatus, data_status, unique_flags
from repeval.report.format import fmt_budget, fmt_mean_std, fmt_signed
from repeval.report.scores import encoder_rank
from repeval.summary import summarise

PAPER_DECIMALS = 2  # the paper's tables print two decimals


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
    groups = summarise(rows, intervals=False)
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
