"""Sweep grids: the product of the command line's options, TOML files, presets; bad input."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import encoders
from repeval.cli import main
from repeval.errors import UserError
from repeval.sweep import presets
from repeval.sweep.grid import Group, cells, load_grid_file
from repeval.sweep.jobs import build_jobs


def sweep_cli(tmp_path, *args, expect=0):
    result = CliRunner().invoke(main, ["sweep", *args, "--workdir", str(tmp_path / "work")],
                                catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.output


def test_options_multiply_and_a_repeated_key_is_an_axis():
    g = Group(axes={"encoder": ["acai", "vae"], "dataset": ["digits"], "seed": [0, 1, 2]}, tasks=["knn"],
              settings={"knn.k": [5, 20]})
    got = cells([g])
    assert len(got) == 2 * 3 * 2
    points = {(c.encoder, c.seed, c.settings) for c in got}
    assert points >= {("acai", 0, (("knn.k", 5),)), ("vae", 2, (("knn.k", 20),))}
    jobs = build_jobs(got, "cpu")
    assert len(jobs) == 6  # the two k values probe the same run: one job, two invocations
    assert all(len(j.invocations) == 2 for j in jobs)


def test_cells_of_the_same_run_merge_their_tasks():
    a = Group(axes={"encoder": ["pixels"], "dataset": ["digits"]}, tasks=["knn"], origin="a")
    b = Group(axes={"encoder": ["pixels"], "dataset": ["digits"]}, tasks=["linear", "knn"], origin="b")
    [job] = build_jobs(cells([a, b]), "cpu")
    assert job.tasks == ["knn", "linear"] and len(job.invocations) == 1


def test_all_learned_reads_the_registry():
    jobs = build_jobs(cells([Group(axes={"encoder": ["all-learned"], "dataset": ["digits"], "budget": [128]},
                                   tasks=["knn"])]), "cpu")
    assert [j.spec["encoder"] for j in jobs] == [n for n, f in encoders.REGISTRY.items() if f.learned]


def test_grid_file_lists_cells_and_inheritance(tmp_path):
    f = tmp_path / "grid.toml"
    f.write_text("""
encoder = ["baseline", "acai"]
dataset = "digits"
seed = [0, 1]
budget = 128
task = ["knn"]
[set]
knn.k = 10

[[cell]]
encoder = "pca"
latent_dim = 16
task = ["linear"]
""")
    groups = load_grid_file(f)
    assert len(groups) == 2
    got = cells(groups)
    assert len(got) == 2 * 2 + 2  # the cell inherits dataset, seeds and budget
    pca = [c for c in got if c.encoder == "pca"]
    assert {c.seed for c in pca} == {0, 1} and all(c.dataset == "digits" and c.latent_dim == 16 for c in pca)
    assert all(c.settings == (("knn.k", 10),) for c in got)
    jobs = build_jobs(got, "cpu")
    assert {j.spec["budget"] for j in jobs if j.spec["encoder"] == "pca"} == {0}  # reference: not trained
    pca = [j for j in jobs if j.spec["encoder"] == "pca"]
    assert all(inv.settings == () for j in pca for inv in j.invocations)  # knn.k applies where knn runs
    assert all(inv.settings == (("knn.k", 10),) for j in jobs if j not in pca for inv in j.invocations)
    with pytest.raises(UserError, match="no cell of the sweep runs the task 'knn'"):
        build_jobs([c for c in got if c.encoder == "pca"], "cpu")


@pytest.mark.parametrize("text, message", [
    ('encoder = "acai"\ntask = "knn"\nepochs = 3\n', "unknown key(s) 'epochs'"),
    ('encoder = "acai"\ntask = "knn"\nseed = "zero"\n', "`seed` must be an integer"),
    ('encoder = "acai"\ntask = "knn"\nseed = true\n', "`seed` must be an integer"),
    ('encoder = "acai"\ntask = "knn"\nlatent_dim = []\n', "empty list"),
    ('encoder = "acai"\ntask = "knn"\nhparam = 3\n', "`hparam` must be a table"),
    ('encoder = "acai"\ntask = "knn"\n[set]\nknn.k = {a = 1}\n', "`set.knn.k` must be a number"),
    ('seed = [0]\n', "is empty"),
    ('encoder = [\n', "not valid TOML"),
    ('[[cell]]\nencoder = "acai"\nbogus = 1\n', "[[cell]] 1: unknown key(s) 'bogus'"),
])
def test_bad_grid_files_are_one_paragraph(tmp_path, text, message):
    f = tmp_path / "grid.toml"
    f.write_text(text)
    out = sweep_cli(tmp_path, "--grid", str(f), "--dry-run", expect=2)
    assert message in out and "Traceback" not in out and out.startswith("Error: ")
    assert not (tmp_path / "work" / "checkpoints").exists()  # nothing launched


@pytest.mark.parametrize("args, message", [
    (("--preset", "paper-table9"), "Unknown preset 'paper-table9'. Known presets: paper-table1, paper-table2"),
    (("--dataset", "digits"), "names no encoder"),
    (("--encoder", "acai", "--dataset", "digits"), "names no task"),
    (("--encoder", "acai", "--dataset", "digits", "--task", "knn", "--jobs", "0"), "--jobs 0: give at least 1"),
    (("--encoder", "nope", "--task", "knn"), "Unknown encoder 'nope'"),
    (("--encoder", "acai", "--dataset", "digits", "--task", "knn", "--latent-dim", "7"), "not a legal size"),
    (("--encoder", "acai", "--dataset", "digits", "--task", "knn", "--latent", "sample"), "has a latent 'sample'"),
    (("--encoder", "acai", "--dataset", "digits", "--task", "knn", "--hparam", "keep_prob=0.5"),
     "hyper-parameter 'keep_prob'"),
    (("--encoder", "acai", "--dataset", "digits", "--task", "knn", "--launcher", "kubernetes"),
     "Unknown launcher 'kubernetes'. Known launchers: local, slurm, ray"),
    (("--encoder", "acai", "--dataset", "digits", "--task", "knn", "--jobs-per-gpu", "2", "--device", "cpu"),
     "--jobs-per-gpu applies to GPUs"),
])
def test_bad_sweep_options_are_one_paragraph(tmp_path, args, message):
    out = sweep_cli(tmp_path, *args, expect=2)
    assert message in out and "Traceback" not in out
    assert not (tmp_path / "work" / "checkpoints").exists()


def test_a_launcher_whose_extra_is_missing_names_the_pip_command(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "submitit", None)
    base = ("--encoder", "pixels", "--dataset", "digits", "--task", "knn", "--dry-run")
    out = sweep_cli(tmp_path, *base, "--launcher", "ray", expect=2)
    assert "pip install 'repeval[ray]'" in out and "nothing was launched" in out
    out = sweep_cli(tmp_path, *base, "--launcher", "slurm", expect=2)
    assert "pip install 'repeval[slurm]'" in out


def test_a_slurm_option_submitit_rejects_is_a_user_error(tmp_path):
    pytest.importorskip("submitit")
    out = sweep_cli(tmp_path, "--encoder", "pixels", "--dataset", "digits", "--task", "knn", "--dry-run",
                    "--launcher", "slurm", "--slurm-executor", "local", "--slurm-param", "account=x", expect=2)
    assert "apply to SLURM" in out
    import shutil
    if shutil.which("sbatch"):
        out = sweep_cli(tmp_path, "--encoder", "pixels", "--dataset", "digits", "--task", "knn", "--dry-run",
                        "--launcher", "slurm", "--slurm-param", "no_such_option=1", expect=2)
        assert "submitit rejects the SLURM options" in out and "no_such_option" in out


def test_presets_cover_the_paper_grid_and_are_documented():
    from pathlib import Path

    learned = [n for n, f in encoders.REGISTRY.items() if f.learned]
    jobs = build_jobs(cells(presets.PRESETS.get("paper").build()), "cuda")
    assert len(jobs) == len(learned) * 7 * 3  # (MNIST, SVHN) x (32, 256), CIFAR-10 x (256, 1024), lines; 3 seeds
    lines = {j.spec["encoder"]: j.spec["latent_dim"] for j in jobs if j.spec["dataset"] == "lines"}
    assert set(lines.values()) == {64, 256}  # VQ-VAE's paper size comes from its family
    assert {j.spec["budget"] for j in jobs} == {2 ** 24}
    mnist32 = next(j for j in jobs if j.spec["dataset"] == "mnist" and j.spec["latent_dim"] == 32)
    assert mnist32.tasks == ["linear", "kmeans"]
    vae = next(j for j in jobs if j.spec["encoder"] == "vae" and j.spec["dataset"] == "mnist")
    assert {inv.latent for inv in vae.invocations} == {"mean", "sample"}  # Table 3 clustered samples
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for name, preset in presets.PRESETS.items():
        assert f"`{name}`" in doc, f"preset {name} is not described in docs/protocol.md"
        assert cells(preset.build())


def test_options_beside_a_preset_replace_its_keys(tmp_path):
    out = sweep_cli(tmp_path, "--preset", "paper-table2", "--encoder", "acai", "--seed", "0", "--dataset", "digits",
                    "--budget", "128", "--dry-run")
    # three groups of the preset, each now digits: latent 32/256 twice, 256/1024 once -> 3 distinct runs
    assert "Totals: 0 done, 0 incomplete, 3 to run" in out
    assert "acai-digits-32-b128-s0" in out and "acai-digits-1024-b128-s0" in out


def test_the_readme_grid_example_is_a_valid_grid(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [example] = re.findall(r"```toml\n(encoder = .*?)```", readme, flags=re.S)
    f = tmp_path / "grid.toml"
    f.write_text(example)
    jobs = build_jobs(cells(load_grid_file(f)), "cpu")
    lines = {j.spec["encoder"]: j.spec["latent_dim"] for j in jobs if j.spec["dataset"] == "lines"}
    assert lines == {"acai": 64, "vqvae": 256}
    assert len(jobs) == 2 * 2 * 3 + 2 * 3


def test_checkpoint_every_help_states_the_trainers_default(tmp_path):
    from repeval.train import CHECKPOINT_EVERY_S

    for command in ("train", "run", "sweep"):
        out = CliRunner().invoke(main, [command, "--help"]).output
        assert f"default {CHECKPOINT_EVERY_S:g} s" in " ".join(out.split()), command


def test_local_launcher_gives_each_job_one_gpu(tmp_path, monkeypatch):
    """On a GPU machine, one slot per visible device (or --jobs-per-gpu per device), each job's
    CUDA_VISIBLE_DEVICES naming one. (The GPU check runs this for real; here the devices and
    the process start are stand-ins, since this machine has no GPU.)"""
    import subprocess

    from repeval import devices
    from repeval.sweep import launch_local
    from repeval.sweep.registry import LaunchOptions

    monkeypatch.setattr(devices, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(launch_local, "visible_gpus", lambda: ["2", "5"])
    started = []

    class FakeProcess:
        pid = 4242

        def __init__(self, argv, env, **kwargs):
            started.append(env)

        def poll(self):
            return None

    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    options = LaunchOptions(workdir=tmp_path, sweep_dir=tmp_path / "sweep", jobs_per_gpu=2)
    session = launch_local.LocalSession(options)
    assert (session.device, session.capacity, session.slots) == ("cuda", 4, ["2", "2", "5", "5"])
    payload = {"job": {"run_id": "r"}, "options": {"workdir": str(tmp_path)}}
    session.start([payload] * 4)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in started] == ["2", "2", "5", "5"]
    with pytest.raises(RuntimeError, match="no free slot"):
        session.start([payload])
