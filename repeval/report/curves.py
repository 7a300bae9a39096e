"""Scores along training: each metric against training images, one line per family.

A run's snapshots (``repeval run --along-training``) are ordinary runs at smaller budgets,
so the curves are the score groups of one (dataset, latent dim, family, latent, probe
settings) at two or more budgets. Per dataset × latent dim, one panel per metric: the
mean over seeds at each budget (a band of ± one std where there are several seeds), the
paper's value for the same protocol as a point at its 2^24 images (filled when corroborated
by a reprint or a secondary note, hollow for an unverified recollection), and the reference
encoders as horizontal lines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from repeval.devices import PAPER_BUDGET
from repeval.jsonio import canonical_json
from repeval.report.format import anchor, fmt_budget, fmt_mean_std
from repeval.report.paper import STANDINGS
from repeval.report.scores import MetricView, _column_order, dataset_rank, encoder_rank, metric_view, variant_names


@dataclass
class Line:
    encoder: str
    latent: str
    budgets: list[int]
    means: list[float]  # display units
    stds: list[float]
    ns: list[int]

    def cell(self, budget: int, decimals: int) -> str:
        if budget not in self.budgets:
            return ""
        i = self.budgets.index(budget)
        return fmt_mean_std(self.means[i], self.stds[i], self.ns[i], decimals)


@dataclass
class Panel:
    task: str
    metric: str
    settings: str
    view: MetricView
    lines: list[Line]
    floors: list[dict[str, Any]] = field(default_factory=list)  # encoder, latent_dim, mean
    paper: list[dict[str, Any]] = field(default_factory=list)  # encoder, value, verified
    variant: str = ""  # the settings that differ from another panel of the same metric

    @property
    def title(self) -> str:
        return f"{self.view.probe}" + (f", {self.variant}" if self.variant else "") + f": {self.view.label}"

    @property
    def budgets(self) -> list[int]:
        return sorted({b for line in self.lines for b in line.budgets})

    def budget_text(self, budget: int) -> str:
        return fmt_budget(budget)


@dataclass
class Block:
    dataset: str
    latent_dim: int
    panels: list[Panel]
    image: str | None = None

    @property
    def anchor(self) -> str:
        return anchor("along", self.dataset, self.latent_dim)


def _paper_values(paper: dict[str, Any] | None) -> dict[tuple[str, int, str, str, str], list[tuple[float, bool]]]:
    """(our dataset, latent dim, encoder, task, metric) → the paper's values in our stored
    units, for quantities measured with the same protocol, with whether each is corroborated."""
    out: dict[tuple[str, int, str, str, str], list[tuple[float, bool]]] = {}
    if not paper:
        return out
    datasets = paper.get("datasets", {})
    for table in paper.get("tables", []):
        for v in table["values"]:
            quantity = table["quantities"][v["quantity"]]
            for mapping in quantity["ours"]:
                if mapping["protocol"] != "same":
                    continue
                for ours in datasets.get(v["dataset"], {}).get("ours", []):
                    key = (ours, v["latent_dim"], v["encoder"], mapping["task"], mapping["metric"])
                    standing = STANDINGS.get(str(v.get("status")))
                    out.setdefault(key, []).append((v["mean"] / mapping["scale"],
                                                    standing is not None and standing.corroborated))
    return out


def along_training(groups: list[dict[str, Any]], paper: dict[str, Any] | None) -> list[Block]:
    """The blocks of the along-training section from :func:`repeval.summary.summarise` groups;
    only (dataset, dim) with at least one family scored at two or more budgets."""
    learned: dict[tuple[str, int, str, str, str], dict[tuple[str, str], list[dict[str, Any]]]] = {}
    references: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for g in groups:
        settings = canonical_json(g["settings"])
        if g["budget"] == 0:
            references.setdefault((g["dataset"], g["task"], g["metric"], settings), []).append(g)
        else:
            key = (g["dataset"], g["latent_dim"], g["task"], g["metric"], settings)
            learned.setdefault(key, {}).setdefault((g["encoder"], g["latent"]), []).append(g)
    papers = _paper_values(paper)
    blocks: dict[tuple[str, int], Block] = {}
    for (dataset, dim, task, metric, settings), by_family in learned.items():
        if not any(len({g["budget"] for g in members}) >= 2 for members in by_family.values()):
            continue
        view = metric_view(task, metric)
        lines = []
        for (encoder, latent), members in sorted(by_family.items(), key=lambda kv: (encoder_rank(kv[0][0], False),
                                                                                     kv[0][1])):
            members = sorted(members, key=lambda g: g["budget"])
            lines.append(Line(encoder, latent, [g["budget"] for g in members],
                              [view.display(g["mean"]) for g in members], [view.display(g["std"]) for g in members],
                              [g["n"] for g in members]))
        floors = [{"encoder": g["encoder"], "latent_dim": g["latent_dim"], "mean": view.display(g["mean"])}
                  for g in sorted(references.get((dataset, task, metric, settings), []),
                                  key=lambda g: encoder_rank(g["encoder"], True))
                  if not math.isnan(g["mean"])]
        marks = [{"encoder": line.encoder, "value": view.display(value), "verified": verified}
                 for line in lines for value, verified in papers.get((dataset, dim, line.encoder, task, metric), [])]
        block = blocks.setdefault((dataset, dim), Block(dataset, dim, []))
        block.panels.append(Panel(task, metric, settings, view, lines, floors, marks))
    out = sorted(blocks.values(), key=lambda b: (dataset_rank(b.dataset), b.latent_dim))
    for block in out:
        block.panels.sort(key=lambda p: (_column_order(p.task, p.metric), p.settings))
        by_metric: dict[tuple[str, str], list[Panel]] = {}
        for p in block.panels:
            by_metric.setdefault((p.task, p.metric), []).append(p)
        for same in by_metric.values():
            for p, name in zip(same, variant_names([p.settings for p in same])):
                p.variant = name
    return out


def settings_text(panel: Panel) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(json.loads(panel.settings).items()))


__all__ = ["Block", "Line", "Panel", "along_training", "settings_text", "PAPER_BUDGET"]
