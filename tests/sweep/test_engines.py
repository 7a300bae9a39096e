"""The cluster launchers on their real engines: a local Ray, submitit's local executor and a
real single-node SLURM (started by .ci/slurm-localhost). Each runs the reference grid and
must store exactly the reference's scores."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import sweep_helpers as h

pytestmark = pytest.mark.slow


def test_ray_runs_the_grid_on_a_local_cluster(reference, sweep_cache, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'repeval[ray]')")
    work = tmp_path / "work"
    out = h.run_sweep(work, sweep_cache, "--launcher", "ray", "--jobs", "2")  # a local Ray with 2 CPUs
    assert "ray: tasks on a local Ray" in out and "on Ray task" in out
    assert h.score_rows(work) == reference[1]


def test_submitit_local_executor_covers_the_slurm_path(reference, sweep_cache, tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'repeval[slurm]')")
    work = tmp_path / "work"
    out = h.run_sweep(work, sweep_cache, "--launcher", "slurm", "--slurm-executor", "local", "--timeout-min", "30")
    assert "submitit's local executor" in out and "on submitit local job" in out
    assert h.score_rows(work) == reference[1]
    assert list((work / "sweeps").glob("*/submitit/*"))  # submitit's own job folders


def _slurm_unavailable() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client on PATH (.ci/slurm-localhost up installs and starts one)"
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    states = state.stdout.split()
    if state.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states):
        return f"no SLURM node is up (sinfo: {(state.stdout + state.stderr).strip() or 'no nodes'})"
    return None


def test_slurm_runs_a_two_job_array(reference, sweep_cache, tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'repeval[slurm]')")
    why = _slurm_unavailable()
    if why:
        print(f"SLURM test skipped: {why}")
        pytest.skip(why)
    work = tmp_path / "work"
    out = h.run_sweep(work, sweep_cache, "--launcher", "slurm", "--jobs", "2", "--cpus-per-job", "1",
                      "--mem-gb", "2", "--timeout-min", "20")
    assert "slurm: job array on SLURM, at most 2 at once" in out
    ids = sorted(p.name for p in (work / "sweeps").glob("*/submitit/*") if re.fullmatch(r"\d+_\d+", p.name))
    assert len(ids) == 2 and {i.split("_")[1] for i in ids} == {"0", "1"}, ids  # one array, tasks 0 and 1
    assert h.score_rows(work) == reference[1]
