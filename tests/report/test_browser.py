"""A report from a small real run, opened in headless Chromium.

The page's own error recorder (build.ERROR_SCRIPT) writes script errors, blocked loads
and undecodable images (not complete, or zero natural width) to ``<html data-errors>`` and
sets ``data-checked="1"`` on load; ``--dump-dom`` serialises the DOM after the scripts ran,
so the tests read both there, and the rendered page itself: the score table with the run's
encoders and numbers, every image, the provenance entry of every run. A screenshot must not
be blank. Skipped only when Chromium is not installed (CI installs it).
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from html_tables import tables

from repeval.cli import main
from repeval.probes import TASKS
from repeval.report import build_report
from repeval.store import Store

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")

ENCODERS = ("baseline", "pixels")  # learned first, reference last: the table's row order
RUN_TASKS = ("linear", "kmeans")
TABLE = "digits · latent dim 256"
# a cell: mean (± std), then at most a 95 % interval (‡: over test examples, one model), a best mark
# and a near-chance note
NUMBER = re.compile(r"^-?\d+(\.\d+)?( ± \d+(\.\d+)?)?★?(\[[−\d.]+, [−\d.]+\]‡?)?(≈ chance)?$")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(),
                                 reason=f"headless Chromium is not installed at {CHROMIUM} (CI installs it)")]


def chromium(args: list[str], profile: Path) -> str:
    """Run headless Chromium with a fresh profile; its stdout."""
    done = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def html_tag(dom: str) -> str:
    """The opening ``<html ...>`` tag of a serialised DOM (where the recorder writes)."""
    match = re.search(r"<html\b[^>]*>", dom)
    assert match, dom[:500]
    return match.group(0)


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> Path:
    """``repeval run`` of baseline (256 training images) and pixels on digits, then the report."""
    work = tmp_path_factory.mktemp("real")
    result = CliRunner().invoke(main, [
        "run", "--encoder", "baseline", "--encoder", "pixels", "--task", "linear", "--task", "kmeans",
        "--dataset", "digits", "--budget", "256", "--workdir", str(work)])
    assert result.exit_code == 0, result.output
    return build_report(work, work / "report.html")


@pytest.fixture(scope="module")
def run_ids(real_report) -> list[str]:
    """The run ids the store holds for the report's workdir."""
    with Store.in_workdir(real_report.parent) as store:
        ids = [run["run_id"] for run in store.runs()]
    assert len(ids) == len(ENCODERS)
    return ids


@pytest.fixture(scope="module")
def dom(real_report, tmp_path_factory) -> str:
    """The report's DOM after load, as headless Chromium serialises it."""
    return chromium(["--dump-dom", real_report.as_uri()], tmp_path_factory.mktemp("profile"))


def test_real_report_shows_the_run(real_report):
    html = real_report.read_text(encoding="utf-8")
    rows = [t for t in tables(html) if t["heading"] == "digits · latent dim 256"][0]["rows"]
    assert rows[0] == ["Encoder", "Latent", "Budget", "n", "Linear, online acc. %", "Linear, offline acc. %",
                       "k-means acc. %", "k-means NMI", "k-means ARI"]
    assert [r[:4] for r in rows[1:]] == [["baseline", "map", "256 (2⁸)", "1"],
                                         ["pixels", "pixels (1024-d)", "fitted", "1"]]
    assert rows[2][4] == "–"  # no online classifier for a reference encoder
    assert html.count('alt="reconstructions of ') == 2
    assert html.count('<details class="run"') == 2


def test_page_loads_without_errors(dom):
    head = dom[:dom.index("<head>")]
    assert 'data-checked="1"' in head
    assert "data-errors" not in head
    tag = html_tag(dom)
    assert re.search(r'\sdata-checked="1"', tag), tag
    assert "data-errors" not in tag, tag


def test_score_table_lists_the_encoders_with_numbers(dom):
    found = [t for t in tables(dom) if t["heading"] == TABLE]
    assert len(found) == 1, [t["heading"] for t in tables(dom)]
    header, *rows = found[0]["rows"]
    metrics = sum(len(TASKS[task].metrics) for task in RUN_TASKS)  # one column per declared metric
    assert header[:4] == ["Encoder", "Latent", "Budget", "n"] and len(header) == 4 + metrics
    assert [row[0] for row in rows] == list(ENCODERS)
    for row, classes in zip(rows, found[0]["classes"][1:]):
        assert len(row) == len(header), row
        assert row[3] == "1", row  # one seed
        for cell, cls in zip(row[4:], classes[4:]):
            if "none" in cls.split():  # no score: only a reference encoder's online accuracy
                assert row[0] == "pixels" and cell == "–", (row, cell)
                continue
            assert NUMBER.match(cell), (row[0], cell)
            assert np.isfinite(float(re.match(r"-?[\d.]+", cell).group())), (row[0], cell)
    baseline, pixels = rows
    assert all(NUMBER.match(cell) for cell in baseline[4:]), baseline  # a learned family: every column
    assert sum(bool(NUMBER.match(cell)) for cell in pixels[4:]) == metrics - 1, pixels


def test_every_image_is_in_the_dom_and_decodes(dom, real_report):
    """The recorder (no data-errors above) checked ``complete`` and ``naturalWidth`` of every
    image in the browser; here: all the page's images reached the DOM, each a PNG data URI
    of non-zero size, and every run has its preview strips."""
    from PIL import Image

    images = re.findall(r"<img\b[^>]*>", dom)
    assert len(images) == len(re.findall(r"<img\b", real_report.read_text(encoding="utf-8")))
    assert len(images) >= 2 * len(ENCODERS)  # reconstructions and interpolations per run
    alts = []
    for tag in images:
        src = re.search(r'\ssrc="data:image/png;base64,([^"]+)"', tag)
        assert src, tag[:200]
        with Image.open(io.BytesIO(base64.b64decode(src.group(1)))) as picture:
            picture.load()
            assert picture.width > 0 and picture.height > 0, tag[:200]
        alt = re.search(r'\salt="([^"]+)"', tag)
        assert alt, tag[:200]
        alts.append(alt.group(1))
    for encoder in ENCODERS:
        assert any(a.startswith(f"reconstructions of {encoder}") for a in alts), alts
        assert any(a.startswith(f"interpolations of {encoder}") for a in alts), alts
    assert "data-errors" not in html_tag(dom)  # none of them failed to decode in the browser


def test_provenance_lists_every_run(dom, run_ids):
    section = dom[dom.index('<section id="provenance">'):]
    section = section[:section.index("</section>")]
    entries = re.findall(r'<details class="run" id="[^"]*">\s*<summary>(.*?)</summary>', section, re.S)
    listed = [re.search(r'<code class="muted">([^<]+)</code>', entry).group(1) for entry in entries]
    assert sorted(listed) == sorted(run_ids)
    for run_id in run_ids:
        assert section.count(run_id) >= 2  # the summary and the recorded spec/provenance


def test_screenshot_is_not_blank(real_report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    chromium([f"--screenshot={shot}", "--window-size=1200,2000", "--hide-scrollbars", real_report.as_uri()],
             tmp_path / "profile")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1200)
    assert pixels.var() > 0
    assert len(np.unique(pixels)) > 16  # text, tables and figures, not a flat fill


def test_error_recorder_reports_blocked_loads_and_scripts(tmp_path):
    """The check above is not vacuous: an external image and an injected script are caught."""
    page = build_report(tmp_path / "empty", tmp_path / "page.html").read_text(encoding="utf-8")
    hostile = page.replace("</body>", '<img src="http://127.0.0.1:9/x.png" alt="outside">'
                                      '<script>document.title = "ran"</script></body>')
    (tmp_path / "hostile.html").write_text(hostile, encoding="utf-8")
    dom = chromium(["--dump-dom", (tmp_path / "hostile.html").as_uri()], tmp_path / "profile")
    head = dom[:dom.index("<head>")]
    assert "blocked: http://127.0.0.1:9/x.png" in head
    assert "image did not decode: outside" in head
    assert "blocked: inline" in head
    assert "<title>ran</title>" not in dom


@pytest.fixture(scope="module")
def seeded_report(tmp_path_factory) -> Path:
    """Two learned families and the pixels floor on digits, 3 training seeds × 3 probe seeds
    (small budget and restart count, so that it stays a test)."""
    work = tmp_path_factory.mktemp("seeded")
    args = ["run", "--encoder", "baseline", "--encoder", "dropout", "--encoder", "pixels", "--task", "linear",
            "--task", "kmeans", "--task", "label_efficiency", "--dataset", "digits", "--budget", "256",
            "--seed", "0", "--seed", "1", "--seed", "2", "--probe-seeds", "3", "--set", "kmeans.restarts=20",
            "--set", "label_efficiency.sizes=1,8,all", "--threads", "1", "--workdir", str(work)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return build_report(work, work / "report.html")


@pytest.mark.slow
def test_seeded_report_shows_intervals_matrix_and_curves(seeded_report, tmp_path):
    from PIL import Image

    html = seeded_report.read_text(encoding="utf-8")
    rows = [t for t in tables(html) if t["heading"] == "digits · latent dim 256"][0]["rows"]
    assert [r[:4] for r in rows[1:]] == [["baseline", "map", "256 (2⁸)", "3"], ["dropout", "map", "256 (2⁸)", "3"],
                                         ["pixels", "pixels (1024-d)", "fitted", "3"]]
    kmeans = rows[0].index("k-means acc. %")
    assert all(re.search(r"\[[−\d.]+, [−\d.]+\](≈ chance)?$", r[kmeans]) for r in rows[1:])  # a 95 % interval each
    assert "Up to 3 probe seeds per model" in html
    matrix = [t for t in tables(html) if t["heading"].startswith("Pairwise differences")]
    assert matrix and matrix[0]["rows"][0] == ["", "baseline", "dropout", "pixels (1024-d)"]
    assert 'alt="label efficiency on digits, latent 256"' in html and 'alt="t-SNE maps on digits' in html
    dom = chromium(["--dump-dom", seeded_report.as_uri()], tmp_path / "profile")
    head = dom[:dom.index("<head>")]
    assert 'data-checked="1"' in head and "data-errors" not in head  # every image decoded
    shot = tmp_path / "seeded.png"
    chromium([f"--screenshot={shot}", "--window-size=1240,2400", "--hide-scrollbars", seeded_report.as_uri()],
             tmp_path / "profile")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    # the label-efficiency curves and the bars are drawn in tab10's first two colours (baseline, dropout)
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(pixels - colour).sum(axis=2) < 40).sum() > 200, colour
