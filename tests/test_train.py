"""The trainer: checkpoints, exact resume, NaN handling, Ctrl-C, safe loading."""

import hashlib
import json
import os
import pickle
import signal

import numpy as np
import pytest
import torch

import encoders
from repeval import checkpoint as ckpt
from repeval import precision
from repeval.data.base import make_dataset
from repeval.errors import TrainingDiverged, UserError
from repeval.specs import RunSpec
from repeval.train import BatchStream, Trainer, train


def tiny_dataset(n_train=96, n_test=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train + n_test, 1, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 3, n_train + n_test)
    return make_dataset("tiny", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=3,
                        info={"source": "test"})


def tiny_spec(encoder="baseline", budget=640, seed=0, **hparams):
    import encoders

    return RunSpec(encoder=encoder, dataset="tiny", latent_dim=32, depth=4, budget=budget, seed=seed,
                   online_eval_every=128, hparams={**encoders.get(encoder).hparams, **hparams})


def weights(checkpoint):
    return checkpoint.load_state()["model"]


def test_batch_stream_is_a_function_of_the_step():
    a = BatchStream(n=10, batch_size=4, seed=3, device="cpu")
    seen = torch.cat([a.indices(s) for s in range(5)])  # 20 positions = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    b = BatchStream(n=10, batch_size=4, seed=3, device="cpu")
    assert torch.equal(b.indices(3), a.indices(3))  # fresh stream, same step, same batch
    assert not torch.equal(BatchStream(10, 4, 4, "cpu").indices(0), a.indices(0))


def test_training_writes_a_complete_checkpoint_with_history(tmp_path):
    spec = tiny_spec()
    checkpoint = train(spec, tiny_dataset(), "cpu", tmp_path, progress=False)
    assert checkpoint.path == tmp_path / "checkpoints" / spec.run_id
    state = checkpoint.load_state()
    assert state["complete"] and state["step"] == spec.steps == 10
    history = checkpoint.history
    assert history["step"][-1] == 10 and len(history["autoencoder"]) == len(history["step"])
    assert history["online_images"] == [128, 256, 384, 512, 640]
    assert all(0 <= a <= 1 for a in history["online_accuracy"])
    assert checkpoint.spec == spec
    assert checkpoint.provenance["data"]["source"] == "test"
    assert checkpoint.provenance["precision"] == "fp32"
    assert checkpoint.provenance["training_step"] == "eager"  # CUDA graphs are a CUDA-only path
    assert list(checkpoint.provenance["latents"]) == ["map"]


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["baseline", "acai"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, encoder):
    spec = tiny_spec(encoder)
    whole = train(spec, tiny_dataset(), "cpu", tmp_path / "a", progress=False)
    part = train(spec, tiny_dataset(), "cpu", tmp_path / "b", progress=False, max_steps=4)
    assert part.load_state()["step"] == 4 and not part.load_state()["complete"]
    resumed = train(spec, tiny_dataset(), "cpu", tmp_path / "b", progress=False, log=lambda m: None)
    for name, tensor in weights(whole).items():
        assert torch.equal(tensor, weights(resumed)[name]), name
    assert whole.history == resumed.history


@pytest.mark.slow
def test_finished_run_is_reused_not_retrained(tmp_path, monkeypatch):
    spec = tiny_spec()
    first = train(spec, tiny_dataset(), "cpu", tmp_path, progress=False)
    monkeypatch.setattr(Trainer, "_train", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert train(spec, tiny_dataset(), "cpu", tmp_path, progress=False).path == first.path


def test_nan_loss_stops_with_family_step_and_loss_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    spec = tiny_spec()
    good = train(spec, tiny_dataset(), "cpu", tmp_path, progress=False, max_steps=3)
    before = weights(good)
    from encoders.baseline import Baseline

    original = Baseline.training_step
    calls = {"n": 0}

    def poisoned(self, x):
        step = original(self, x)
        calls["n"] += 1
        if calls["n"] == 2:  # the resumed run's second step is global step 4
            step.losses["autoencoder"] = step.losses["autoencoder"] * float("nan")
        return step

    monkeypatch.setattr(Baseline, "training_step", poisoned)
    with pytest.raises(TrainingDiverged) as err:
        train(spec, tiny_dataset(), "cpu", tmp_path, progress=False, log=lambda m: None)
    assert "baseline: loss 'autoencoder' became nan at step 4" in err.value.message
    after = ckpt.Checkpoint(good.path).load_state()
    assert after["step"] == 3
    for name, tensor in before.items():
        assert torch.equal(tensor, after["model"][name])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_resumable_checkpoint(tmp_path, monkeypatch, signum):
    spec = tiny_spec()
    trainer = Trainer(spec, tiny_dataset(), "cpu", tmp_path, progress=False)
    from encoders.baseline import Baseline

    original = Baseline.training_step
    calls = {"n": 0}

    def signal_at_step_five(self, x):
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signum)
        return original(self, x)

    monkeypatch.setattr(Baseline, "training_step", signal_at_step_five)
    before = signal.getsignal(signum)
    with pytest.raises(UserError, match="Interrupted at step 5 of 10; checkpoint saved"):
        trainer.run()
    assert ckpt.Checkpoint(trainer.path).load_state()["step"] == 5
    assert signal.getsignal(signum) is before  # the previous handler is back
    resumed = train(spec, tiny_dataset(), "cpu", tmp_path, progress=False, log=lambda m: None)
    assert resumed.load_state()["complete"]


@pytest.mark.slow
def test_checkpoint_round_trip_gives_identical_latents(tmp_path):
    """The model trained in memory and the one loaded from its checkpoint are the same model."""
    spec = tiny_spec("vae")
    data = tiny_dataset()
    trainer = Trainer(spec, data, "cpu", tmp_path, progress=False)
    checkpoint = trainer.run()
    assert checkpoint.load_state()["complete"]
    trained = trainer.model.eval()
    loaded = ckpt.Checkpoint(checkpoint.path).load_model()
    assert loaded is not trained
    trained_state, loaded_state = trained.state_dict(), loaded.state_dict()
    assert trained_state.keys() == loaded_state.keys()
    for name, tensor in trained_state.items():
        assert torch.equal(tensor, loaded_state[name]), name
    x = data.test.x[:8].float() / 127.5 - 1
    with torch.no_grad():
        assert torch.equal(trained.encode(x, "mean"), loaded.encode(x, "mean"))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.slow
def test_loading_never_unpickles_arbitrary_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tiny_spec()
    checkpoint = train(spec, tiny_dataset(), "cpu", tmp_path, progress=False)
    state_file = checkpoint.path / checkpoint.manifest["state"]
    with open(state_file, "wb") as f:
        pickle.dump({"format": 1, "model": _Exploit()}, f, protocol=2)
    with pytest.raises(UserError, match="does not match the sha256 committed in checkpoint.json"):
        ckpt.Checkpoint(checkpoint.path).load_state()
    # an attacker who also forges the manifest's sha256 still meets weights-only loading
    manifest = json.loads((checkpoint.path / "checkpoint.json").read_text())
    manifest["state_sha256"] = hashlib.sha256(state_file.read_bytes()).hexdigest()
    (checkpoint.path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="cannot be read safely"):
        ckpt.Checkpoint(checkpoint.path).load_state()
    assert not (tmp_path / "PWNED").exists()


def test_reference_encoder_is_fitted_not_trained(tmp_path):
    spec = RunSpec(encoder="pca", dataset="tiny", latent_dim=5, depth=4, budget=0, seed=0, online_eval_every=0)
    checkpoint = train(spec, tiny_dataset(), "cpu", tmp_path, progress=False)
    assert checkpoint.load_state()["complete"]
    assert checkpoint.load_model().encode(torch.zeros(2, 1, 32, 32)).shape == (2, 5)


def test_without_a_terminal_progress_comes_as_status_lines(tmp_path, monkeypatch):
    import repeval.train as train_module

    monkeypatch.setattr(train_module, "STATUS_EVERY_S", 0.0)
    lines = []
    train(tiny_spec(budget=192), tiny_dataset(), "cpu", tmp_path, progress=True, log=lines.append)
    assert len(lines) == 3 and lines[-1].startswith(f"{tiny_spec(budget=192).run_id}: step 3/3 autoencoder=")
    assert "img/s=" in lines[-1]


# --- bf16: weights cast once per step (the CUDA default; CPU autocast runs the same code) ----
def _bf16_run(tmp_path, encoder, cast_once, budget=384):
    trainer = Trainer(tiny_spec(encoder, budget=budget), tiny_dataset(), "cpu", tmp_path / f"{encoder}-{cast_once}",
                      amp=True, cast_once=cast_once, progress=False)
    return trainer, trainer.run()


@pytest.mark.slow
@pytest.mark.parametrize("encoder", [*(name for name, family in encoders.REGISTRY.items() if family.learned),
                                     "acai-one-pass"])
def test_weights_cast_once_give_autocasts_numbers_bit_for_bit(tmp_path, monkeypatch, encoder):
    if encoder == "acai-one-pass":  # the CUDA path: decoder and critic once over both halves
        import functools

        import encoders.acai

        monkeypatch.setattr(encoders.acai, "_paired", functools.partial(encoders.acai._paired, batched=True))
        encoder = "acai"
    _, autocast = _bf16_run(tmp_path, encoder, cast_once=False)
    trainer, once = _bf16_run(tmp_path, encoder, cast_once=True)
    assert trainer._cast is not None and len(trainer._cast) >= 2  # it did cast, and more than the classifier
    for name, tensor in weights(autocast).items():
        assert torch.equal(tensor, weights(once)[name]), name
    assert autocast.history == once.history
    kernels = precision.describe("bf16", "cpu")  # "bf16 autocast (CPU ...)"
    assert autocast.provenance["precision"] == kernels
    assert once.provenance["precision"] == f"{kernels} (weights of {len(trainer._cast)} layers cast once per step)"


@pytest.mark.slow
def test_cast_once_leaves_layers_run_twice_or_in_full_precision_to_autocast(tmp_path, monkeypatch):
    import functools

    import encoders.acai

    def cast_layers(encoder, tag=""):
        trainer, _ = _bf16_run(tmp_path / f"{encoder}{tag}", encoder, cast_once=True, budget=128)
        return {name.rsplit(".", 1)[0] for name in trainer._cast.names}

    vae = cast_layers("vae")  # its mean and log-variance heads run in float32
    assert "classifier" in vae and "model.encoder.0" in vae and not {"model.mu", "model.log_var"} & vae
    aae = cast_layers("aae")  # its discriminator is differentiated through twice (codes and prior)
    assert "model.encoder.0" in aae and not any(n.startswith("model.discriminator") for n in aae)
    denoising = cast_layers("denoising")  # its encoder's second pass (clean images) has no gradient
    assert {"model.encoder.0", "model.decoder.0"} <= denoising
    two_pass = cast_layers("acai")  # on the CPU the decoder and the critic run twice per step
    assert "model.encoder.0" in two_pass and not any(n.startswith(("model.decoder", "model.critic")) for n in two_pass)
    monkeypatch.setattr(encoders.acai, "_paired", functools.partial(encoders.acai._paired, batched=True))
    one_pass = cast_layers("acai", "-one-pass")
    assert {"model.decoder.0", "model.critic.0"} <= one_pass
    # float32 training never casts
    fp32 = Trainer(tiny_spec(budget=128), tiny_dataset(), "cpu", tmp_path / "fp32", cast_once=True, progress=False)
    assert fp32.run().provenance["precision"] == "fp32" and fp32._cast is None
