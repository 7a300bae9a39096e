"""Score rows out to trackers (`repeval.trackers.log_rows`, `repeval export`), with the real
packages: MLflow on a SQLite store in a temporary folder, W&B offline, TensorBoard event files.

The tracker packages are imported inside the tests (each costs seconds to import).
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from repeval.cli import main
from repeval.errors import UserError
from repeval.trackers import MAX_KEY_LENGTH, MAX_PARAM_LENGTH, log_rows, plan


def row(*, dataset="mnist", encoder="acai", task="kmeans", metric="accuracy", value=0.5, seed=0, budget=1024,
        latent_dim=32, latent="map", settings=None, run_id=None):
    """A score row shaped as Store.scores() returns it."""
    return {"dataset": dataset, "encoder": encoder, "latent": latent, "latent_dim": latent_dim, "seed": seed,
            "budget": budget, "task": task, "metric": metric, "value": value,
            "settings": {"restarts": 10, "seed": seed} if settings is None else settings, "details": {},
            "wall_time_s": 0.1, "run_id": run_id or f"{encoder}-{dataset}-{latent_dim}-b{budget}-s{seed}",
            "created_at": "2026-01-01T00:00:00+00:00"}


def study() -> list[dict]:
    """Two seeds at two budgets (kmeans), two kNN settings, a NaN score and a NaN seed."""
    rows = [row(seed=s, budget=b, value=v) for (s, b, v) in
            [(0, 1024, 0.50), (1, 1024, 0.60), (0, 4096, 0.70), (1, 4096, 0.80)]]
    rows += [row(task="knn", seed=0, settings={"k": k, "metric": "cosine"}, value=v) for k, v in [(5, 0.9), (20, 0.8)]]
    rows += [row(task="linear", settings={"C": 1.0}, value=math.nan)]  # undefined: never logged
    rows += [row(dataset="digits", seed=s, value=v) for s, v in [(0, 0.4), (1, math.nan)]]  # a failed seed
    return rows


KMEANS = "mnist/acai/kmeans/accuracy"
KNN5, KNN20 = "mnist/acai/knn/k_5/accuracy", "mnist/acai/knn/k_20/accuracy"


def test_plan_names_keys_averages_seeds_steps_budgets_and_skips_nan():
    out = plan(study())
    assert set(out) == {KMEANS, KNN5, KNN20}  # the differing setting names itself; nothing else does
    assert out.history[KMEANS] == pytest.approx({1024: 0.55, 4096: 0.75})  # mean over seeds, budget = step
    assert out[KMEANS] == pytest.approx(0.75)  # the value at the largest budget
    assert out[KNN5] == 0.9 and out[KNN20] == 0.8
    assert out.skipped == ["digits/acai/kmeans/accuracy at budget 1024: undefined (nan), not logged",
                           "mnist/acai/linear/accuracy at budget 1024: undefined (nan), not logged"]
    # settings as params, by task; a probe seed that follows the run's seed says so
    assert out.params == {"kmeans.restarts": "10", "kmeans.seed": "run seed", "knn.k": "[5, 20]",
                          "knn.metric": "cosine", "linear.C": "1.0"}
    assert out.points == 4 and list(out.by_step()) == [1024, 4096]

    seeds = plan(study(), per_seed=True, prefix="eval/")
    assert seeds.history["eval/mnist/acai/seed_1/kmeans/accuracy"] == pytest.approx({1024: 0.6, 4096: 0.8})
    assert seeds["eval/digits/acai/seed_0/kmeans/accuracy"] == 0.4  # the defined seed alone is logged per seed
    assert "eval/digits/acai/kmeans/accuracy" not in seeds and set(seeds.params) >= {"eval/knn.k"}


def test_plan_puts_latent_sizes_and_tensors_in_keys_and_keeps_every_key_legal():
    rows = [row(encoder="vae+acai", latent_dim=d, value=d / 100) for d in (16, 32)]
    rows += [row(encoder="vae", latent=t, value=v) for t, v in [("mean", 0.3), ("sample", 0.2)]]
    out = plan(rows)
    assert dict(out) == pytest.approx({"mnist/vae_acai/latent_dim_16/kmeans/accuracy": 0.16,
                                       "mnist/vae_acai/latent_dim_32/kmeans/accuracy": 0.32,
                                       "mnist/vae/latent_mean/kmeans/accuracy": 0.3,
                                       "mnist/vae/latent_sample/kmeans/accuracy": 0.2})
    # names that clean to the same key get _2 in a fixed order; long keys fit with a digest
    clash = plan([row(encoder="a+b", value=0.1), row(encoder="a_b", value=0.2), row(dataset="../x" * 100)])
    assert clash["mnist/a_b/kmeans/accuracy"] == 0.1 and clash["mnist/a_b/kmeans/accuracy_2"] == 0.2
    long = [k for k in clash if k.startswith("_..")]
    assert len(long) == 1 and len(long[0]) == MAX_KEY_LENGTH
    assert all(re.fullmatch(r"[\w.\- /]+", k) and ".." not in k.split("/") for k in clash)
    text = plan([row(settings={"note": "x" * 7000})]).params["kmeans.note"]
    assert len(text) == MAX_PARAM_LENGTH and text.endswith("...")


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    """One SQLite tracking store for the module (creating one runs MLflow's migrations: seconds)."""
    import mlflow

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("repeval-tests")
    yield uri


def test_mlflow_gets_metrics_per_budget_and_settings_as_params(mlflow_db, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.chdir(tmp_path)  # MLflow's artifact folder, if it made one, lands here
    with mlflow.start_run() as run:
        out = log_rows(study(), mlflow)
    client = mlflow.MlflowClient()
    data = client.get_run(run.info.run_id).data
    assert data.metrics == pytest.approx(dict(out)) and set(data.metrics) == {KMEANS, KNN5, KNN20}
    assert data.params == out.params and data.params["knn.k"] == "[5, 20]"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, KMEANS))
    assert dict(history) == pytest.approx({1024: 0.55, 4096: 0.75})
    assert out.tracker == "mlflow" and len(out.skipped) == 2  # the NaN rows: skipped, not logged

    # the same run cannot take changed settings under the same names: a UserError with the way out
    with mlflow.start_run(run_id=run.info.run_id):
        with pytest.raises(UserError, match="cannot change its value.*prefix"):
            log_rows([row(task="knn", settings={"k": 7})], mlflow)
        log_rows([row(task="knn", settings={"k": 7}, value=0.1)], mlflow, prefix="again/")
    assert client.get_run(run.info.run_id).data.metrics["again/mnist/acai/knn/accuracy"] == 0.1


def _wandb_records(run_dir: Path) -> list:
    """The records of an offline run's .wandb file (a LevelDB-style log: 32 KiB blocks, each
    record split in chunks with a 7-byte header), as W&B's protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    block, pos, parts, records = 32768, 7, [], []
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def _wandb_history(run_dir: Path) -> list[dict]:
    """The offline run's history rows (one per run.log call), and its metrics' x-axes."""
    records = _wandb_records(run_dir)
    return [{item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]


def _wandb_axes(run_dir: Path) -> dict[str, str]:
    return {r.metric.name: r.metric.step_metric for r in _wandb_records(run_dir)
            if r.WhichOneof("record_type") == "metric" and r.metric.step_metric}


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    for name, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                        "WANDB_DISABLE_GIT": "true"}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_wandb_offline_run_gets_a_budget_axis_config_and_history(wandb_offline):
    import wandb

    run = wandb.init(project="repeval-tests")
    try:
        out = log_rows(study(), wandb, prefix="eval/")  # the module, while a run is active
        summary = {k: run.summary[k] for k in out}
        config = dict(run.config)
    finally:
        run.finish()
    assert summary == pytest.approx(dict(out)) and "eval/" + KMEANS in summary
    assert config == {**out.params} and config["eval/knn.k"] == "[5, 20]"
    history = _wandb_history(Path(run.settings.sync_dir))
    assert [h["eval/budget"] for h in history] == [1024, 4096]  # one log call per budget, ascending
    assert _wandb_axes(Path(run.settings.sync_dir)) == {key: "eval/budget" for key in out}
    assert dict((h["eval/budget"], h["eval/" + KMEANS]) for h in history) == pytest.approx({1024: 0.55, 4096: 0.75})
    assert not any(math.isnan(v) for h in history for v in h.values() if isinstance(v, float))
    with pytest.raises(UserError, match="no active run"):
        log_rows(study(), wandb)


def test_tensorboard_writer_gets_scalars_at_budgets_and_a_settings_table(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    out = log_rows(study(), writer)
    writer.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(out) == {KMEANS, KNN5, KNN20}
    assert [e.step for e in events.Scalars(KMEANS)] == [1024, 4096]
    assert [e.value for e in events.Scalars(KMEANS)] == pytest.approx([0.55, 0.75])
    table = events.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| knn.k | [5, 20] |" in table and "| kmeans.seed | run seed |" in table


def test_any_object_with_log_metrics_is_a_tracker_and_unknown_objects_are_refused():
    class LightningLikeLogger:  # log_metrics(metrics, step) and log_hyperparams(params), as Lightning's loggers
        def __init__(self):
            self.metrics, self.params = [], {}

        def log_metrics(self, metrics, step=None):
            self.metrics.append((step, dict(metrics)))

        def log_hyperparams(self, params):
            self.params.update(params)

    logger = LightningLikeLogger()
    out = log_rows(study(), logger)
    assert [step for step, _ in logger.metrics] == [1024, 4096] and logger.params == out.params
    out = log_rows([row(value=None), row(encoder="vae", value=np.float32(0.25))], logger)  # None: undefined
    assert dict(out) == {"mnist/vae/kmeans/accuracy": 0.25} and len(out.skipped) == 1
    for rows, says in [([{"value": 1.0}], "Score row 0 has no dataset"), ([row(value="high")], "is a number"),
                       (row(), "takes a list of score rows")]:
        with pytest.raises(UserError, match=says):
            log_rows(rows, logger)

    for thing, says in [(object(), "builtins.object"), (sys, "module sys"), ("mlflow", "builtins.str")]:
        with pytest.raises(UserError) as error:
            log_rows(study(), thing)
        message = error.value.format_message()
        assert says in message and "\n" not in message  # one paragraph naming the object's type
        assert all(name in message for name in ("mlflow", "W&B run", "SummaryWriter"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir with stored scores of `latents:` embeddings (linear and kNN; no training)."""
    folder = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    np.savez(folder / "emb.npz", z_train=rng.normal(size=(200, 8)).astype(np.float32),
             y_train=rng.integers(0, 3, 200).astype(np.int64), z_test=rng.normal(size=(100, 8)).astype(np.float32),
             y_test=rng.integers(0, 3, 100).astype(np.int64))
    work = folder / "work"
    result = CliRunner().invoke(main, ["run", "--encoder", f"latents:{folder / 'emb.npz'}", "--task", "linear",
                                       "--task", "knn", "--dataset", "mygroup", "--workdir", str(work)])
    assert result.exit_code == 0, result.output
    return work


def export(*args, expect=0, env=None):
    result = CliRunner().invoke(main, ["export", *map(str, args)], env=env, catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.output


def one_paragraph(output: str) -> str:
    message = output[output.index("Error: "):].strip()
    assert "\n" not in message and "Traceback" not in output, output
    return message


def test_export_to_mlflow_from_the_shell(workdir, mlflow_db, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.chdir(tmp_path)
    out = export("--to", "mlflow", "--workdir", workdir, "--tracking-uri", mlflow_db, "--experiment", "shell",
                 "--run-name", "from-cli", "--task", "knn")
    assert "Logged 1 metric at 1 budget (1 value) and 3 params, from 1 stored score, to MLflow run from-cli" in out
    (run,) = mlflow.search_runs(experiment_names=["shell"], output_format="list")
    assert set(run.data.metrics) == {"mygroup/emb/knn/accuracy"} and run.data.params["knn.k"] == "20"
    assert run.info.run_name == "from-cli" and run.info.status == "FINISHED"


def test_export_to_wandb_offline_and_tensorboard_from_the_shell(workdir, wandb_offline, tmp_path):
    out = export("--to", "wandb", "--workdir", workdir, "--project", "shell", "--per-seed")
    assert "Logged 4 metrics" in out and "offline in" in out and "wandb sync" in out
    run_dir = Path(re.search(r"offline in (\S+) \(", out).group(1))  # (W&B keeps its first WANDB_DIR per process)
    history = _wandb_history(run_dir)
    assert {"mygroup/emb/linear/accuracy", "mygroup/emb/seed_0/knn/accuracy", "budget"} <= set(history[0])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = export("--to", "tensorboard", "--workdir", workdir, "--run-name", "r1")
    assert f"TensorBoard events in {workdir / 'tensorboard' / 'r1'}" in out  # default: <workdir>/tensorboard
    events = EventAccumulator(str(workdir / "tensorboard" / "r1"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"mygroup/emb/linear/accuracy", "mygroup/emb/knn/accuracy"}


def test_export_errors_are_one_paragraph(workdir, tmp_path, monkeypatch):
    message = one_paragraph(export("--to", "mlflow", "--workdir", tmp_path / "empty", expect=2))
    assert "No scores stored in" in message
    assert "matching --task nope" in one_paragraph(export("--to", "mlflow", "--workdir", workdir, "--task", "nope",
                                                          expect=2))
    assert "--logdir does not apply to --to mlflow" in one_paragraph(
        export("--to", "mlflow", "--workdir", workdir, "--logdir", tmp_path, expect=2))
    assert "'neptune' is not one of" in export("--to", "neptune", "--workdir", workdir, expect=2)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
    assert 'pip install "repeval[wandb]"' in one_paragraph(export("--to", "wandb", "--workdir", workdir, expect=2))
    help_text = export("--help")
    assert all(text in help_text for text in ("--tracking-uri", "repeval[mlflow]", "mnist/acai/kmeans/accuracy",
                                              "WANDB_MODE=offline", "<workdir>/tensorboard"))
