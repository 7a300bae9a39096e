"""1-D signals through the families, the trainer, checkpoints and packing.

The contract tests (``test_encoder_contract.py``) run every (family, shape) pair; here: the
1-D skeleton's shape rule, a family that builds images only, and a trained signal run that
loads back from its directory, packed or not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import encoders
from encoders.base import Arch, Autoencoder
from encoders.registry import check_kind
from repeval.data.base import Example, make_dataset
from repeval.errors import UserError
from repeval.specs import make_spec
from repeval.train import Trainer

SIGNAL = Example("signal", 1, 1024)


def test_the_1d_skeleton_pools_to_16_positions_and_doubles_its_width_every_second_scale():
    arch = Arch.for_latent_dim(1, 16, 64, SIGNAL)
    assert (arch.spatial, arch.scales, arch.latent_shape, arch.latent_dim) == (1, 6, (4, 16), 64)
    assert Arch.for_latent_dim(1, 16, 256, SIGNAL).latent_shape == (16, 16)
    model = encoders.get("baseline")(arch)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv1d)]
    assert [c.out_channels for c in convs] == [16, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64, 64, 64, 128, 4]
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    with torch.no_grad():
        assert model.encoder(torch.zeros(2, 1, 1024)).shape == (2, 4, 16)
        assert model.decode(torch.zeros(2, 64)).shape == (2, 1, 1024)
    with pytest.raises(ValueError, match="16 times a power of two"):
        Arch.for_latent_dim(1, 16, 64, Example("signal", 1, 1000))


def test_a_family_that_builds_only_images_is_refused_on_signals_naming_those_that_do():
    class ImagesOnly(Autoencoder):
        name = "images-only"

    check_kind(ImagesOnly, "mnist", Example("image", 1))  # fine
    with pytest.raises(UserError, match="'images-only' builds models for images only; 'shepard' holds 1×1024 signals. "
                                        "Families that work on signals: baseline, dropout, denoising, vae, aae, "
                                        "vqvae, acai, pixels, pca"):
        check_kind(ImagesOnly, "shepard", SIGNAL)


def tiny_signals(n: int = 128, length: int = 256) -> object:
    """Sine waves of 4 frequencies (the class) with random phases: float signals N×1×L."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 4
    t = np.arange(length) / length
    x = np.sin(2 * np.pi * (2 + 2 * y[:, None]) * t + rng.uniform(0, 2 * np.pi, (n, 1)))[:, None].astype(np.float32)
    return make_dataset("tiny-signals", x, y, x[:32], y[:32], num_classes=4, info={})


@pytest.mark.parametrize("encoder", ["baseline", "vae+acai"])
def test_a_signal_run_trains_resumes_and_loads_from_its_directory(tmp_path, encoder):
    dataset = tiny_signals()
    spec = make_spec(encoder, "shepard", latent_dim=64, budget=256, seed=0)
    ckpt = Trainer(spec, dataset, "cpu", tmp_path, progress=False, log=lambda m: None).run()
    model = ckpt.load_model()
    assert model.arch.example_shape == (1, 256) and model.arch.spatial == 1
    with torch.no_grad():
        x = dataset.test.x[:8]
        z = model.encode(x)
        assert z.shape == (8, 64) and model.decode(z).shape == (8, 1, 256)
    assert ckpt.load_state()["example"] == ["signal", 1, 256]


def test_signal_seeds_pack_into_the_runs_they_would_train_alone(tmp_path):
    from repeval.packed import PackedTrainer

    dataset = tiny_signals()
    specs = [make_spec("baseline", "shepard", latent_dim=64, budget=128, seed=s) for s in (0, 1)]
    packed = PackedTrainer(specs, dataset, "cpu", tmp_path / "packed", progress=False, log=lambda m: None).run()
    for spec, ckpt in zip(specs, packed):
        alone = Trainer(spec, dataset, "cpu", tmp_path / "alone", progress=False, log=lambda m: None).run()
        # as for images (tests/test_packed.py): losses to float rounding, weights within Adam's
        # bound of 2·lr per step (a rounding-level change of a near-zero gradient moves a weight by ~lr)
        np.testing.assert_allclose(ckpt.history["autoencoder"], alone.history["autoencoder"], rtol=1e-5)
        bound = 2 * spec.steps * spec.lr
        for (name, p), q in zip(ckpt.load_model().state_dict().items(), alone.load_model().state_dict().values()):
            torch.testing.assert_close(p, q, rtol=0, atol=bound, msg=name)


def test_signal_acai_packs_in_bf16(tmp_path):
    from repeval.packed import PackedTrainer

    specs = [make_spec("acai", "shepard", latent_dim=64, budget=128, seed=s, precision="bf16") for s in (0, 1)]
    members = PackedTrainer(specs, tiny_signals(), "cpu", tmp_path, progress=False, log=lambda m: None).run()
    assert all(np.isfinite(m.history["autoencoder"]).all() for m in members)


@pytest.mark.parametrize("encoder", ["baseline", "acai"])
def test_signal_weights_cast_once_give_autocasts_numbers_bit_for_bit(tmp_path, encoder):
    # under bf16 the 1-D convs (SignalConv, a Conv1d) run on bf16 copies made once per step, as the
    # 2-D ones do (repeval/acceleration.py CastOnce): the same roundings as autocast's per-call casts
    dataset = tiny_signals()
    spec = make_spec(encoder, "shepard", latent_dim=64, budget=256, seed=0, precision="bf16")
    runs = {}
    for once in (False, True):
        trainer = Trainer(spec, dataset, "cpu", tmp_path / str(once), progress=False, log=lambda m: None,
                          cast_once=once)
        runs[once] = (trainer, trainer.run())
    trainer = runs[True][0]
    conv1d = {n.rsplit(".", 1)[0] for n in trainer._cast.names if n.startswith(("model.encoder.", "model.decoder."))}
    assert len(conv1d) >= 10  # the 1-D stacks' convs were cast once
    autocast, once = runs[False][1], runs[True][1]
    for (name, a), b in zip(autocast.load_state()["model"].items(), once.load_state()["model"].values()):
        assert torch.equal(a, b), name
    assert autocast.history == once.history
