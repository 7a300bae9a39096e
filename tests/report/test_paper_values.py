"""reports/paper.json against the paper's tables as the reprint prints them, cell for cell.

The paper's Tables 2 and 3 are reprinted in S. Qian, G. Li, W.-M. Cao, C. Liu, S. Wu,
H.-S. Wong, "Improving Representation Learning in Autoencoders via Multidimensional
Interpolation and Dual Regularizations" (MIDR-AE, IJCAI-19), whose captions say the other
models' results are "excerpted from ACAI". The literals below are that reprint; every cell
it prints must be in the file with its value, its ± and the standing "corroborated by a
reprint", and nothing else may be in Tables 2 and 3. Table 1 is not in the reprint: two of
its means are corroborated by a secondary note, the rest are an unverified recollection.
"""

from __future__ import annotations

import json
from pathlib import Path

from repeval.report.paper import STANDINGS, load_paper

PAPER_JSON = Path(__file__).resolve().parents[2] / "reports" / "paper.json"
FAMILIES = ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai")

# Table 2: single-layer classifier test accuracy (%), mean ± std over reruns
TABLE2 = {
    ("MNIST", 32): ["94.90±0.14", "96.45±0.42", "96.00±0.27", "96.56±0.31", "70.74±3.27", "97.50±0.18", "98.25±0.11"],
    ("MNIST", 256): ["93.94±0.13", "94.50±0.29", "98.51±0.04", "98.74±0.14", "90.03±0.54", "97.25±1.42", "99.00±0.08"],
    ("SVHN", 32): ["26.21±0.42", "26.09±1.48", "25.15±0.78", "29.58±3.22", "23.43±0.79", "24.53±1.33", "34.47±1.14"],
    ("SVHN", 256): ["22.74±0.05", "25.12±1.05", "77.89±0.35", "66.30±1.06", "22.81±0.24", "44.94±20.42", "85.14±0.20"],
    ("CIFAR-10", 256): ["47.92±0.20", "40.99±0.41", "53.78±0.36", "47.49±0.22", "40.65±1.45", "42.80±0.44",
                        "52.77±0.45"],
    ("CIFAR-10", 1024): ["51.62±0.25", "49.38±0.77", "60.65±0.14", "51.39±0.46", "42.86±0.88", "16.22±12.44",
                         "63.99±0.47"],
}

# Table 3: k-means clustering accuracy (%), one model per cell
TABLE3 = {
    ("MNIST", 32): [77.56, 82.67, 82.59, 75.74, 79.19, 82.39, 94.38],
    ("MNIST", 256): [53.70, 61.35, 70.89, 83.44, 81.00, 96.80, 96.17],
    ("SVHN", 32): [19.38, 21.42, 17.91, 16.83, 17.35, 15.19, 20.86],
    ("SVHN", 256): [15.62, 15.19, 31.49, 11.36, 13.59, 18.84, 24.98],
}

# the reference columns printed beside Table 3: MNIST, SVHN
TABLE3_REFERENCES = {"k-means on raw data": (53.2, 17.9), "DEC": (84.3, 11.9), "IMSAT": (98.4, 57.3)}


def _file() -> dict:
    return json.loads(PAPER_JSON.read_text(encoding="utf-8"))


def _cells(paper: dict, table_id: str) -> dict:
    [table] = [t for t in paper["tables"] if t["id"] == table_id]
    cells = {}
    for v in table["values"]:
        key = (v["dataset"], v["latent_dim"], v["encoder"])
        assert key not in cells, f"{table_id}: {key} twice"
        cells[key] = v
    return cells


def test_table2_is_the_reprint_cell_for_cell():
    cells = _cells(_file(), "table2")
    expected = {}
    for (dataset, dim), line in TABLE2.items():
        for family, text in zip(FAMILIES, line):
            mean, std = text.split("±")
            expected[(dataset, dim, family)] = (float(mean), float(std))
    assert len(expected) == 42
    assert {k: (v["mean"], v["std"]) for k, v in cells.items()} == expected
    assert {v["quantity"] for v in cells.values()} == {"classifier_accuracy"}
    assert {v["status"] for v in cells.values()} == {"reprint"}


def test_table3_is_the_reprint_cell_for_cell_with_its_reference_rows():
    paper = _file()
    cells = _cells(paper, "table3")
    expected = {(dataset, dim, family): value
                for (dataset, dim), line in TABLE3.items() for family, value in zip(FAMILIES, line)}
    assert len(expected) == 28
    assert {k: v["mean"] for k, v in cells.items()} == expected
    assert all(v["std"] is None for v in cells.values())  # single draws: no ±
    assert {v["status"] for v in cells.values()} == {"reprint"}
    [table] = [t for t in paper["tables"] if t["id"] == "table3"]
    refs = {(r["label"], r["dataset"]): r["mean"] for r in table["references"]}
    assert refs == {(label, dataset): value for label, values in TABLE3_REFERENCES.items()
                    for dataset, value in zip(("MNIST", "SVHN"), values)}
    assert {r["status"] for r in table["references"]} == {"reprint"}
    assert table["cell"] == "single"


def test_the_cells_once_held_wrongly_are_the_reprints():
    t2, t3 = _cells(_file(), "table2"), _cells(_file(), "table3")
    assert (t3[("MNIST", 32, "vqvae")]["mean"], t3[("MNIST", 256, "vqvae")]["mean"]) == (82.39, 96.80)
    assert t2[("CIFAR-10", 256, "denoising")]["std"] == 0.36
    assert (t2[("SVHN", 32, "denoising")]["mean"], t2[("SVHN", 256, "denoising")]["mean"]) == (25.15, 77.89)
    for old in (68.26, 66.63, 77.45, 61.61, 59.19, 43.65, 18.19):
        assert all(v["mean"] != old for v in [*t2.values(), *t3.values()])


def test_table1_standing_two_means_by_a_secondary_note_the_rest_recalled():
    [table1] = [t for t in _file()["tables"] if t["id"] == "table1"]
    cells = {(v["encoder"], v["quantity"]): v for v in table1["values"]}
    assert len(cells) == 14
    secondary = {k: v["mean"] for k, v in cells.items() if v["status"] == "secondary"}
    assert secondary == {("baseline", "mean_distance"): 6.88, ("acai", "mean_distance"): 0.24}
    assert {v["status"] for k, v in cells.items() if k not in secondary} == {"recollection"}


def test_every_status_is_one_of_the_three_declared_standings():
    paper = load_paper(PAPER_JSON.read_text(encoding="utf-8"))  # checks the vocabulary
    assert {k: s["level"] for k, s in paper["statuses"].items()} == {
        "reprint": "corroborated by a reprint", "secondary": "corroborated by a secondary note",
        "recollection": "unverified recollection"}
    assert {k: s.level for k, s in STANDINGS.items()} == {k: s["level"] for k, s in paper["statuses"].items()}
    source = paper["statuses"]["reprint"]["source"]
    for words in ("Qian et al.", "IJCAI-19", "MIDR-AE", "Tables 2–3", "excerpted from ACAI"):
        assert words in source
    counts: dict[str, int] = {}
    for table in paper["tables"]:
        for v in [*table["values"], *table.get("references", [])]:
            counts[v["status"]] = counts.get(v["status"], 0) + 1
    assert counts == {"reprint": 42 + 28 + 6, "secondary": 2, "recollection": 12}
