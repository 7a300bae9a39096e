"""The report's numbers on hand-made score rows: formatting, pooling over seeds, best
markers in each metric's direction, reference floors, setting variants, the paper match."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from repeval.report.data_status import data_status
from repeval.report.format import fmt_budget, fmt_budget_share, fmt_mean_std, fmt_number, fmt_signed
from repeval.report.paper import PAPER_DECIMALS, load_paper, paper_tables
from repeval.report.scores import score_tables

PAPER_JSON = Path(__file__).resolve().parents[2] / "reports" / "paper.json"


def row(encoder, value, *, seed=0, dataset="mnist", latent_dim=32, budget=16384, task="kmeans",
        metric="accuracy", latent="map", settings=None, run_id=None):
    return {"dataset": dataset, "encoder": encoder, "latent": latent, "latent_dim": latent_dim, "seed": seed,
            "budget": budget, "task": task, "metric": metric, "value": value,
            "settings": {"seed": seed} if settings is None else settings, "details": {}, "wall_time_s": 0.0,
            "run_id": run_id or f"{encoder}-{dataset}-{latent_dim}-{budget}-{seed}", "created_at": ""}


def test_number_formats():
    assert fmt_number(0.5, 2) == "0.50"
    assert fmt_number(-1.234, 2) == "\u22121.23"
    assert fmt_number(-0.001, 2) == "0.00"  # never a negative zero
    assert fmt_number(math.nan, 2) == "NaN"
    assert fmt_signed(0.25, 2) == "+0.25"
    assert fmt_signed(-9.38, 2) == "\u22129.38"
    assert fmt_signed(-0.001, 2) == "+0.00"
    assert fmt_mean_std(85.0, 5.0, 2, 2) == "85.00 ± 5.00"
    assert fmt_mean_std(40.0, 0.0, 1, 2) == "40.00"  # one seed: no spread to show
    assert fmt_mean_std(math.nan, math.nan, 3, 2) == "NaN"


def test_budget_formats():
    assert fmt_budget(16384) == "16,384 (2¹⁴)"
    assert fmt_budget(1000) == "1,000"
    assert fmt_budget(0) == "fitted"
    assert fmt_budget_share(16384) == "1/1,024 of the paper's"
    assert fmt_budget_share(2 ** 24) == "the paper's budget"
    assert fmt_budget_share(1000) == "0.01% of the paper's"


def test_data_status_levels():
    assert data_status({}).level == "unknown"
    status = data_status({"data": {"verified": "NO: md5s differ from the official ones (--allow-unverified)",
                                   "fingerprint": "ab12", "source": "torchvision.datasets.CIFAR10"}})
    assert (status.level, status.flagged, status.fingerprint) == ("unverified", True, "ab12")
    ok = data_status({"data": {"verified": "md5 checked by torchvision", "fingerprint": "cd34"}})
    assert (ok.level, ok.flagged, ok.text) == ("recorded", False, "md5 checked by torchvision")


def test_table_mean_std_n_best_and_reference_floor():
    rows = [row("baseline", 0.5, seed=0), row("baseline", 0.7, seed=1),
            row("acai", 0.8, seed=0), row("acai", 0.9, seed=1),
            row("pixels", 0.95, budget=0, latent="pixels", latent_dim=1024)]
    [table] = score_tables(rows, {})
    assert (table.dataset, table.latent_dim, table.budgets) == ("mnist", 32, [16384])
    assert [(r.encoder, r.reference, r.latent_dim) for r in table.rows] == [
        ("baseline", False, 32), ("acai", False, 32), ("pixels", True, 1024)]
    cells = [r.cells[0] for r in table.rows]
    # acai leads on both seeds, but two pairs give p = 0.13 (paired t): not significant, so both are marked
    assert [(c.text, c.n, c.seeds, c.best) for c in cells] == [
        ("60.00 ± 10.00", 2, [0, 1], True), ("85.00 ± 5.00", 2, [0, 1], True), ("95.00", 1, [0], False)]
    assert [c.ci_text for c in cells] == ["[\u221267.06, 187.06]", "[21.47, 148.53]", ""]
    assert "p = 0.13, paired t over 2 shared seeds" in cells[0].best_note
    assert [r.n for r in table.rows] == [2, 2, 1]


def test_best_mark_needs_a_significant_lead_over_shared_seeds():
    rows = [row("baseline", v, seed=s) for s, v in enumerate([0.50, 0.52, 0.49, 0.51])]
    rows += [row("acai", v, seed=s) for s, v in enumerate([0.80, 0.83, 0.79, 0.82])]
    rows += [row("dropout", v, seed=s) for s, v in enumerate([0.79, 0.83, 0.80, 0.80])]
    [table] = score_tables(rows, {})
    baseline, dropout, acai = (r.cells[0] for r in table.rows)
    assert (baseline.best, dropout.best, acai.best) == (False, True, True)  # dropout: not significantly behind
    from scipy import stats

    p = stats.ttest_rel([0.80, 0.83, 0.79, 0.82], [0.79, 0.83, 0.80, 0.80]).pvalue
    assert f"p = {p:.2g}" in dropout.best_note
    only_two = [r for r in rows if r["encoder"] != "dropout"]
    [table] = score_tables(only_two, {})
    assert [r.cells[0].best for r in table.rows] == [False, True]
    assert "significantly ahead" in table.rows[1].cells[0].best_note


def test_one_seed_accuracies_are_compared_on_the_test_examples():
    from repeval.stats import pack_bits

    right = np.zeros(200, bool)
    right[:120] = True  # 60 %
    better = right.copy()
    better[120:150] = True  # 75 %: right on 30 more test examples, wrong on none that the other got
    rows = [row("baseline", 0.6), row("acai", 0.75)]
    rows[0]["details"] = {"correct": pack_bits(right)}
    rows[1]["details"] = {"correct": pack_bits(better)}
    [table] = score_tables(rows, {})
    baseline, acai = (r.cells[0] for r in table.rows)
    assert (baseline.best, acai.best) == (False, True)
    assert acai.ci_kind == "bootstrap" and baseline.ci_kind == "bootstrap"
    low, high = (float(v.replace("\u2212", "-")) for v in acai.ci_text.strip("[]").split(", "))
    assert low < 75 < high and high - low < 15
    from scipy import stats

    assert stats.binomtest(30, 30).pvalue < 0.05  # McNemar: 30 discordant examples, all for acai


def test_lower_is_better_for_lines_metrics_and_columns_in_fixed_order():
    rows = [row("baseline", 0.002, dataset="lines", latent_dim=64, task="interpolation", metric="mean_distance"),
            row("acai", 0.001, dataset="lines", latent_dim=64, task="interpolation", metric="mean_distance"),
            row("baseline", 0.2, dataset="lines", latent_dim=64, task="interpolation", metric="smoothness"),
            row("acai", 0.3, dataset="lines", latent_dim=64, task="interpolation", metric="smoothness"),
            row("baseline", 0.9, dataset="lines", latent_dim=64, task="linear", metric="accuracy"),
            row("acai", 0.9, dataset="lines", latent_dim=64, task="linear", metric="accuracy")]
    [table] = score_tables(rows, {})
    assert [(c.task, c.metric) for c in table.columns] == [
        ("linear", "accuracy"), ("interpolation", "mean_distance"), ("interpolation", "smoothness")]
    baseline, acai = table.rows
    assert [c.text for c in acai.cells] == ["90.00", "1.00", "0.300"]
    assert [c.best for c in baseline.cells] == [False, False, True]
    assert [c.best for c in acai.cells] == [False, True, False]  # equal accuracies: nobody marked


def test_settings_variants_split_a_column_and_budgets_split_rows():
    rows = [row("acai", 0.8, settings={"restarts": 10}), row("acai", 0.9, settings={"restarts": 1000}),
            row("acai", 0.6, budget=4096, settings={"restarts": 10})]
    [table] = score_tables(rows, {})
    # variants in the order of their canonical JSON text
    assert [(c.variant, c.settings) for c in table.columns] == [("a", '{"restarts":1000}'), ("b", '{"restarts":10}')]
    assert [(r.budget, [c.text if c else None for c in r.cells]) for r in table.rows] == [
        (4096, [None, "60.00"]), (16384, ["90.00", "80.00"])]


def test_reference_floor_joins_every_learned_table_of_its_dataset():
    rows = [row("acai", 0.8, latent_dim=32), row("acai", 0.9, latent_dim=256),
            row("pca", 0.7, latent_dim=256, budget=0, latent="components"),
            row("pixels", 0.6, latent_dim=1024, budget=0, latent="pixels")]
    tables = score_tables(rows, {})
    assert [(t.latent_dim, [r.encoder for r in t.rows]) for t in tables] == [
        (32, ["acai", "pixels"]), (256, ["acai", "pixels", "pca"])]


def test_unverified_data_flags_the_row_and_the_table():
    runs = {"acai-cifar10-256-16384-0": {"provenance": {"data": {"verified": "NO: md5s differ"}}},
            "baseline-cifar10-256-16384-0": {"provenance": {"data": {"verified": "md5 checked by torchvision"}}}}
    [table] = score_tables([row("acai", 0.5, dataset="cifar10", latent_dim=256),
                            row("baseline", 0.4, dataset="cifar10", latent_dim=256)], runs)
    assert [d.level for d in table.data_flags] == ["unverified"]
    assert [[d.text for d in r.data_flags] for r in table.rows] == [[], ["NO: md5s differ"]]
    assert not table.rows_share_data_flags


def test_paper_match_same_protocol_with_difference_and_offline_for_context():
    paper = load_paper(PAPER_JSON.read_text(encoding="utf-8"))
    rows = [row("acai", 0.98, seed=0, task="linear", metric="accuracy_online", settings={"protocol": "online"}),
            row("acai", 0.99, seed=1, task="linear", metric="accuracy_online", settings={"protocol": "online"}),
            row("acai", 0.97, task="linear", metric="accuracy"),
            row("acai", 0.85, task="kmeans", metric="accuracy"),
            row("acai", 0.00024, dataset="lines", latent_dim=64, task="interpolation", metric="mean_distance")]
    tables = {t.id: t for t in paper_tables(paper, rows, {})}
    [online] = [r for r in tables["table2"].matched]
    assert (online.dataset, online.latent_dim, online.encoder, online.paper) == ("MNIST", 32, "acai", "98.25 ± 0.11")
    assert not online.verified
    assert [(o.text, o.n, o.diff, o.protocol) for o in online.ours] == [("98.50 ± 0.50", 2, "+0.25", "same")]
    assert [(o.text, o.diff, o.protocol) for o in online.other] == [("97.00", None, "different")]
    [kmeans] = tables["table3"].matched
    assert (kmeans.paper, [(o.text, o.diff) for o in kmeans.ours]) == ("94.38", [("85.00", "\u22129.38")])
    [lines] = tables["table1"].matched
    assert (lines.encoder, lines.paper, [(o.text, o.diff) for o in lines.ours]) == (
        "acai", "0.24 ± 0.01", [("0.24", "+0.00")])
    assert PAPER_DECIMALS == 2


def test_paper_numbers_file_holds_the_recalled_tables_only():
    paper = json.loads(PAPER_JSON.read_text(encoding="utf-8"))
    values = {t["id"]: t["values"] for t in paper["tables"]}
    assert {k: len(v) for k, v in values.items()} == {"table1": 14, "table2": 37, "table3": 24}
    status = "unverified: recollection of the paper's table, not checked against the PDF (docs/protocol.md §9)"
    assert {v["status"] for vs in values.values() for v in vs} == {status}
    cell = {(t, v["dataset"], v["latent_dim"], v["encoder"], v["quantity"]): (v["mean"], v["std"])
            for t, vs in values.items() for v in vs}
    assert cell[("table1", "Lines", 64, "acai", "mean_distance")] == (0.24, 0.01)
    assert cell[("table1", "Lines", 256, "vqvae", "smoothness")] == (0.77, 0.02)
    assert cell[("table2", "SVHN", 32, "denoising", "classifier_accuracy")] == (77.89, 0.35)
    assert cell[("table2", "CIFAR-10", 1024, "acai", "classifier_accuracy")] == (63.99, 0.47)
    assert cell[("table3", "MNIST", 256, "acai", "kmeans_accuracy")] == (96.17, None)
    # cells the paper leaves unreadable are absent from reports/paper.json: omitted, not invented
    assert ("table2", "SVHN", 256, "vae", "classifier_accuracy") not in cell
    assert ("table3", "SVHN", 256, "acai", "kmeans_accuracy") not in cell
    mapping = {t["id"]: [(o["task"], o["metric"], o["protocol"]) for q in t["quantities"].values() for o in q["ours"]]
               for t in paper["tables"]}
    assert mapping == {
        "table1": [("interpolation", "mean_distance", "same"), ("interpolation", "smoothness", "same")],
        "table2": [("linear", "accuracy_online", "same"), ("linear", "accuracy", "different")],
        "table3": [("kmeans", "accuracy", "same")]}


def test_paper_file_with_an_unknown_quantity_is_refused():
    paper = json.loads(PAPER_JSON.read_text(encoding="utf-8"))
    paper["tables"][0]["values"][0]["quantity"] = "nope"
    with pytest.raises(ValueError, match="unknown quantity 'nope'"):
        load_paper(json.dumps(paper))


def test_previews_that_are_not_uint8_image_stacks_are_skipped(tmp_path):
    from report_synthetic import previews

    from repeval.previews import load_previews

    good = previews(1, 0)
    np.savez(tmp_path / "previews-map.npz", **good)
    assert {k: v.shape for k, v in load_previews(tmp_path, "map").items()} == {
        "originals": (8, 1, 32, 32), "reconstructions": (8, 1, 32, 32), "interpolations": (4, 10, 1, 32, 32)}
    np.savez(tmp_path / "previews-float.npz", **{**good, "originals": good["originals"].astype(float)})
    np.savez(tmp_path / "previews-shape.npz", **{**good, "reconstructions": good["reconstructions"][:, :, :16]})
    (tmp_path / "previews-junk.npz").write_bytes(b"not a zip")
    assert [load_previews(tmp_path, k) for k in ("float", "shape", "junk", "absent")] == [None] * 4


def test_image_grid_geometry():
    from repeval.report.figures import tile_grid

    data, width, height = tile_grid(np.zeros((2, 3, 3, 32, 32), np.uint8))
    assert (width, height) == (3 * 33 - 1, 2 * 33 - 1)
    assert data.startswith(b"\x89PNG")


def test_a_failed_seed_shows_nan_and_is_never_best():
    [table] = score_tables([row("acai", math.nan, seed=0), row("acai", 0.9, seed=1),
                            row("baseline", 0.5), row("dropout", 0.6)], {})
    assert [(r.encoder, r.cells[0].text, r.cells[0].best) for r in table.rows] == [
        ("baseline", "50.00", False), ("dropout", "60.00", True), ("acai", "NaN", False)]
