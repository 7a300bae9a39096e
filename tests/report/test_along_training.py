"""The report's along-training section: snapshots of a scored run become curves (and leave
the score tables), with the paper's value at 2^24 and reference encoders as floors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from html_tables import tables
from report_synthetic import PROVENANCE, add_run, run_id

from repeval.report import build_report
from repeval.report.curves import along_training
from repeval.report.paper import load_paper
from repeval.store import Store
from repeval.summary import summarise

PAPER_JSON = Path(__file__).resolve().parents[2] / "reports" / "paper.json"
BUDGETS = (4096, 8192, 16384)
KMEANS = {"baseline": (0.50, 0.60, 0.70), "acai": (0.40, 0.65, 0.90)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("along") / "work"
    with Store.in_workdir(work) as store:
        for encoder, values in KMEANS.items():
            for seed in (0, 1):
                parent = run_id(encoder, "mnist", 32, seed, BUDGETS[-1])
                for budget, value in zip(BUDGETS, values):
                    provenance = PROVENANCE if budget == BUDGETS[-1] else {
                        **PROVENANCE, "snapshot_of": parent, "snapshot_at_images": budget}
                    add_run(store, work, encoder, "mnist", 32, seed, budget,
                            {("kmeans", "accuracy"): value + 0.02 * seed}, provenance=provenance)
        add_run(store, work, "pixels", "mnist", 1024, 0, 0, {("kmeans", "accuracy"): 0.55})
        # a snapshot budget trained on its own: an ordinary run for the tables
        add_run(store, work, "dropout", "mnist", 32, 0, 8192, {("kmeans", "accuracy"): 0.61})
    return work


@pytest.fixture(scope="module")
def html(workdir) -> str:
    return build_report(workdir, workdir / "report.html").read_text(encoding="utf-8")


def test_curves_hold_every_budget_per_family_with_the_paper_point_and_the_floor(workdir):
    with Store.in_workdir(workdir) as store:
        rows = store.scores()
    (block,) = along_training(summarise(rows), load_paper(PAPER_JSON.read_text()))
    assert (block.dataset, block.latent_dim) == ("mnist", 32)
    (panel,) = block.panels
    assert (panel.task, panel.metric, panel.title) == ("kmeans", "accuracy", "k-means: acc. %")
    assert [(line.encoder, line.budgets, [round(m, 6) for m in line.means]) for line in panel.lines] == [
        ("baseline", list(BUDGETS), [51.0, 61.0, 71.0]), ("dropout", [8192], [61.0]),  # one point of its own
        ("acai", list(BUDGETS), [41.0, 66.0, 91.0])]
    assert [line.ns for line in panel.lines] == [[2, 2, 2], [1], [2, 2, 2]]
    assert [f["encoder"] for f in panel.floors] == ["pixels"] and panel.floors[0]["mean"] == pytest.approx(55.0)
    paper = {(m["encoder"], m["verified"]) for m in panel.paper}  # Table 3, MNIST 32: corroborated by the reprint
    assert paper == {("baseline", True), ("dropout", True), ("acai", True)}


def test_the_section_tabulates_each_budget(html):
    (table,) = [t for t in tables(html) if t["heading"] == "mnist · latent dim 32" and t["rows"][0][0] == "encoder"]
    assert table["rows"] == [["encoder", "4,096 (2¹²)", "8,192 (2¹³)", "16,384 (2¹⁴)"],
                             ["baseline", "51.00 ± 1.00", "61.00 ± 1.00", "71.00 ± 1.00"],
                             ["dropout", "", "61.00", ""],
                             ["acai", "41.00 ± 1.00", "66.00 ± 1.00", "91.00 ± 1.00"]]
    assert 'alt="scores along training on mnist, latent 32"' in html
    assert "its 8 snapshot scores are here" in html


def test_score_tables_keep_the_runs_own_budget_and_runs_trained_alone(html):
    scores = [t for t in tables(html) if t["heading"].startswith("mnist · latent dim 32")][0]
    labels = [(r[0], r[2]) for r in scores["rows"][1:]]
    assert labels == [("baseline", "16,384 (2¹⁴)"), ("dropout", "8,192 (2¹³)"), ("acai", "16,384 (2¹⁴)"),
                      ("pixels", "fitted")]


def test_no_section_without_a_family_at_two_budgets(tmp_path):
    work = tmp_path / "work"
    with Store.in_workdir(work) as store:
        add_run(store, work, "acai", "mnist", 32, 0, 16384, {("kmeans", "accuracy"): 0.9})
    html = build_report(work, work / "report.html").read_text(encoding="utf-8")
    assert 'id="along-training"' not in html
    assert json.loads(json.dumps(along_training(summarise([]), None))) == []
