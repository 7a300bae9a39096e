"""The GPU check dry-runs on the CPU (tiny sizes): its packed-training parts run end to end,
so the script a lent GPU gets has been exercised before it gets there."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_the_packed_profile_dry_runs_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("gpu_check_dry_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check_dry_run", module)
    spec.loader.exec_module(module)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(module.tempfile, "tempdir", str(scratch))  # where the check's work directory goes
    results = module.main(["--device", "cpu", "--dataset", "digits", "--out", str(tmp_path), "--deadline", "400",
                           "--only", "packed_correctness,packed_throughput,grid_projection"])
    parts = results["parts"]
    assert {name: part["status"] for name, part in parts.items()} == {
        "packed_correctness": "ok", "packed_throughput": "ok", "grid_projection": "ok"}
    assert parts["grid_projection"]["runs"] == 147 and parts["grid_projection"]["projected_device_hours"] > 0
    assert parts["packed_throughput"]["acai"]["2"]["images_per_s"] > 0
    assert set(parts["packed_correctness"]["baseline"]) >= {"seed_0", "seed_1", "pass"}
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["parts"].keys() == parts.keys()
    assert "| packed_throughput | ok |" in (tmp_path / "gpu_check.md").read_text()
    # its checkpoints and runs (hundreds of MiB) do not outlive it (torch's own caches may stay)
    assert [p.name for p in scratch.iterdir() if p.name.startswith("repeval-gpu-check-")] == []
