"""The HTML report from synthetic stores: exact numbers and markers, the paper comparison,
escaping, empty and damaged workdirs, atomic writing, and a 300-run store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from html_tables import tables
from report_synthetic import PROVENANCE, add_run

import repeval
from repeval.cli import main
from repeval.report import build_report
from repeval.store import Store

UNVERIFIED = {**PROVENANCE, "data": {"name": "cifar10", "fingerprint": "c1fa", "source": "torchvision.datasets.CIFAR10",
                                     "verified": "NO: md5s differ from the official ones (--allow-unverified)"}}
B = "16,384 (2¹⁴)"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A small store (read-only for the tests that share it): mnist, lines and unverified cifar10."""
    work = tmp_path_factory.mktemp("report") / "work"
    with Store.in_workdir(work) as store:
        for seed, (km, online) in enumerate([(0.5, 0.9), (0.7, 0.92)]):
            add_run(store, work, "baseline", "mnist", 32, seed, 16384, {
                ("kmeans", "accuracy"): km, ("linear", "accuracy"): 0.6, ("linear", "accuracy_online"): online})
        for seed, (km, online) in enumerate([(0.8, 0.98), (0.9, 0.99)]):
            add_run(store, work, "acai", "mnist", 32, seed, 16384, {
                ("kmeans", "accuracy"): km, ("linear", "accuracy"): 0.97, ("linear", "accuracy_online"): online})
        add_run(store, work, "pixels", "mnist", 1024, 0, 0, {("kmeans", "accuracy"): 0.95, ("linear", "accuracy"): 0.9})
        add_run(store, work, "acai", "lines", 64, 0, 16384, {
            ("interpolation", "mean_distance"): 0.00024, ("interpolation", "smoothness"): 0.1},
            details={("interpolation", "smoothness"): {"n_undefined": 0, "n_interpolations": 256}})
        add_run(store, work, "baseline", "lines", 64, 0, 16384, {
            ("interpolation", "mean_distance"): 0.002, ("interpolation", "smoothness"): 0.5},
            details={("interpolation", "smoothness"): {"n_undefined": 37, "n_interpolations": 256}})
        add_run(store, work, "acai", "cifar10", 256, 0, 16384, {("kmeans", "accuracy"): 0.3},
                provenance=UNVERIFIED, channels=3)
    return work


@pytest.fixture(scope="module")
def html(workdir) -> str:
    return render(workdir)


def render(work: Path, **kwargs) -> str:
    out = build_report(work, work / "report.html", **kwargs)
    return out.read_text(encoding="utf-8")


def table_under(html: str, heading: str, index: int = 0) -> list[list[str]]:
    return [t for t in tables(html) if t["heading"].startswith(heading)][index]["rows"]


@pytest.mark.slow
def test_header_counts_runs_and_scores(html, workdir):
    assert f"by repeval {repeval.__version__}" in html
    assert "8 runs, 19 scores in 3 dataset × latent-size tables" in html
    assert f"<code>{workdir.resolve()}</code>" in html


def test_score_table_mean_std_n_best_and_floor(html):
    rows = table_under(html, "mnist · latent dim 32")
    assert rows == [
        ["Encoder", "Latent", "Budget", "n", "Linear, online acc. %", "Linear, offline acc. %", "k-means acc. %"],
        # under each mean its 95 % t interval over the two seeds, cut at [0, 100] % and marked ᶜ where one
        # degree of freedom reaches past it; k-means: acai is ahead by 25 points on both seeds' pairs but
        # p = 0.13 (paired t, n = 2), so baseline shares the mark; offline linear: acai is ahead by 37 points
        # on both seeds, no spread, so the exact sign-flip test's p = 0.5 (its smallest at n = 2): shared too
        ["baseline", "map", B, "2", "91.00 ± 1.00[78.29, 100.00]ᶜ", "60.00 ± 0.00★[60.00, 60.00]",
         "60.00 ± 10.00★[0.00, 100.00]ᶜ"],
        ["acai", "map", B, "2", "98.50 ± 0.50★[92.15, 100.00]ᶜ", "97.00 ± 0.00★[97.00, 97.00]",
         "85.00 ± 5.00★[21.47, 100.00]ᶜ"],
        ["pixels", "pixels (1024-d)", "fitted", "1", "–", "90.00", "95.00"],  # one seed, no per-example data
    ]


def test_paper_tables_beside_ours_with_difference_and_status(html):
    table2 = table_under(html, "Table 2: single-layer classifier accuracy")
    # means ± std over reruns: both 95 % intervals (the paper's assuming 3 reruns) and the difference
    assert table2 == [
        ["Dataset", "Dim", "Family", "Paper", "Paper 95 % 3 reruns assumed", "Ours same protocol", "Ours 95 %", "n",
         "Our data", "Budget", "Δ ours − paper", "Ours, offline linear different protocol", "n"],
        ["MNIST", "32", "baseline", "94.90 ± 0.14R", "[94.47, 95.33]", "91.00 ± 1.00", "[78.29, 100.00]ᶜ", "2",
         "mnist map", B, "\u22123.90", "60.00 ± 0.00", "2"],
        ["MNIST", "32", "acai", "98.25 ± 0.11R", "[97.92, 98.58]", "98.50 ± 0.50", "[92.15, 100.00]ᶜ", "2",
         "mnist map", B, "+0.25", "97.00 ± 0.00", "2"],
    ]
    # single draws: where the paper's number falls among our models, no difference of means
    table3 = table_under(html, "Table 3: k-means clustering accuracy")
    assert table3 == [
        ["Dataset", "Dim", "Family", "Paper", "Ours same protocol", "Ours 95 %", "n", "Our data", "Budget",
         "The paper's single draw among our models"],
        ["MNIST", "32", "baseline", "77.56R", "60.00 ± 10.00", "[0.00, 100.00]ᶜ", "2", "mnist map", B,
         "inside our 95 % range for one model [0.00, 100.00]ᶜ; above 2 of our 2 models"],
        ["MNIST", "32", "acai", "94.38R", "85.00 ± 5.00", "[21.47, 100.00]ᶜ", "2", "mnist map", B,
         "inside our 95 % range for one model [0.00, 100.00]ᶜ; above 2 of our 2 models"],
    ]
    status = ("corroborated by a reprint: Qian et al., IJCAI-19 (MIDR-AE), Tables 2–3, captioned "
              "&#34;excerpted from ACAI&#34;: a third party&#39;s transcription of the paper&#39;s tables, not the "
              "paper&#39;s PDF")
    assert f'<span class="paper standing-reprint" title="{status}">98.25 ± 0.11<sup>R</sup></span>' in html
    assert "2 of 42 paper values have a matching score in this workdir." in html
    for level in ("corroborated by a reprint", "corroborated by a secondary note", "unverified recollection"):
        assert f"<b>{level}</b>" in html  # the legend of the standings
    assert "recollection of the paper&#39;s tables that has <b>not</b>" not in html
    assert "Ours here: 16,384 (2¹⁴) (1/1,024 of the paper&#39;s)." in html


def test_lines_view_is_table_1_with_paper_values_and_strips(html):
    rows = table_under(html, "Lines benchmark")
    assert rows[1:] == [
        # Table 1: the two Mean Distance means a secondary note corroborates (N), the rest recalled (†)
        ["baseline (map)", "64", B, "1", "2.00", "6.88 ± 0.21N", "\u22124.88", "0.500", "0.44 ± 0.04†", "+0.06",
         "37 / 256"],
        ["acai (map)", "64", B, "1", "0.24★", "0.24 ± 0.01N", "+0.00", "0.100★", "0.10 ± 0.01†", "+0.00", "0 / 256"],
    ]
    assert html.count('alt="interpolations of acai on lines"') == 1


def test_figures_and_previews_are_embedded_images(html):
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    # per table: bars and curves; per row with a previews file: reconstructions and interpolations
    assert html.count('alt="probe scores on ') == 3
    assert html.count('alt="training curves on ') == 3
    assert html.count('alt="reconstructions of ') == 3 + 2 + 1


def test_unverified_data_is_flagged_where_its_scores_appear(html):
    flag = ('<span class="flag flag-unverified" title="data: NO: md5s differ from the official ones '
            '(--allow-unverified)">unverified data</span>')
    assert f"cifar10 · latent dim 256{flag}</h3>" in html  # the score table's heading
    assert f'<h3 id="fig-scores-cifar10-256">cifar10 · latent dim 256{flag}</h3>' in html
    assert f"acai-cifar10-256-b16384-s0</code>{flag}</summary>" in html  # provenance
    assert html.count(flag) == 3


def test_no_external_resources_and_a_strict_content_security_policy(html):
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "url(" not in html and "@import" not in html and "http://" not in html and "https://" not in html
    assert ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src &#39;none&#39;; img-src data:; "
            "style-src &#39;unsafe-inline&#39;; script-src &#39;sha256-") in html


def test_hostile_names_and_settings_are_escaped(tmp_path):
    work = tmp_path / "work"
    encoder, dataset = '<script>alert(1)</script>"e$x$', '"><img src=x onerror=alert(2)>'
    hostile = {**PROVENANCE, "device": "<script>alert(4)</script>", "data": {
        "verified": "NO: <script>alert(5)</script>", "fingerprint": '"><b>', "source": "<i>s</i>"}}
    with Store.in_workdir(work) as store:
        for seed in (0, 1):
            add_run(store, work, encoder, dataset, 32, seed, 16384, {("kmeans", "accuracy"): 0.5 + seed / 10},
                    settings={"kmeans": {"note": "</pre><script>alert(3)</script>"}}, provenance=hostile)
        add_run(store, work, "acai", dataset, 32, 0, 16384, {("kmeans", "accuracy"): 0.4}, latent='"><svg onload=x>')
    html = render(work)
    assert "alert(" in html  # the names are shown ...
    assert "<script>alert" not in html and "<img src=x" not in html and "<svg" not in html  # ... never raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;e$x$" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in html and "NO: &lt;script&gt;alert(5)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # the page's own error recorder only


@pytest.mark.slow
def test_hostile_paths_and_names_of_outside_encoders_and_datasets_are_escaped(tmp_path):
    """Through the command line: an embeddings file in a folder whose name holds quotes and a
    script tag, grouped under a dataset name that is an HTML attack, and an npz dataset whose
    file name is one. Their names and paths reach the report (tables, provenance) escaped only;
    a hostile --name is refused outright (names are letters, digits, '.', '_', '-')."""
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    folder = tmp_path / "we\"ird'<script>alert(7)"  # (a file name cannot hold the closing tag's slash)
    folder.mkdir()
    embeddings = folder / "emb.npz"
    np.savez(embeddings, z_train=rng.normal(size=(30, 4)), y_train=np.arange(30) % 3,
             z_test=rng.normal(size=(12, 4)), y_test=np.arange(12) % 3, meta=np.array(json.dumps({})))
    images = tmp_path / "q\"uote<svg onload=alert(9)>.npz"
    np.savez(images, x_train=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y_train=np.arange(30) % 3,
             x_test=rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), y_test=np.arange(12) % 3)
    work, out = tmp_path / "work", tmp_path / "report.html"
    runner = CliRunner()

    def cli(*args, expect=0):
        result = runner.invoke(main, [*map(str, args)], env={"REPEVAL_HOME": str(work)}, catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    grouping = '"><img src=x onerror=alert(8)>'
    cli("run", "--encoder", f"latents:{embeddings}", "--task", "knn", "--set", "knn.k=3", "--dataset", grouping)
    cli("run", "--encoder", "pca", "--latent-dim", "4", "--task", "knn", "--set", "knn.k=3", "--dataset",
        f"npz:{images}")
    refused = cli("run", "--encoder", f"latents:{embeddings}", "--name", "<script>alert(10)</script>", "--task",
                  "knn", "--dataset", grouping, expect=2)
    assert "is not a usable encoder name" in refused.output
    cli("report", "--out", out)
    html = out.read_text()
    assert "alert(7)" in html and "alert(8)" in html and "alert(9)" in html  # shown ...
    for raw in ("<script>alert(7)", "<img src=x", "<svg onload", "alert(10)"):
        assert raw not in html, raw  # ... never as markup
    assert "we&#34;ird&#39;&lt;script&gt;alert(7)" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(8)&gt;" in html
    assert "q&#34;uote&lt;svg onload=alert(9)&gt;.npz" in html
    assert html.count("<script>") == 1  # the page's own error recorder only


def test_empty_store_says_how_to_produce_scores(tmp_path):
    work = tmp_path / "work"
    Store.in_workdir(work).close()
    html = render(work)
    assert "The results store holds no scores yet." in html
    assert "repeval run --encoder baseline --encoder acai --encoder pixels --task linear --task kmeans" in html
    assert "0 runs, 0 scores" in html


def test_workdir_without_a_store_is_not_created(tmp_path):
    work = tmp_path / "nowhere"
    out = build_report(work, tmp_path / "report.html")
    assert "No results store in this workdir" in out.read_text(encoding="utf-8")
    assert not work.exists()


def test_deleted_run_directories_are_tolerated(tmp_path):
    work = tmp_path / "work"
    with Store.in_workdir(work) as store:
        add_run(store, work, "acai", "mnist", 32, 0, 16384, {("kmeans", "accuracy"): 0.8}, run_dir=False)
        add_run(store, work, "baseline", "mnist", 32, 0, 16384, {("kmeans", "accuracy"): 0.6})
    html = render(work)
    assert table_under(html, "mnist · latent dim 32")[1:] == [
        ["baseline", "map", B, "1", "60.00"], ["acai", "map", B, "1", "80.00★"]]
    assert "1 run has no checkpoint directory on disk" in html
    assert "missing (deleted?)" in html
    assert "No previews file for: acai." in html


@pytest.mark.slow
def test_missing_paper_file_leaves_the_comparison_out(workdir, tmp_path):
    html = build_report(workdir, tmp_path / "r.html", paper=tmp_path / "nope.json").read_text(encoding="utf-8")
    assert f"No paper numbers file at {tmp_path / 'nope.json'}; the comparison is left out." in html
    assert table_under(html, "mnist · latent dim 32")[2][-1] == "85.00 ± 5.00★[21.47, 100.00]ᶜ"


@pytest.mark.slow
def test_report_replaces_the_output_atomically(workdir, tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old")
    build_report(workdir, out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.slow
def test_cli_report_writes_the_file(workdir, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--workdir", str(workdir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    assert "mnist · latent dim 32" in out.read_text(encoding="utf-8")


@pytest.mark.slow
def test_three_hundred_runs_render_into_a_small_file(tmp_path):
    """A large store: 6 dataset × dim tables, 7 learned families × 7 seeds each, plus pixels."""
    work = tmp_path / "work"
    learned = ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai")
    with Store.in_workdir(work) as store:
        for dataset, channels in (("mnist", 1), ("svhn", 3), ("cifar10", 3)):
            for dim in (32, 256):
                for i, encoder in enumerate(learned):
                    for seed in range(7):
                        add_run(store, work, encoder, dataset, dim, seed, 16384, {
                            ("linear", "accuracy"): 0.5 + i / 20, ("linear", "accuracy_online"): 0.45 + i / 20,
                            ("kmeans", "accuracy"): 0.3 + i / 20 + seed / 100, ("kmeans", "nmi"): 0.2,
                            ("kmeans", "ari"): 0.1, ("knn", "accuracy"): 0.6}, channels=channels)
            for seed in range(2):
                add_run(store, work, "pixels", dataset, channels * 1024, seed, 0,
                        {("linear", "accuracy"): 0.4, ("kmeans", "accuracy"): 0.2}, channels=channels)
    html = render(work)
    assert html.count('<details class="run"') == 300
    assert len([t for t in tables(html) if " · latent dim " in t["heading"] and t["rows"][0][0] == "Encoder"]) == 6
    assert table_under(html, "svhn · latent dim 256")[7][:5] == ["acai", "map", B, "7", "75.00 ± 0.00★[75.00, 75.00]"]
    assert (work / "report.html").stat().st_size < 5_000_000


def test_signals_render_as_waveforms_with_the_interpolation_details(tmp_path):
    """A shepard run: its previews are float16 signals, drawn as waveform strips; the score table
    shows the interpolation details beside Mean Distance and Smoothness."""
    import numpy as np

    from repeval.data import shepard
    from repeval.previews import load_previews, preview_path

    work = tmp_path / "work"
    scores = {("interpolation", "mean_distance"): 0.01, ("interpolation", "smoothness"): 0.2,
              ("interpolation", "smoothness_strict"): 0.45, ("interpolation", "detour"): -0.3,
              ("interpolation", "endpoint_error"): 0.05, ("interpolation", "n_undefined"): 12}
    details = {key: {"n_interpolations": 256, "bank_size": 10_000} for key in scores}
    with Store.in_workdir(work) as store:
        rid = add_run(store, work, "vae", "shepard", 64, 0, 16384, scores, details=details, latent="mean")
    tones = shepard.tones(np.linspace(0, 1, 8, endpoint=False))[:, None].astype(np.float16)
    steps = shepard.tones(np.linspace(0, 0.5, 40)).reshape(4, 10, 1, -1).astype(np.float16)
    path = preview_path(work / "checkpoints" / rid, "mean")
    np.savez_compressed(path, originals=tones, reconstructions=tones, interpolations=steps)
    assert load_previews(path.parent, "mean")["interpolations"].shape == (4, 10, 1, 1024)
    html = render(work)
    header, row = table_under(html, "shepard · latent dim 64")[:2]
    assert header[4:] == ["Interpolation mean distance ×10⁻³ ↓", "Interpolation smoothness ↓", "Interpolation strict ↓",
                          "Interpolation detour", "Interpolation end error rad ↓", "Interpolation undefined ↓"]
    assert row[4:] == ["10.00", "0.200", "0.450", "−0.300", "0.050", "12"]
    strips = re.findall(r'<img [^>]*alt="(reconstructions|interpolations) of vae[^"]*"[^>]*width="(\d+)" '
                        r'height="(\d+)"', html)
    # 8 waveforms of 128 columns side by side (1 px gaps), 32 px per channel: originals over reconstructions
    assert ("reconstructions", str(8 * 129 - 1), str(2 * 33 - 1)) in strips
    assert ("interpolations", str(10 * 129 - 1), str(4 * 33 - 1)) in strips
