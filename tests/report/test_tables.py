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
from repeval.report.scores import pairwise_matrix, score_tables

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
    # t with one degree of freedom reaches past [0, 100] %: cut at the range and marked
    assert [(c.ci_text, c.ci_clipped) for c in cells] == [
        ("[0.00, 100.00]", True), ("[21.47, 100.00]", True), ("", False)]
    assert "1 degree of freedom" in cells[0].title and "cut at the metric's range" in cells[0].title
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
    # variants in the order of their canonical JSON text, each named by the setting that differs
    assert [(c.variant, c.settings) for c in table.columns] == [
        ("1,000 restarts", '{"restarts":1000}'), ("10 restarts", '{"restarts":10}')]
    assert [c.title for c in table.columns] == ["k-means, 1,000 restarts: acc. %", "k-means, 10 restarts: acc. %"]
    assert [(r.budget, [c.text if c else None for c in r.cells]) for r in table.rows] == [
        (4096, [None, "60.00"]), (16384, ["90.00", "80.00"])]


def test_one_encoder_at_two_budgets_is_named_apart_in_the_pairwise_matrix():
    # a study that continued its runs to a longer budget: both budgets are rows of one table
    rows = [row(e, v + 0.01 * s, seed=s, budget=b) for s in range(3)
            for e, b, v in (("acai", 4096, 0.6), ("acai", 16384, 0.8), ("baseline", 16384, 0.7))]
    [table] = score_tables(rows, {})
    matrix = pairwise_matrix(table)
    assert matrix.labels == ["baseline", "acai @4,096 (2¹²)", "acai @16,384 (2¹⁴)"] == table.row_labels()
    titles = [cell.title for line in matrix.cells for cell in line if cell is not None]
    assert titles[3].startswith("acai @4,096 (2¹²) − acai @16,384 (2¹⁴): −20.00")
    assert not any(title.startswith("acai − acai") for title in titles)


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
    assert (online.standing.key, online.verified) == ("reprint", True)
    assert online.status.startswith("corroborated by a reprint: Qian et al., IJCAI-19 (MIDR-AE)")
    # a mean ± std table: both 95 % intervals (the paper's over 3 assumed reruns) and ours − paper
    assert online.ci_text == "[97.92, 98.58]"  # 98.25 ± t(2)·0.11/√2
    assert [(o.text, o.ci_text, o.n, o.diff, o.protocol) for o in online.ours] == [
        ("98.50 ± 0.50", "[92.15, 100.00]ᶜ", 2, "+0.25", "same")]
    assert [(o.text, o.diff, o.protocol) for o in online.other] == [("97.00", None, "different")]
    # a single draw (Table 3): where it falls among our models, no difference of means
    [kmeans] = tables["table3"].matched
    assert (kmeans.paper, [(o.text, o.diff, o.position) for o in kmeans.ours]) == ("94.38", [("85.00", None, "above")])
    assert "our one model" in kmeans.ours[0].position_text
    [lines] = tables["table1"].matched
    assert (lines.encoder, lines.paper, lines.standing.key, [(o.text, o.diff) for o in lines.ours]) == (
        "acai", "0.24 ± 0.01", "secondary", [("0.24", "+0.00")])
    assert PAPER_DECIMALS == 2


def test_paper_numbers_file_maps_each_quantity_to_our_metrics():
    paper = json.loads(PAPER_JSON.read_text(encoding="utf-8"))
    mapping = {t["id"]: [(o["task"], o["metric"], o["protocol"]) for q in t["quantities"].values() for o in q["ours"]]
               for t in paper["tables"]}
    assert mapping == {
        "table1": [("interpolation", "mean_distance", "same"), ("interpolation", "smoothness", "same")],
        "table2": [("linear", "accuracy_online", "same"), ("linear", "accuracy", "different")],
        "table3": [("kmeans", "accuracy", "same")]}
    assert [t["cell"] for t in paper["tables"]] == ["mean_std", "mean_std", "single"]


def test_single_draw_position_against_several_models():
    paper = load_paper(PAPER_JSON.read_text(encoding="utf-8"))
    rows = [row("acai", v, seed=s, task="kmeans", metric="accuracy") for s, v in enumerate([0.80, 0.82, 0.81])]
    rows += [row("baseline", v, seed=s, task="kmeans", metric="accuracy") for s, v in enumerate([0.70, 0.90, 0.78])]
    tables = {t.id: t for t in paper_tables(paper, rows, {})}
    acai, baseline = sorted(tables["table3"].matched, key=lambda r: r.encoder)
    # 94.38 against 80, 82, 81: far above our 95 % range for one model (81 ± t(2)·1·√(4/3))
    assert (acai.ours[0].position, acai.ours[0].diff) == ("above", None)
    assert acai.ours[0].position_text == "our 95 % range for one model [76.03, 85.97]; above 3 of our 3 models"
    # 77.56 against 70, 90, 78: inside a range cut at 100 %
    assert baseline.ours[0].position == "inside"
    assert baseline.ours[0].position_text.endswith("ᶜ; above 1 of our 3 models")


def test_paper_file_with_an_unknown_quantity_is_refused():
    paper = json.loads(PAPER_JSON.read_text(encoding="utf-8"))
    paper["tables"][0]["values"][0]["quantity"] = "nope"
    with pytest.raises(ValueError, match="unknown quantity 'nope'"):
        load_paper(json.dumps(paper))


@pytest.mark.parametrize("change, message", [
    (lambda p: p["tables"][1]["values"][0].update(status="verified"), "status 'verified', not one of"),
    (lambda p: p["statuses"]["reprint"].update(level="checked"), "status 'reprint' must be one of"),
    (lambda p: p["statuses"].update(pdf={"level": "verified", "source": "x"}), "status 'pdf' must be one of"),
    (lambda p: p["tables"][2].update(cell="median"), "cell must be one of"),
])
def test_paper_file_outside_the_declared_vocabulary_is_refused(change, message):
    paper = json.loads(PAPER_JSON.read_text(encoding="utf-8"))
    change(paper)
    with pytest.raises(ValueError, match=message):
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


def test_no_interval_summarise_or_the_tables_give_leaves_its_metrics_range():
    """Random two- and three-seed cells of every declared metric with a bounded range (values
    drawn near its ends, where a t interval reaches past them): every interval lies inside."""
    from repeval.probes import TASKS
    from repeval.summary import summarise

    rng = np.random.default_rng(1)
    rows = []
    for task in TASKS.values():
        for metric in task.metrics:
            low, high = metric.bounds
            for case in range(6):
                centre = (high if case % 2 else low) if low is not None and high is not None else (low or 0.0) + 0.01
                for seed in range(2 + case % 2):
                    value = centre + (rng.random() * 0.02 - 0.01)
                    value = min(max(value, low if low is not None else value), high if high is not None else value)
                    rows.append(row(f"enc{case}", value, seed=seed, task=task.name, metric=metric.name,
                                    settings={"case": case}))
    groups = summarise(rows)
    assert len(groups) == 6 * sum(len(t.metrics) for t in TASKS.values())
    clipped = 0
    for g in groups:
        low, high = TASKS.get(g["task"]).metric(g["metric"]).bounds
        ci = g["ci"]
        assert ci is not None
        assert (low is None or ci["low"] >= low) and (high is None or ci["high"] <= high), g
        clipped += ci["clipped"]
    assert clipped > len(groups) // 3
    for table in score_tables(rows, {}):
        for r in table.rows:
            for col, cell in zip(table.columns, r.cells):
                if cell is None or not cell.ci_text:
                    continue
                low, high = (float(v.replace("\u2212", "-")) for v in cell.ci_text.strip("[]").split(", "))
                lo, hi = col.view.bounds
                assert (lo is None or low >= col.view.display(lo) - 1e-9) and \
                    (hi is None or high <= col.view.display(hi) + 1e-9)
