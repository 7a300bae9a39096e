"""``repeval report``: every stored score of a workdir in one self-contained HTML file.

The page (template ``templates/report.html.j2``, jinja2 with autoescape) has six parts:

1. a header: when it was generated, the repeval version, how many runs and scores, the workdir;
2. one table per dataset × latent dim: encoders × probe metrics, mean ± std over seeds, a
   95 % interval and n, the best learned encoder per column marked where it is significantly
   ahead (tied entries share the mark), reference encoders at the bottom, the columns'
   notes and near-chance warnings in words, a matrix of pairwise differences of the
   headline metric, and the label-efficiency curves;
3. the paper's Tables 1–3 (``reports/paper.json``) beside our matching numbers, each paper
   value with its standing (reprint, secondary note, recollection): both 95 % intervals and
   the difference for the tables of means, the paper's position in our distribution for
   its single draws (Table 3), its reference rows beside ours;
4. the lines benchmark as the paper's Table 1, with each family's decoded interpolations;
5. figures: bar charts per probe, reconstructions and interpolations of every encoder,
   training curves (reconstruction loss, online-classifier accuracy), a t-SNE map of each
   encoder's test latents (``repeval.maps``, written by ``repeval run``);
6. the provenance of every run (spec, device, precision, versions, git revision, data
   fingerprint and verification), with data that failed or skipped verification flagged
   wherever its scores appear.

Nothing on the page loads from the network: CSS is inline, figures are PNG data URIs, a
Content-Security-Policy forbids every other source, and one small inline script (allowed
by its hash) records script or image-decoding errors on ``<html data-errors=...>`` so that
a headless browser can check the page.

Cost grows with the number of runs only through reading each run's small ``history.json``
and one preview file per table row; plots are drawn once per dataset × latent dim.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import repeval
from repeval.checkpoint import Checkpoint
from repeval.devices import PAPER_BUDGET
from repeval.errors import UserError
from repeval.maps import load_map
from repeval.paths import atomic_write_text
from repeval.previews import load_previews
from repeval.report import figures
from repeval.report.curves import along_training
from repeval.report.data_status import DataStatus, data_status
from repeval.report.format import anchor, fmt_budget, fmt_budget_share
from repeval.report.paper import STANDINGS, Ours, PaperRow, PaperTable, load_paper, paper_tables
from repeval.report.scores import (
    Cell,
    Column,
    Row,
    ScoreTable,
    curve_panels,
    dataset_rank,
    encoder_rank,
    pairwise_matrix,
    score_tables,
)
from repeval.store import DB_FILENAME, Store
from repeval.summary import GROUP_COLUMNS, group_key, summarise


def _paper_json() -> Path:
    """``reports/paper.json`` of the source tree, else the copy a regular install puts in
    ``<prefix>/share/repeval`` (setup.py ``data_files``)."""
    source = Path(__file__).resolve().parents[2] / "reports" / "paper.json"
    installed = Path(sys.prefix) / "share" / "repeval" / "paper.json"
    return source if source.exists() or not installed.exists() else installed


PAPER_JSON = _paper_json()
TEMPLATE = "report.html.j2"

# Records script errors, blocked loads and images that fail to decode on <html data-errors>,
# and sets <html data-checked="1"> once the page has loaded (checked by a headless browser).
ERROR_SCRIPT = (
    "(function(){var d=document.documentElement,e=[];"
    "function note(m){e.push(String(m).slice(0,200));d.setAttribute('data-errors',e.join(' | '));}"
    "window.addEventListener('error',function(v){note(v.message||('resource failed: '+"
    "((v.target&&v.target.tagName)||'?')));},true);"
    "document.addEventListener('securitypolicyviolation',function(v){note('blocked: '+v.blockedURI);});"
    "window.addEventListener('load',function(){var i=document.images;for(var k=0;k<i.length;k++){"
    "if(!i[k].complete||i[k].naturalWidth===0){note('image did not decode: '+i[k].alt);}}"
    "d.setAttribute('data-checked','1');});})();"
)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(ERROR_SCRIPT.encode()).digest()).decode()
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "base-uri 'none'; form-action 'none'")


def build_report(workdir: Path, out: Path, *, paper: Path | None = None) -> Path:
    """Render the report of ``workdir``'s store into ``out`` (written atomically); return ``out``.

    ``paper`` is the paper-numbers file (default: ``reports/paper.json`` of the source
    tree); without it the comparison section says so. A workdir without a store, or a
    store without scores, gives a page that says how to produce scores.
    """
    context = collect(Path(workdir), PAPER_JSON if paper is None else Path(paper))
    html = render(context)
    atomic_write_text(Path(out), html)
    return Path(out)


def render(context: dict[str, Any]) -> str:
    """The HTML of a context made by :func:`collect`."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("repeval.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context, csp=_csp(), error_script=ERROR_SCRIPT)


@dataclass
class RunView:
    """One run as the provenance section shows it."""

    run: dict[str, Any]
    data: DataStatus
    directory: Path | None
    directory_state: str
    n_scores: int

    @property
    def anchor(self) -> str:
        return anchor("run", self.run["run_id"])

    @property
    def group(self) -> str:
        return f"{self.run['dataset']} · latent dim {self.run['latent_dim']}"

    @property
    def spec_json(self) -> str:
        return json.dumps(self.run["spec"], sort_keys=True)

    @property
    def provenance_json(self) -> str:
        return json.dumps(self.run["provenance"], sort_keys=True)

    @property
    def hparams(self) -> str:
        hparams = self.run["spec"].get("hparams") or {}
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(hparams.items())) if isinstance(hparams, dict) \
            else json.dumps(hparams)

    @property
    def training(self) -> str:
        """The spec's training settings other than the identifying columns and hparams."""
        shown = ("encoder", "dataset", "latent_dim", "seed", "budget", "hparams")
        return ", ".join(f"{k} {json.dumps(v)}" for k, v in sorted(self.run["spec"].items()) if k not in shown)

    @property
    def budget_text(self) -> str:
        return "external" if self.external else fmt_budget(self.run["budget"])

    @property
    def external(self) -> dict[str, Any] | None:
        """The ``external`` record of an encoder from outside repeval (``repeval/external.py``), else None."""
        record = self.run["provenance"].get("external")
        return record if isinstance(record, dict) and (self.run.get("spec") or {}).get("source") else None

    @property
    def external_text(self) -> str:
        """Where an outside encoder came from, in one line: its files, their sha256 and formats."""
        e = self.external or {}
        if e.get("kind") == "latents":
            shapes = ", ".join(f"{k} {e.get('shapes', {}).get(k)} {e.get('dtypes', {}).get(k)}"
                               for k in ("z_train", "z_test"))
            meta = f"; meta {json.dumps(e['meta'], sort_keys=True)}" if e.get("meta") else ""
            return f"embeddings file {e.get('file')} (sha256 {e.get('sha256')}); {shapes}{meta}"
        if e.get("kind") == "python":
            weights = (f"weights {e['weights']} ({e.get('weights_format')}, sha256 {e.get('weights_sha256')}, "
                       f"{e.get('weights_keys')} tensors)" if e.get("weights") else "no weights file")
            return (f"factory {e.get('factory')} in {e.get('module_file')} (sha256 {e.get('module_sha256')}), "
                    f"class {e.get('class')}; {weights}; input {json.dumps(e.get('input'))}; latent shape "
                    f"{e.get('latent_shape')}; {'decodes' if e.get('decoder') else 'no decoder'}")
        return json.dumps(e, sort_keys=True)

    @property
    def versions(self) -> str:
        versions = self.run["provenance"].get("versions") or {}
        return ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else str(versions)


@dataclass
class LinesRow:
    """One family on the lines benchmark: our Mean Distance and Smoothness beside the paper's."""

    table: ScoreTable
    row_index: int
    mean_distance: Cell | None
    smoothness: Cell | None
    paper_distance: tuple[PaperRow, Ours | None] | None
    paper_smoothness: tuple[PaperRow, Ours | None] | None
    strip: dict[str, Any] | None  # the interpolations image: src, width, height
    undefined: str = ""  # "undefined / interpolations" over the cell's seeds (they count as 0 in smoothness)

    @property
    def row(self) -> Row:
        return self.table.rows[self.row_index]

    @property
    def n(self) -> int | None:
        counts = {c.n for c in (self.mean_distance, self.smoothness) if c is not None}
        return counts.pop() if len(counts) == 1 else None


def _run_dir(workdir: Path, run: dict[str, Any]) -> tuple[Path | None, str]:
    """The run's checkpoint directory and its state: present, missing, or not recorded."""
    candidates = [Path(run["checkpoint"])] if run.get("checkpoint") else []
    candidates.append(workdir / "checkpoints" / run["run_id"])
    for path in candidates:
        if path.is_dir():
            return path, "present"
    return None, "missing (deleted?)" if run.get("checkpoint") else "not recorded"


def collect(workdir: Path, paper_path: Path) -> dict[str, Any]:
    """Everything the template shows, as plain values and small objects."""
    db = workdir / DB_FILENAME
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    if db.is_file():
        with Store(db) as store:
            rows, runs = store.scores(), store.runs()
    runs_by_id = {r["run_id"]: r for r in runs}
    scores_per_run: dict[str, int] = {}
    for r in rows:
        scores_per_run[r["run_id"]] = scores_per_run.get(r["run_id"], 0) + 1
    run_views = []
    for run in sorted(runs, key=lambda r: (dataset_rank(r["dataset"]), r["latent_dim"],
                                           *encoder_rank(r["encoder"], r["budget"] == 0),
                                           r["budget"], r["seed"], r["run_id"])):
        directory, state = _run_dir(workdir, run)
        run_views.append(RunView(run, data_status(run["provenance"]), directory, state,
                                 scores_per_run.get(run["run_id"], 0)))
    context: dict[str, Any] = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": repeval.__version__,
        "workdir": str(workdir.resolve()),
        "store_found": db.is_file(),
        "n_runs": len(runs),
        "n_scores": len(rows),
        "runs": run_views,
        "run_groups": _grouped(run_views),
        "missing_dirs": [v for v in run_views if v.directory is None],
        "paper_budget": fmt_budget(PAPER_BUDGET),
        "tables": [], "paper": None, "paper_path": None, "paper_tables": [], "paper_error": None, "lines": [],
        "figures": [], "along": [], "snapshot_rows": 0, "matrices": {}, "label_charts": {},
        "budgets": [], "standings": STANDINGS,
    }
    if not rows:
        return context
    all_rows, rows = rows, final_rows(rows, runs_by_id)  # snapshots of a scored run: the curves show them
    context["snapshot_rows"] = len(all_rows) - len(rows)
    tables = score_tables(rows, runs_by_id)
    context["tables"] = tables
    budgets = sorted({r.budget for t in tables for r in t.rows if not r.reference and not r.external})
    context["budgets"] = [{"text": fmt_budget(b), "share": fmt_budget_share(b)} for b in budgets]
    if paper_path.is_file():
        try:
            paper = load_paper(paper_path.read_text(encoding="utf-8"))
        except (ValueError, KeyError) as exc:
            context["paper_error"] = f"{paper_path} could not be read ({exc}); the comparison is left out."
        else:
            context["paper"] = paper
            context["paper_path"] = str(paper_path)
            context["paper_tables"] = paper_tables(paper, rows, runs_by_id)
    else:
        context["paper_error"] = f"No paper numbers file at {paper_path}; the comparison is left out."
    dirs = {v.run["run_id"]: v.directory for v in run_views}
    seeds = {v.run["run_id"]: v.run["seed"] for v in run_views}
    previews = {}
    for table in tables:
        for i, row in enumerate(table.rows):
            previews[(table.anchor, i)] = _first_previews(row, dirs, seeds)
    colours = _colours(tables)
    dims = {t.dataset: sorted({u.latent_dim for u in tables if u.dataset == t.dataset}) for t in tables}
    context["figures"] = [_figure_block(t, previews, run_views, colours) for t in tables]
    for t, block in zip(tables, context["figures"]):
        block["maps"] = figures.latent_maps(_maps(t, dirs, seeds))
    context["matrices"] = {t.anchor: pairwise_matrix(t) for t in tables}
    context["label_charts"] = {t.anchor: figures.curve_chart(curve_panels(rows, t.dataset, t.latent_dim,
                                                                          dims[t.dataset]), colours) for t in tables}
    context["lines"] = _lines_view(tables, context["paper_tables"], previews, rows)
    context["along"] = along_training(summarise(all_rows), context["paper"])
    for block in context["along"]:
        block.image = figures.along_training(block.panels, colours, PAPER_BUDGET)
    return context


def final_rows(rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The score rows the tables show: all but those of snapshots whose own run (the longer
    one they were taken from) has scores too; those belong to the along-training curves."""
    scored = {r["run_id"] for r in rows}

    def parent(row: dict[str, Any]) -> str | None:
        return (runs.get(row["run_id"], {}).get("provenance") or {}).get("snapshot_of")

    return [r for r in rows if parent(r) not in scored]


def _grouped(views: list[RunView]) -> list[tuple[str, list[RunView]]]:
    """Runs by dataset · latent dim, keeping their order."""
    groups: dict[str, list[RunView]] = {}
    for v in views:
        groups.setdefault(v.group, []).append(v)
    return list(groups.items())


def _first_previews(row: Row, dirs: dict[str, Path | None], seeds: dict[str, int]) -> dict[str, Any] | None:
    """Preview images of the row's run with the lowest seed that has a previews file."""
    for run_id in sorted(row.run_ids, key=lambda i: (seeds.get(i, 0), i)):
        directory = dirs.get(run_id)
        arrays = load_previews(directory, row.latent) if directory is not None else None
        if arrays is not None and "symbols" in arrays:
            return {"run_id": run_id, "seed": seeds.get(run_id), "text": figures.text_previews(arrays)}
        if arrays is not None:
            return {"run_id": run_id, "seed": seeds.get(run_id),
                    "reconstructions": figures.reconstruction_grid(arrays),
                    "interpolations": figures.interpolation_grid(arrays)}
    return None


def _maps(table: ScoreTable, dirs: dict[str, Path | None], seeds: dict[str, int]) -> list[dict[str, Any]]:
    """Per table row: the t-SNE map of its lowest-seed run that has one (``repeval.maps``)."""
    out = []
    for row in table.rows:
        for run_id in sorted(row.run_ids, key=lambda i: (seeds.get(i, 0), i)):
            directory = dirs.get(run_id)
            found = load_map(directory, row.latent) if directory is not None else None
            if found is not None:
                label = row.encoder + (f" ({row.latent_dim}-d)" if row.latent_dim != table.latent_dim else "")
                out.append({"label": f"{label}, seed {seeds.get(run_id)}", **found})
                break
    return out


def _colours(tables: list[ScoreTable]) -> dict[str, Any]:
    learned = sorted({r.encoder for t in tables for r in t.rows if not r.reference},
                     key=lambda e: encoder_rank(e, False))
    references = sorted({r.encoder for t in tables for r in t.rows if r.reference},
                        key=lambda e: encoder_rank(e, True))
    return figures.encoder_colours(learned, references)


def _figure_block(table: ScoreTable, previews: dict[tuple[str, int], Any], runs: list[RunView],
                  colours: dict[str, Any]) -> dict[str, Any]:
    labels = table.row_labels()
    panels = []
    for c, column in enumerate(table.columns):
        panels.append({"title": column.title, "bars": [
            {"label": labels[i], "encoder": r.encoder, "reference": r.reference,
             "mean": r.cells[c].mean, "std": r.cells[c].std} for i, r in enumerate(table.rows) if r.cells[c]]})
    series = []
    run_ids = {v.run["run_id"] for v in runs}
    for view in runs:
        run = view.run
        if (run["dataset"], run["latent_dim"]) != (table.dataset, table.latent_dim) or view.directory is None:
            continue
        if run["provenance"].get("snapshot_of") in run_ids:  # its history is the start of its parent's
            continue
        try:
            history = Checkpoint(view.directory).history
        except (OSError, ValueError, UserError):
            continue
        if history:
            series.append({"encoder": run["encoder"], "seed": run["seed"], "history": history})
    return {
        "table": table,
        "bars": figures.bar_chart(panels, colours),
        "curves": figures.training_curves(series, colours),
        "previews": [{"label": labels[i], "row": r, **previews[(table.anchor, i)]}
                     for i, r in enumerate(table.rows) if previews[(table.anchor, i)]],
        "no_previews": [labels[i] for i, r in enumerate(table.rows) if not previews[(table.anchor, i)]],
    }


def _undefined_counts(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[int, int]]:
    """Per :func:`repeval.summary.group_key` of the interpolation smoothness scores: the
    undefined interpolations and all interpolations, summed over the group's seeds."""
    counts: dict[tuple[Any, ...], tuple[int, int]] = {}
    for r in rows:
        d = r.get("details") or {}
        if r["task"] != "interpolation" or "n_interpolations" not in d:
            continue
        if r["metric"] == "n_undefined":  # stored as a metric of its own
            n = r["value"]
        elif r["metric"] == "smoothness" and "n_undefined" in d:  # stored with smoothness (older runs)
            n = d["n_undefined"]
        else:
            continue
        key = group_key({**r, "metric": "smoothness"})
        undefined, total = counts.get(key, (0, 0))
        counts[key] = (undefined + int(n), total + int(d["n_interpolations"]))
    return counts


def _lines_view(tables: list[ScoreTable], comparisons: list[PaperTable],
                previews: dict[tuple[str, int], Any], rows: list[dict[str, Any]]) -> list[LinesRow]:
    """Rows of the Table 1 view: every lines row with interpolation scores."""
    undefined = _undefined_counts(rows)
    paper_rows: dict[tuple[int, str, str], PaperRow] = {}
    for t in comparisons:
        for p in t.rows:
            if p.dataset == "Lines":
                paper_rows[(p.latent_dim, p.encoder, p.quantity)] = p

    def beside(table: ScoreTable, row: Row, quantity: str, column: Column) -> tuple[PaperRow, Ours | None] | None:
        p = paper_rows.get((row.latent_dim, row.encoder, quantity))
        if p is None:
            return None
        ours = next((o for o in p.ours if (o.dataset, o.latent, o.budget, o.settings)
                     == (table.dataset, row.latent, row.budget, column.settings)), None)
        return p, ours

    out = []
    seen: set[tuple[str, str, int, int]] = set()  # a reference floor sits in every lines table: list it once
    for table in tables:
        if table.dataset != "lines":
            continue
        for dist_col in table.column("interpolation", "mean_distance"):
            smooth_col = next((c for c in table.column("interpolation", "smoothness")
                               if c.settings == dist_col.settings), None)
            d, s = table.columns.index(dist_col), table.columns.index(smooth_col) if smooth_col else None
            for i, row in enumerate(table.rows):
                dist, smooth = row.cells[d], row.cells[s] if s is not None else None
                key = (row.encoder, row.latent, row.budget, row.latent_dim)
                if (dist is None and smooth is None) or key in seen:
                    continue
                seen.add(key)
                found = previews[(table.anchor, i)]
                counts = None
                if smooth_col:  # the group_key of this row's smoothness scores
                    group = {"dataset": table.dataset, "encoder": row.encoder, "latent": row.latent,
                             "latent_dim": row.latent_dim, "budget": row.budget, "task": "interpolation",
                             "metric": "smoothness"}
                    counts = undefined.get((*(group[c] for c in GROUP_COLUMNS), smooth_col.settings))
                out.append(LinesRow(table, i, dist, smooth, beside(table, row, "mean_distance", dist_col),
                                    beside(table, row, "smoothness", smooth_col) if smooth_col else None,
                                    found["interpolations"] if found else None,
                                    f"{counts[0]:,} / {counts[1]:,}" if counts else ""))
    return sorted(out, key=lambda r: (*encoder_rank(r.row.encoder, r.row.reference), r.row.latent_dim,
                                      r.row.latent, r.row.budget))

