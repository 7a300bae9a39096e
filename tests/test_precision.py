"""--precision auto|fp32|bf16: detection, the spec's identity, the trainer, the CLI and the sweep."""

import json

import pytest
import torch
from click.testing import CliRunner

from repeval import precision
from repeval.cli import main
from repeval.errors import UserError
from repeval.specs import RunSpec, make_spec
from repeval.train import Trainer
from tests.test_train import tiny_dataset, tiny_spec


@pytest.fixture
def native_cpu(monkeypatch):
    """A CPU that computes bf16 natively (the detection replaced)."""
    monkeypatch.setattr(precision, "cpu_bf16", lambda: "AMX-BF16")


def test_cpuinfo_flags_name_the_native_bf16_instructions(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n\n")
    assert precision._cpuinfo_flags(info) >= {"avx512_bf16", "amx_bf16"}
    read = precision._cpuinfo_flags
    monkeypatch.setattr(precision, "_cpuinfo_flags", lambda: read(info))
    assert precision.detect_cpu_bf16() == "AMX-BF16, AVX512-BF16"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert precision.detect_cpu_bf16() is None
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")  # Arm
    assert precision.detect_cpu_bf16() == "Arm BF16"


def test_auto_resolves_by_the_device(monkeypatch, native_cpu):
    assert precision.resolve("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    assert precision.resolve("auto", "cpu") == "fp32"
    assert precision.resolve("bf16", "cpu") == "bf16"  # named: no detection
    assert precision.resolve("fp32", "cpu") == "fp32"
    assert "emulated" in precision.warning("bf16", "cpu")
    assert precision.warning("fp32", "cpu") is None


def test_an_unknown_precision_is_one_paragraph():
    with pytest.raises(UserError, match=r"'bf32' is not one of auto, fp32, bf16"):
        precision.resolve("bf32", "cpu")


def test_precision_is_part_of_the_spec_and_fp32_keeps_its_old_digest(native_cpu):
    fp32 = make_spec("baseline", "digits", budget=2048, precision="fp32")
    bf16 = make_spec("baseline", "digits", budget=2048, precision="bf16")
    auto = make_spec("baseline", "digits", budget=2048, precision="auto")
    assert (fp32.precision, bf16.precision, auto.precision) == ("fp32", "bf16", "bf16")
    assert fp32.run_id != bf16.run_id and auto.run_id == bf16.run_id
    # an fp32 spec's JSON has no precision key: run directories made before it existed keep their names
    assert "precision" not in json.loads(fp32.to_json()) and json.loads(bf16.to_json())["precision"] == "bf16"
    assert RunSpec.from_dict(json.loads(bf16.to_json())) == bf16
    # a reference encoder is fitted, not trained: always fp32, whatever is asked
    assert make_spec("pca", "digits", precision="bf16").precision == "fp32"


def test_the_trainer_follows_the_spec_and_records_what_ran(tmp_path):
    from dataclasses import replace

    spec = replace(tiny_spec(budget=128), precision="bf16")
    lines = []
    done = Trainer(spec, tiny_dataset(), "cpu", tmp_path, progress=False, log=lines.append).run()
    record = done.provenance
    assert record["precision"].startswith("bf16 autocast (CPU without native bf16: emulated)")
    assert record["memory_format"] == "channels_last"
    assert any("no native bf16" in line for line in lines)
    fp32 = Trainer(tiny_spec(budget=128), tiny_dataset(), "cpu", tmp_path, progress=False).run()
    assert fp32.provenance["precision"] == "fp32" and fp32.path != done.path
    a, b = fp32.load_state()["model"], done.load_state()["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # bf16 rounds: another run, other weights


def test_bf16_resumes_exactly(tmp_path):
    from dataclasses import replace

    from tests.test_snapshots import states_equal

    spec = replace(tiny_spec(budget=256), precision="bf16")
    whole = Trainer(spec, tiny_dataset(), "cpu", tmp_path / "whole", progress=False, log=lambda m: None).run()
    Trainer(spec, tiny_dataset(), "cpu", tmp_path / "parts", progress=False, log=lambda m: None).run(max_steps=1)
    resumed = Trainer(spec, tiny_dataset(), "cpu", tmp_path / "parts", progress=False, log=lambda m: None).run()
    states_equal(whole.load_state(), resumed.load_state())


def test_a_bf16_run_under_an_fp32_name_is_refused(tmp_path):
    """GPU runs made before the precision was in the spec trained in bf16 under fp32 names."""
    Trainer(tiny_spec(budget=256), tiny_dataset(), "cpu", tmp_path, amp=True, progress=False,
            log=lambda m: None).run(max_steps=1)
    with pytest.raises(UserError, match="was trained in bf16, but this run is fp32"):
        Trainer(tiny_spec(budget=256), tiny_dataset(), "cpu", tmp_path, progress=False).run()


def test_cli_precision_names_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv("REPEVAL_PRECISION")
    runner = CliRunner()
    base = ["train", "--encoder", "baseline", "--dataset", "digits", "--budget", "64", "--no-snapshots",
            "--workdir", str(tmp_path), "--threads", "1"]
    fp32 = runner.invoke(main, base)
    bf16 = runner.invoke(main, [*base, "--precision", "bf16"])
    assert fp32.exit_code == 0 and bf16.exit_code == 0, fp32.output + bf16.output
    assert "no native bf16" in bf16.output  # the detection is replaced by conftest: this CPU has none
    fp32_dir, bf16_dir = fp32.output.strip().splitlines()[-1], bf16.output.strip().splitlines()[-1]
    assert fp32_dir != bf16_dir
    bad = runner.invoke(main, [*base, "--precision", "half"])
    assert bad.exit_code == 2 and "'half' is not one of auto, fp32, bf16" in bad.output
    assert "Traceback" not in bad.output


def test_sweep_jobs_carry_the_resolved_precision(native_cpu):
    from repeval.sweep import jobs
    from repeval.sweep.grid import Group, cells

    group = Group(axes={"encoder": ["baseline", "pca"], "dataset": ["digits"], "budget": [2048]},
                  tasks=["linear"])
    built = {j.spec["encoder"]: j for j in jobs.build_jobs(cells([group]), "cpu", "auto")}
    assert built["baseline"].spec["precision"] == "bf16" and "precision" not in built["pca"].spec
    inv = built["baseline"].invocations[0]
    argv = built["baseline"].argv(inv, "python", {"workdir": "w"})
    assert argv[argv.index("--precision") + 1] == "bf16"
    assert "--precision" not in built["pca"].argv(built["pca"].invocations[0], "python", {"workdir": "w"})


def test_summaries_keep_bf16_runs_apart_from_fp32_runs(tmp_path):
    from repeval.store import Store
    from repeval.summary import summarise

    def row(seed, value):
        return {"dataset": "digits", "encoder": "acai", "latent": "map", "latent_dim": 256, "seed": seed,
                "budget": 2048, "task": "linear", "metric": "accuracy", "value": value, "settings": {"C": 1.0},
                "details": {}, "wall_time_s": 0.0}

    with Store(tmp_path / "repeval.db") as store:
        for p in ("fp32", "bf16"):
            for seed in (0, 1):
                spec = make_spec("acai", "digits", budget=2048, seed=seed, precision=p)
                store.record_run(spec.run_id, spec.to_dict(), {}, None)
                store.add_scores(spec.run_id, [_score(row(seed, 0.9 if p == "fp32" else 0.8))])
        rows = store.scores()
    assert sorted(r.get("precision", "fp32") for r in rows) == ["bf16", "bf16", "fp32", "fp32"]
    groups = {json.dumps(g["settings"], sort_keys=True): g["mean"] for g in summarise(rows)}
    assert groups == {'{"C": 1.0}': pytest.approx(0.9), '{"C": 1.0, "precision": "bf16"}': pytest.approx(0.8)}


def _score(fields):
    from repeval.store import Score

    return Score(**{k: v for k, v in fields.items() if k in Score.__dataclass_fields__})
