"""The report's score tables: one per dataset × latent dim, encoders × probe metrics.

Stored score rows are aggregated with :func:`repeval.summary.summarise` (probe seeds within
each model first, then mean ± population std over the models, as the paper's tables,
``docs/protocol.md`` §4.6, with a 95 % interval) and formatted into strings the template
prints as they are. What each metric column shows (heading, unit, scale, decimals,
direction) is its probe's declaration (:mod:`repeval.probes`).

Conventions shown in every table:

* the best *learned* encoder per column is marked, in the metric's direction, only where it
  is significantly ahead (p < 0.05, :mod:`repeval.compare`: paired over shared training
  seeds, or McNemar on the test examples for one seed); encoders it is not significantly
  ahead of share the mark; reference encoders (raw pixels, PCA; budget 0 because they are
  fitted, not trained) sit at the bottom as floors;
* a row of a table is one (encoder, latent, budget): scores at different budgets are never
  averaged together. When one probe was run with different settings in the same table, its
  columns are named by the settings that differ (``k-means, 100 restarts``,
  :func:`variant_names`);
* every interval lies in its metric's declared range; one cut there is marked (``ci_clipped``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from repeval.compare import Side, difference, sides
from repeval.devices import PAPER_BUDGET
from repeval.jsonio import canonical_json
from repeval.report.data_status import DataStatus, data_status, unique_flags
from repeval.report.format import anchor, fmt_budget, fmt_interval, fmt_mean_std, fmt_number, fmt_signed
from repeval.stats import SIGN_FLIP, SIGNIFICANCE, Interval, within
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
    headline: bool = False
    unit: str = ""
    bounds: tuple[float | None, float | None] | None = None  # the declared range, stored units

    def display(self, value: float) -> float:
        return value * self.scale

    @property
    def difference_bounds(self) -> tuple[float | None, float | None] | None:
        """The range of a difference of two values: ``[low − high, high − low]`` when both
        ends are declared, else unbounded."""
        if self.bounds is None or None in self.bounds:
            return None
        low, high = self.bounds
        return (low - high, high - low)


def metric_view(task: str, metric: str) -> MetricView:
    """The declared view of a (task, metric); one no registered probe declares is shown as
    stored, with no best marker."""
    from repeval.probes import TASKS, metric_facts

    facts = metric_facts(task, metric)
    if facts is None:
        return MetricView(task, metric, 1, 4, None)
    return MetricView(facts.heading or TASKS.get(task).label or task, facts.column_label, facts.scale,
                      facts.decimals, None if facts.direction == "none" else facts.direction, facts.note,
                      facts.headline, facts.unit, facts.bounds)


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
    """One table cell: the display text and what it was made of.

    ``ci_text``: the 95 % interval in display units (``ci_kind`` ``"t"`` over training seeds,
    ``"bootstrap"`` over test examples only; ``ci_clipped``: cut at the metric's declared
    range); ``best``: marked (the best, or tied with it);
    ``best_note`` says why; ``chance``: an accuracy near chance level (explained on the page).
    """

    text: str
    mean: float
    std: float
    n: int
    seeds: list[int]
    settings: str
    best: bool = False
    ci_text: str = ""
    ci_kind: str = ""
    ci_clipped: bool = False
    probe_seeds: int = 1
    best_note: str = ""
    chance: bool = False
    side: Side | None = field(default=None, repr=False)

    @property
    def title(self) -> str:
        parts = [f"seeds {', '.join(map(str, self.seeds))}"]
        if self.probe_seeds > 1:
            parts.append(f"{self.probe_seeds} probe seeds per model, averaged first")
        if self.ci_text:
            parts.append(f"95% interval {self.ci_text} "
                         + (f"(t over {self.n} training seeds, {self.n - 1} degree{'s' if self.n > 2 else ''} "
                            "of freedom)" if self.ci_kind == "t"
                            else "(bootstrap over test examples only: one model)")
                         + (", cut at the metric's range" if self.ci_clipped else ""))
        if self.best_note:
            parts.append(self.best_note)
        parts.append(f"probe settings {self.settings}")
        return "; ".join(parts)


@dataclass
class Column:
    task: str
    metric: str
    view: MetricView
    variant: str  # "" or the settings that differ, e.g. "100 restarts", when the probe ran with several here
    settings: str  # canonical JSON of the settings of this column

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.task, self.metric, self.settings)

    @property
    def title(self) -> str:
        return f"{self.view.probe}" + (f", {self.variant}" if self.variant else "") + f": {self.view.label}"


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

    def row_labels(self) -> list[str]:
        """Each row's name: the encoder, qualified by latent and budget only where one encoder has
        several in this table (e.g. ``acai @524,288 (2¹⁹)`` beside ``acai @1,048,576 (2²⁰)``)."""
        latents: dict[str, set[str]] = {}
        budgets: dict[str, set[int]] = {}
        for r in self.rows:
            latents.setdefault(r.encoder, set()).add(r.latent)
            budgets.setdefault(r.encoder, set()).add(r.budget)
        return [r.encoder + (f" ({r.latent})" if len(latents[r.encoder]) > 1 else "")
                + (f" @{r.budget_text}" if len(budgets[r.encoder]) > 1 else "")
                + (f" ({r.latent_dim}-d)" if r.latent_dim != self.latent_dim else "") for r in self.rows]

    @property
    def rows_share_data_flags(self) -> bool:
        """Whether every row has the same data flags (then the heading's flag says it all)."""
        return len({tuple((d.level, d.text) for d in r.data_flags) for r in self.rows}) <= 1

    @property
    def variants(self) -> list[Column]:
        return [c for c in self.columns if c.variant]

    def column(self, task: str, metric: str) -> list[Column]:
        return [c for c in self.columns if (c.task, c.metric) == (task, metric)]

    @property
    def headline(self) -> int | None:
        """The column of the pairwise-difference matrix: the first declared headline metric,
        else the first column with a direction."""
        for test in (lambda c: c.view.headline, lambda c: c.view.direction is not None):
            for i, c in enumerate(self.columns):
                if test(c):
                    return i
        return None

    @property
    def probe_seeds(self) -> int:
        """The most probe seeds any cell averaged per model."""
        return max((c.probe_seeds for r in self.rows for c in r.cells if c is not None), default=1)

    @property
    def notes(self) -> list[tuple[str, str]]:
        """(column title, note) of every column with a declared note, except those a
        near-chance explanation already quotes: shown under the table."""
        quoted = {col for col in range(len(self.columns))
                  if any(r.cells[col] is not None and r.cells[col].chance for r in self.rows)}
        return [(c.title, c.view.note) for i, c in enumerate(self.columns) if c.view.note and i not in quoted]

    @property
    def chance_notes(self) -> list[str]:
        """Visible explanations of accuracies near chance level in this table."""
        out = []
        for col, column in enumerate(self.columns):
            low = [r.encoder for r in self.rows if r.cells[col] is not None and r.cells[col].chance]
            if low:
                out.append(f"{column.title}: {', '.join(low)} {'is' if len(low) == 1 else 'are'} near chance "
                           f"({fmt_number(self.chance_level, 0)} % for {self.num_classes} classes)."
                           + (f" {column.view.note[0].upper()}{column.view.note[1:]}." if column.view.note else ""))
        return out

    num_classes: int = 0

    @property
    def chance_level(self) -> float:
        return 100.0 / self.num_classes if self.num_classes else 0.0


def curve_metrics(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(task, metric) pairs stored as points of a curve (``details["curve"]``, e.g. the
    label-efficiency task): drawn as curves, not table columns."""
    return {(r["task"], r["metric"]) for r in rows if isinstance((r.get("details") or {}).get("curve"), dict)}


def score_tables(rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> list[ScoreTable]:
    """One :class:`ScoreTable` per (dataset, latent dim) of the learned encoders' scores.

    Reference encoders join the table of their own latent dim; one whose dim has no
    learned table (raw pixels: C×32×32 values) is a floor row in every table of its dataset.
    A dataset with reference encoders only gets one table per reference dim. Curve points
    (:func:`curve_metrics`) are left to the curve figures.
    ``rows`` come from :meth:`Store.scores`; ``runs`` maps run ids to :meth:`Store.runs` rows
    (for the data status of each row; a score whose run is missing is shown as ``unknown``).
    """
    curves = curve_metrics(rows)
    rows = [r for r in rows if (r["task"], r["metric"]) not in curves]
    run_ids: dict[tuple[Any, ...], list[str]] = {}
    for r in rows:
        ids = run_ids.setdefault((r["dataset"], r["latent_dim"], r["encoder"], r["latent"], r["budget"]), [])
        if r["run_id"] not in ids:
            ids.append(r["run_id"])
    by_side = {(key, side.encoder, side.latent, side.latent_dim, side.budget): side
               for key, found in sides(rows).items() for side in found}
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for g in summarise(rows):
        g["side"] = by_side.get(((g["dataset"], g["task"], g["metric"], canonical_json(g["settings"])),
                                 g["encoder"], g["latent"], g["latent_dim"], g["budget"]))
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


def num_classes(dataset: str) -> int:
    """The registered dataset's class count (0 when not registered, e.g. ``npz:`` files)."""
    from repeval.data import DATASETS

    return DATASETS.get(dataset).num_classes if dataset in DATASETS else 0


def near_chance(view: MetricView, mean: float, classes: int) -> bool:
    """An accuracy (declared in %) within 1.5× of chance level, 1 / classes."""
    return bool(classes) and view.unit == "%" and view.scale == 100 and not math.isnan(mean) \
        and mean < 1.5 * 100.0 / classes


def setting_text(name: str, value: Any) -> str:
    """One setting in words: a number before its name (``1,000 restarts``, ``20 k``), else
    the name before its value (``backend faiss``, ``seed run seed``)."""
    words = name.replace("_", " ")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{words} {value if isinstance(value, str) else json.dumps(value)}"
    number = f"{value:,}" if isinstance(value, int) else f"{value:g}"
    return f"{number} {words}"


def variant_names(variants: list[str]) -> list[str]:
    """Names of the columns of one probe run with several settings (canonical JSON texts):
    each names the settings whose values differ among them, e.g. ``100 restarts`` and
    ``1,000 restarts``; a single variant has no name."""
    if len(variants) < 2:
        return [""] * len(variants)
    parsed = [json.loads(v) for v in variants]
    keys = list(dict.fromkeys(k for p in parsed for k in p))
    differ = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in parsed}) > 1]
    return [", ".join(setting_text(k, p[k]) if k in p else f"no {k.replace('_', ' ')}" for k in differ)
            for p in parsed]


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
        ordered = sorted(variants)
        for name, text in zip(variant_names(ordered), ordered):
            columns.append(Column(task, metric, metric_view(task, metric), name, text))
    index = {c.key: i for i, c in enumerate(columns)}
    classes = num_classes(dataset)
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
        ci = g.get("ci")
        table_rows[row_key].cells[col] = Cell(
            fmt_mean_std(mean, std, g["n"], view.decimals), mean, std, g["n"], g["seeds"], columns[col].settings,
            ci_text=fmt_interval(view.display(ci["low"]), view.display(ci["high"]), view.decimals) if ci else "",
            ci_kind=ci["kind"] if ci else "", ci_clipped=bool(ci and ci.get("clipped")),
            probe_seeds=g.get("probe_seeds", 1),
            chance=near_chance(view, mean, classes), side=g.get("side"))
    ordered = sorted(table_rows.values(), key=lambda r: (*encoder_rank(r.encoder, r.reference), r.latent,
                                                         r.budget, r.latent_dim))
    for col, column in enumerate(columns):
        _mark_best(column.view, [r.cells[col] for r in ordered if not r.reference])
    return ScoreTable(dataset, dim, columns, ordered, anchor("scores", dataset, dim), classes)


def _test_text(d) -> str:
    if d.test == "paired t":
        return f"p = {d.p:.2g}, paired t over {d.n} shared seeds"
    if d.test == SIGN_FLIP:
        return f"p = {d.p:.2g}, exact sign-flip test over {d.n} shared seeds (its smallest p is 2/2^{d.n})"
    return f"p = {d.p:.2g}, McNemar on {d.n:,} test examples (one seed)"


def _mark_best(view: MetricView, cells: list[Cell | None]) -> None:
    """Mark the best finite mean among ``cells`` (unless all are equal, or fewer than two),
    and every cell it is not significantly ahead of (p ≥ 0.05 in :func:`repeval.compare.difference`).
    A cell that cannot be tested against the best (no shared seed; one seed and no
    per-example data) is not marked; the best's note says it was not tested."""
    direction = view.direction
    finite = [c for c in cells if c is not None and not math.isnan(c.mean)]
    if direction is None or len({c.mean for c in finite}) < 2:
        return
    sign = 1 if direction == "higher" else -1
    best = max(finite, key=lambda c: sign * c.mean)
    best.best = True
    ahead, tied, untested = [], [], 0
    for c in finite:
        if c is best:
            continue
        if c.mean == best.mean:
            c.best = True
            c.best_note = "tied with the best (equal means)"
            tied.append(c)
            continue
        d = difference(c.side, best.side) if c.side is not None and best.side is not None else None
        if d is None or math.isnan(d.p):
            untested += 1
            continue
        gap = fmt_signed(sign * view.display(d.mean), view.decimals)
        if d.p < SIGNIFICANCE and sign * d.mean > 0:
            ahead.append(c)
        else:
            c.best = True
            c.best_note = f"not significantly behind the best ({gap} for the best; {_test_text(d)})"
            tied.append(c)
    if tied:
        best.best_note = f"best mean; shares the mark with {len(tied)} not significantly behind"
    elif ahead and not untested:
        best.best_note = "best, significantly ahead of every other learned encoder (p < 0.05)"
    else:
        best.best_note = "best mean; not tested against " + (
            f"{untested} encoder(s) (one seed without per-example data, or no shared seed)" if untested else "others")


@dataclass
class MatrixCell:
    """Row encoder minus column encoder on the headline metric, in display units."""

    text: str
    significant: bool
    title: str
    sign: int  # +1: the row is better, -1: worse, 0: not significant or untested


@dataclass
class PairwiseMatrix:
    """Pairwise differences (row − column) of a table's headline metric."""

    column: Column
    labels: list[str]
    cells: list[list[MatrixCell | None]]  # None on the diagonal and where a row has no score


def pairwise_matrix(table: ScoreTable) -> PairwiseMatrix | None:
    """The headline metric's matrix of every pair of the table's rows with a score, or
    ``None`` when fewer than two rows have one."""
    col = table.headline
    if col is None:
        return None
    column = table.columns[col]
    view = column.view
    # (name, row) of each row with a score, named as the score table names it
    members = [(name, r) for name, r in zip(table.row_labels(), table.rows)
               if r.cells[col] is not None and r.cells[col].side is not None]
    if len(members) < 2:
        return None
    sign = {"higher": 1, "lower": -1}.get(view.direction or "", 0)
    cells: list[list[MatrixCell | None]] = []
    for name_a, a in members:
        line: list[MatrixCell | None] = []
        for name_b, b in members:
            if a is b:
                line.append(None)
                continue
            pair = f"{name_a} − {name_b}"
            d = difference(b.cells[col].side, a.cells[col].side)  # a − b
            if d is None:
                line.append(MatrixCell("·", False, f"{name_a} and {name_b} share no training seed", 0))
                continue
            text = fmt_signed(view.display(d.mean), view.decimals)
            if math.isnan(d.p):
                line.append(MatrixCell(text, False, f"{pair}: {text}; not tested ({d.test})", 0))
                continue
            if math.isnan(d.low):  # no spread over the seeds: no t interval (stats.paired_difference)
                interval = "none (every shared seed differs by the same amount)"
            else:
                cut = within(Interval(d.low, d.high, "t"), view.difference_bounds)
                interval = fmt_interval(view.display(cut.low), view.display(cut.high), view.decimals) \
                    + (" (cut at the range a difference can take)" if cut.clipped else "")
            significant = d.p < SIGNIFICANCE
            better = sign * d.mean > 0
            line.append(MatrixCell(text + ("*" if significant else ""), significant,
                                   f"{pair}: {text}, 95% interval {interval}, {_test_text(d)}",
                                   (1 if better else -1) if significant and sign else 0))
        cells.append(line)
    return PairwiseMatrix(column, [name for name, _ in members], cells)


@dataclass
class CurvePoint:
    x: float  # labelled examples per class used (the mean over classes)
    label: str  # "1", "4", …, "all"
    mean: float  # display units
    low: float | None
    high: float | None
    n: int


@dataclass
class CurveSeries:
    """One encoder's curve of one probe: accuracy against labelled examples per class."""

    encoder: str
    reference: bool
    points: list[CurvePoint]


@dataclass
class CurvePanel:
    task: str
    probe: str
    unit: str
    series: list[CurveSeries]


def curve_panels(rows: list[dict[str, Any]], dataset: str, latent_dim: int, dims: list[int]) -> list[CurvePanel]:
    """The curve points (:func:`curve_metrics`) of a dataset × latent dim table, one panel
    per (task, probe), one series per encoder (reference encoders of other dims too when
    their dim has no table of its own), aggregated like the table cells."""
    chosen = [r for r in rows if r["dataset"] == dataset and isinstance((r.get("details") or {}).get("curve"), dict)
              and (r["latent_dim"] == latent_dim or (r["budget"] == 0 and r["latent_dim"] not in dims))]
    if not chosen:
        return []
    facts: dict[tuple[str, str], dict[str, Any]] = {}
    for r in chosen:
        facts.setdefault((r["task"], r["metric"]), r["details"]["curve"])
    panels: dict[tuple[str, str], dict[tuple[str, str, int, int], list[CurvePoint]]] = {}
    classes = num_classes(dataset) or 1
    for g in summarise(chosen):
        point = facts[(g["task"], g["metric"])]
        scale, _ = _curve_unit(g["task"])
        size = point.get("labels_per_class")
        x = float(point.get("used", 0)) / classes or (float(size) if isinstance(size, (int, float)) else 0.0)
        ci = g.get("ci")
        series = panels.setdefault((g["task"], str(point.get("probe", g["metric"]))), {}).setdefault(
            (g["encoder"], g["latent"], g["budget"], g["latent_dim"]), [])
        series.append(CurvePoint(x, str(size), g["mean"] * scale, ci["low"] * scale if ci else None,
                                 ci["high"] * scale if ci else None, g["n"]))
    out = []
    for (task, probe), by_encoder in panels.items():
        for key, points in by_encoder.items():  # a size a class could not fill used the same subset as "all"
            full = [p for p in points if p.label == "all"]
            by_encoder[key] = [p for p in points if p.label == "all" or not full or p.x < full[0].x]
        series = [CurveSeries(key[0], key[2] == 0, sorted(points, key=lambda p: p.x))
                  for key, points in sorted(by_encoder.items(), key=lambda kv: encoder_rank(kv[0][0], kv[0][2] == 0))]
        out.append(CurvePanel(task, probe, _curve_unit(task)[1], series))
    return out


def _curve_unit(task: str) -> tuple[float, str]:
    """Display scale and unit of a curve task's values: its first declared metric's."""
    from repeval.probes import TASKS

    if task in TASKS and TASKS.get(task).metrics:
        first = TASKS.get(task).metrics[0]
        return first.scale, first.unit
    return 1.0, ""
