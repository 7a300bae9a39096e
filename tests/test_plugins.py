"""Plugins from outside repeval: a real distribution (tests/plugins/repeval-demo-plugin) is
pip-installed into a temporary folder, and repeval's command line, in a fresh process,
finds its family, probe and dataset through entry points, with no edit to repeval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).resolve().parent / "plugins" / "repeval-demo-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The demo plugin installed (pip, no network) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "--target", str(target), str(PLUGIN)], check=True, capture_output=True, text=True)
    assert (target / "repeval_demo_plugin" / "family.py").is_file()
    return target


def env_with(*paths: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REPEVAL_PLUGINS", "PYTHONPATH")}
    env.update(PYTHONPATH=os.pathsep.join(map(str, paths)), OMP_NUM_THREADS="1", **extra)
    return env


def cli_session(env: dict[str, str], commands: list[list[str]]) -> list[dict]:
    """Run several ``repeval`` commands in one fresh process (imports paid once): exit code,
    stdout and stderr of each."""
    driver = textwrap.dedent("""
        import json, sys
        from click.testing import CliRunner
        from repeval.cli import main
        out = []
        for args in json.loads(sys.argv[1]):
            r = CliRunner().invoke(main, args)
            out.append({"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                        "exception": None if r.exception is None or isinstance(r.exception, SystemExit)
                        else repr(r.exception)})
        print("\\n@@" + json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", driver, json.dumps(commands)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.rpartition("\n@@")[2])


def test_a_plugin_family_probe_and_dataset_work_through_the_cli(site, tmp_path):
    work = str(tmp_path / "work")
    base = str(tmp_path / "baseline.json")
    common = ["--workdir", work]
    encoders, tasks, datasets, run, results, report, write, check = cli_session(env_with(site), [
        ["encoders", "--dataset", "digits", "--json"],
        ["tasks", "--json"],
        ["datasets", "--json"],
        ["run", "--encoder", "mlpae", "--encoder", "pixels", "--task", "knn", "--task", "centroid",
         "--dataset", "digits", "--budget", "128", "--device", "cpu", "--json", *common],
        ["results", "--format", "json", *common],
        ["report", "--out", str(tmp_path / "report.html"), *common],
        ["check", "--write-baseline", base, *common],
        ["check", "--baseline", base, *common],
    ])
    for step in (encoders, tasks, datasets, run, results, report, write, check):
        assert step["code"] == 0 and step["exception"] is None, step
    families = {r["name"]: r for r in json.loads(encoders["stdout"])}
    assert families["mlpae"]["source"].startswith("plugin repeval-demo-plugin (entry point mlpae")
    assert families["acai"]["source"] == "built-in"
    assert families["mlpae"]["parameters"] == {"encoder": 1024 * 64 + 64 + 64 * 16 + 16,
                                               "decoder": 16 * 64 + 64 + 64 * 1024 + 1024}
    probes = {r["name"]: r for r in json.loads(tasks["stdout"])}
    assert probes["centroid"]["source"].startswith("plugin repeval-demo-plugin")
    assert probes["centroid"]["metrics"][0]["tolerance"] == {"abs": 0.01, "rel": 0.0}
    assert {r["name"]: r["available"] for r in json.loads(datasets["stdout"])}["blobs"] is True

    stored = json.loads(results["stdout"])
    scores = {(r["encoder"], r["task"], r["metric"]) for r in stored}
    assert {("mlpae", "knn", "accuracy"), ("mlpae", "centroid", "accuracy"),
            ("pixels", "centroid", "accuracy")} <= scores
    assert all(0.0 <= r["value"] <= 1.0 for r in stored)
    html = (tmp_path / "report.html").read_text()
    assert "mlpae" in html and "Centroid" in html

    baseline = json.loads(Path(base).read_text())
    # two tasks declare different tolerances for a metric called "accuracy": each keeps its own
    assert baseline["tolerances"] == {"centroid.accuracy": {"abs": 0.01, "rel": 0.0},
                                      "knn.accuracy": {"abs": 0.005, "rel": 0.0}}
    assert {r["encoder"] for r in baseline["rows"]} == {"mlpae", "pixels"}
    assert check["stdout"].rstrip().endswith(f"PASS: 0 regressions, 0 missing, 0 improvements, {len(stored)} "
                                             "unchanged, 0 extra")


def test_a_plain_module_in_repeval_plugins_registers_an_encoder(tmp_path):
    (tmp_path / "my_family.py").write_text(textwrap.dedent("""
        import encoders
        from encoders.baseline import Baseline

        @encoders.register
        class Wide(Baseline):
            name = "wide"
            summary = "the baseline, registered from a plain module"
    """))
    (listing,) = cli_session(env_with(tmp_path, REPEVAL_PLUGINS="my_family"), [["encoders", "--json"]])
    rows = {r["name"]: r for r in json.loads(listing["stdout"])}
    assert rows["wide"]["source"] == "plugin module my_family (REPEVAL_PLUGINS)"
    assert rows["wide"]["parameters"] == rows["baseline"]["parameters"]


def test_a_broken_plugin_is_one_paragraph_and_the_built_ins_still_work(tmp_path, site):
    (tmp_path / "broken_plugin.py").write_text("raise ZeroDivisionError('division by zero in the plugin')\n")
    env = env_with(site, tmp_path, REPEVAL_PLUGINS="broken_plugin, not_installed_anywhere")
    tasks, run = cli_session(env, [
        ["tasks", "--json"],
        ["run", "--encoder", "nope", "--task", "knn", "--dataset", "digits", "--workdir", str(tmp_path / "w")],
    ])
    assert tasks["code"] == 0 and {"linear", "kmeans", "knn", "centroid"} <= {r["name"] for r in
                                                                           json.loads(tasks["stdout"])}
    lines = [line for line in tasks["stderr"].splitlines() if line.strip()]
    assert lines == [
        "repeval: plugin module broken_plugin (REPEVAL_PLUGINS) failed to load and is skipped (ZeroDivisionError: "
        "division by zero in the plugin). The built-in entries work without it; fix the module, or remove it from "
        "REPEVAL_PLUGINS (it holds 'broken_plugin, not_installed_anywhere').",
        "repeval: plugin module not_installed_anywhere (REPEVAL_PLUGINS) failed to load and is skipped "
        "(ModuleNotFoundError: No module named 'not_installed_anywhere'). The built-in entries work without it; "
        "fix the module, or remove it from REPEVAL_PLUGINS (it holds 'broken_plugin, not_installed_anywhere').",
    ]
    assert "Traceback" not in tasks["stderr"] + run["stderr"]
    assert run["code"] == 2
    assert "Unknown encoder 'nope'. Known encoders: baseline, dropout" in run["stderr"]
    assert "mlpae" in run["stderr"] and "Plugin(s) that failed to load: plugin module broken_plugin" in run["stderr"]
