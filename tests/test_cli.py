"""The command line end to end on the offline `digits` dataset (tiny budgets)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from repeval.cli import main


@pytest.fixture
def cli(tmp_path):
    runner = CliRunner()

    def invoke(*args, expect=0):
        result = runner.invoke(main, [*args], env={"REPEVAL_HOME": str(tmp_path / "work")}, catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    return invoke


def test_version_and_help(cli):
    assert "repeval, version" in cli("--version").output
    assert "repeval run --encoder acai --task kmeans" in cli("--help").output


def test_datasets_json_lists_every_dataset_with_sizes(cli):
    rows = {r["name"]: r for r in json.loads(cli("datasets", "--json").stdout)}
    assert set(rows) == {"mnist", "svhn", "svhn-extra", "cifar10", "lines", "shepard", "clock", "digits"}
    assert rows["shepard"]["example"] == "1×1024 signals" and rows["mnist"]["example"] == "1×32×32 images"
    assert rows["clock"]["example"] == "64 tokens over 22 symbols"
    assert [name for name, r in rows.items() if r["interpolation"]] == ["lines", "shepard", "clock"]
    assert (rows["digits"]["available"], rows["digits"]["train"], rows["digits"]["test"]) == (True, 1257, 540)
    assert rows["mnist"]["train"] == 60000 and rows["cifar10"]["channels"] == 3


def test_encoders_json_has_the_paper_parameter_counts(cli):
    rows = {r["name"]: r for r in json.loads(cli("encoders", "--json").stdout)}  # mnist, latent 256
    assert rows["acai"]["parameters"] == {"encoder": 166288, "decoder": 83329, "critic": 166288}
    assert rows["baseline"]["parameters"] == {"encoder": 166288, "decoder": 83329}
    assert rows["vae"]["latents"].keys() == {"mean", "sample"}
    cifar = {r["name"]: r for r in json.loads(cli("encoders", "--dataset", "cifar10", "--latent-dim", "1024",
                                                   "--json").stdout)}
    assert cifar["acai"]["parameters"]["encoder"] == 2655936


def test_user_errors_are_one_paragraph_without_traceback(cli):
    out = cli("run", "--encoder", "acai", "--task", "kmeans", "--dataset", "digits", "--latent-dim", "100",
              expect=2).output
    assert out.startswith("Error: --latent-dim 100 is not a legal size") and "Traceback" not in out
    out = cli("run", "--encoder", "acai", "--task", "interpolation", "--dataset", "digits", expect=2).output
    assert "needs --dataset lines" in out
    out = cli("run", "--encoder", "acai", "--task", "kmeans", "--dataset", "nope", expect=2).output
    assert "Unknown dataset 'nope'" in out
    out = cli("run", "--encoder", "pca", "--task", "kmeans", "--dataset", "digits", "--set", "kmeans.restart=5",
              expect=2).output
    assert "restart" in out and "Traceback" not in out
    out = cli("run", "--encoder", "acai", "--encoder", "pixels", "--task", "knn", "--dataset", "digits",
              "--latent", "sample", expect=2).output
    assert "No chosen encoder has a latent 'sample' (acai: map; pixels: pixels)" in out


@pytest.mark.slow
def test_run_trains_probes_stores_and_reuses(cli, tmp_path):
    args = ("run", "--encoder", "baseline", "--encoder", "pixels", "--task", "all", "--dataset", "digits",
            "--budget", "256", "--set", "kmeans.restarts=2", "--json")
    rows = json.loads(cli(*args).stdout)
    got = {(r["encoder"], r["task"], r["metric"]) for r in rows}
    curve = [("label_efficiency", f"{probe}@{size}") for probe in ("linear", "knn")
             for size in (1, 4, 16, 64, 256, "all")]
    assert got == {("baseline", t, m) for t, m in [("linear", "accuracy"), ("linear", "accuracy_online"),
                                                    ("kmeans", "accuracy"), ("kmeans", "nmi"), ("kmeans", "ari"),
                                                    ("knn", "accuracy"), *curve]} | \
                  {("pixels", t, m) for t, m in [("linear", "accuracy"), ("kmeans", "accuracy"), ("kmeans", "nmi"),
                                                  ("kmeans", "ari"), ("knn", "accuracy"), *curve]}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if r["metric"] != "ari")
    kmeans = next(r for r in rows if r["task"] == "kmeans" and r["encoder"] == "baseline")
    assert kmeans["settings"]["restarts"] == 2 and kmeans["budget"] == 256 and kmeans["latent_dim"] == 256
    stored = json.loads(cli("results", "--format", "json").stdout)
    assert sorted((r["encoder"], r["metric"], r["value"]) for r in stored) == \
        sorted((r["encoder"], r["metric"], r["value"]) for r in rows)
    # the second identical run reuses the checkpoint and the cached latents: same numbers
    again = json.loads(cli(*args).stdout)
    assert sorted((r["encoder"], r["metric"], r["value"]) for r in again) == \
        sorted((r["encoder"], r["metric"], r["value"]) for r in rows)
    assert len(json.loads(cli("results", "--format", "json").stdout)) == len(rows)  # upserted, not duplicated


def test_several_seeds_show_mean_and_std(cli):
    out = cli("run", "--encoder", "pca", "--task", "knn", "--dataset", "digits", "--latent-dim", "16",
              "--seed", "0", "--seed", "1").output
    line = next(row for row in out.splitlines() if row.startswith("digits") and "knn" in row)
    # dataset encoder latent latent_dim budget task metric mean std ci95 n settings: one row for both seeds
    dataset, encoder, latent, dim, budget, task, metric, mean, std, ci, kind, n, settings = line.split()
    assert (encoder, dim, task, n) == ("pca", "16", "knn", "2") and std == "0.0000"
    assert ci == f"{mean}-{mean}" and kind == "t"  # a 95 % t interval over the seeds: no spread here


@pytest.mark.slow
def test_train_prints_checkpoint_last_and_extract_writes_npz(cli, tmp_path):
    out = cli("train", "--encoder", "baseline", "--dataset", "digits", "--budget", "128").output
    path = out.strip().splitlines()[-1]
    assert path.endswith("-b128-s0-" + path.rsplit("-", 1)[1]) and "checkpoints" in path
    target = tmp_path / "z.npz"
    cli("extract", "--encoder", "baseline", "--dataset", "digits", "--budget", "128", "--out", str(target))
    with np.load(target) as z:
        assert z["z_train"].shape == (1257, 256) and z["z_test"].shape == (540, 256)
        assert json.loads(str(z["meta"]))["spec"]["budget"] == 128


def test_check_passes_then_fails_on_a_moved_value(cli, tmp_path):
    cli("run", "--encoder", "pca", "--task", "knn", "--dataset", "digits", "--latent-dim", "16")
    baseline = tmp_path / "baseline.json"
    cli("check", "--write-baseline", str(baseline))
    assert cli("check", "--baseline", str(baseline)).output.splitlines()[-1].startswith("PASS")
    data = json.loads(baseline.read_text())
    data["rows"][0]["value"] += 0.05  # the stored score is now 5 points below the baseline
    baseline.write_text(json.dumps(data))
    out = cli("check", "--baseline", str(baseline), expect=1).output
    assert "regression" in out and "knn" in out
    assert "Error" in cli("check", expect=2).output


def test_threads_option_sets_torch_threads_and_is_recorded(cli, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        cli("run", "--encoder", "pca", "--task", "knn", "--dataset", "digits", "--latent-dim", "8", "--threads", "1")
        assert torch.get_num_threads() == 1
        rows = json.loads(cli("results", "--format", "json").stdout)
        assert rows and rows[0]["run_id"].startswith("pca-digits-8-")
        run_dir = next((tmp_path / "work" / "checkpoints").iterdir())
        provenance = json.loads(run_dir.joinpath("provenance.json").read_text())
        assert "1 threads" in provenance["device"]
    finally:
        torch.set_num_threads(before)
    assert "Error" in cli("run", "--encoder", "pca", "--task", "knn", "--threads", "0", expect=2).output


def test_compute_commands_tune_glibcs_allocator_unless_told_not_to(monkeypatch):
    import platform

    from repeval.cli import _tune_allocator

    for name in ("REPEVAL_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert _tune_allocator() is True  # mallopt accepted both thresholds
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")  # the user's own glibc setting wins
    assert _tune_allocator() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("REPEVAL_MALLOC_TUNING", "0")
    assert _tune_allocator() is False


@pytest.mark.slow
def test_along_training_probes_each_snapshot_as_its_own_run(cli):
    rows = json.loads(cli("run", "--encoder", "baseline", "--task", "knn", "--dataset", "digits", "--budget", "256",
                          "--snapshots", "128", "--along-training", "--json").stdout)
    assert sorted(r["budget"] for r in rows) == [128, 256]
    # the snapshot is the 128-image run: asking for it trains nothing and gives the same score
    again = json.loads(cli("run", "--encoder", "baseline", "--task", "knn", "--dataset", "digits", "--budget", "128",
                           "--json").stdout)
    assert [r["value"] for r in again] == [r["value"] for r in rows if r["budget"] == 128]


@pytest.mark.parametrize("args, message", [
    (("--snapshots", "100"), "--snapshots 100: a snapshot must be a positive multiple of the batch (64 images) "
                             "below the budget (256)"),
    (("--snapshots", "64,abc"), "--snapshots '64,abc': 'abc' is not a whole number of images"),
    (("--snapshots", "512"), "--snapshots 512: a snapshot must be a positive multiple"),
    (("--no-snapshots", "--along-training"), "--along-training probes a run's snapshots; --no-snapshots leaves none"),
    (("--no-snapshots", "--snapshots", "128"), "--snapshots and --no-snapshots contradict each other"),
])
def test_bad_snapshot_options_are_one_paragraph(cli, args, message):
    out = cli("run", "--encoder", "baseline", "--task", "knn", "--dataset", "digits", "--budget", "256", *args,
              expect=2).output
    assert message in out and "Traceback" not in out and out.count("\n") == 1


@pytest.mark.slow
def test_pack_trains_the_seeds_together_into_ordinary_runs(cli, tmp_path):
    rows = json.loads(cli("run", "--encoder", "baseline", "--task", "knn", "--dataset", "digits", "--budget", "128",
                          "--seed", "0", "--seed", "1", "--pack", "--json").stdout)
    assert sorted(r["seed"] for r in rows) == [0, 1]
    run_ids = sorted(r["run_id"] for r in rows)
    for run_id in run_ids:
        manifest = json.loads((tmp_path / "work" / "checkpoints" / run_id / "checkpoint.json").read_text())
        assert manifest["provenance"]["packed_with"] == run_ids


def test_probe_seeds_rerun_stochastic_probes_on_the_cached_latents(cli, tmp_path):
    args = ("run", "--encoder", "pca", "--task", "kmeans", "--task", "knn", "--dataset", "digits", "--latent-dim",
            "8", "--seed", "3", "--probe-seeds", "3", "--set", "kmeans.restarts=4", "--json")
    rows = json.loads(cli(*args).stdout)
    kmeans = [r for r in rows if r["task"] == "kmeans" and r["metric"] == "accuracy"]
    assert sorted((r["settings"]["seed"], r["details"]["probe_seed"]) for r in kmeans) == [
        (3, 0), (10_003, 1), (20_003, 2)]
    assert len({r["run_id"] for r in rows}) == 1  # one model, its latents probed three times
    assert len([r for r in rows if r["task"] == "knn"]) == 1  # kNN has no seed: it runs once
    out = cli(*args[:-1]).output
    line = next(x for x in out.splitlines() if " kmeans " in x and " accuracy " in x)
    assert line.split()[-2] == "1"  # n = one trained model (three probe seeds averaged inside it)
    run_dir = next((tmp_path / "work" / "checkpoints").iterdir())
    assert (run_dir / "map-components.npz").is_file()  # the t-SNE map, written once per run
    out = cli("run", "--encoder", "pca", "--task", "kmeans", "--dataset", "digits", "--probe-seeds", "0",
              expect=2).output
    assert "--probe-seeds must be a whole number of at least 1" in out and "Traceback" not in out
    out = cli("run", "--encoder", "pca", "--task", "kmeans", "--dataset", "digits", "--set",
              "kmeans.probe_seeds=-1", expect=2).output
    assert "--set kmeans.probe_seeds must be a whole number of at least 1" in out
