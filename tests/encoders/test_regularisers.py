"""ACAI's regulariser on any family (``FAMILY+acai``): the composition, its losses, its groups,
and ``baseline+acai`` training exactly the computation of ``acai``."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import encoders
from encoders.acai import ACAI, critic_losses
from encoders.base import Autoencoder
from repeval.errors import UserError
from repeval.specs import make_spec

COMPOSABLE = ["baseline", "dropout", "denoising", "vae", "aae", "vqvae"]
SMALL_VQ = {"z_log_size": 8}


def build(name: str, arch, seed: int = 0, **hparams):
    torch.manual_seed(seed)
    if name.startswith("vqvae"):
        hparams = {**SMALL_VQ, **hparams}
    return encoders.get(name)(arch, **hparams)


def test_every_learned_family_but_acai_composes_and_is_listed():
    assert encoders.REGISTRY.composed_names()[:6] == [f"{n}+acai" for n in COMPOSABLE]
    for name in COMPOSABLE:
        composed = encoders.get(f"{name}+acai")
        assert composed is encoders.get(f"{name}+acai")  # built once, then the same class
        assert issubclass(composed, encoders.get(name)) and composed.name == f"{name}+acai"
        assert composed.hparams == {**encoders.get(name).hparams, **ACAI.hparams}
        assert composed.latents == encoders.get(name).latents
        assert encoders.REGISTRY.source(f"{name}+acai") == "built-in + regulariser acai (built-in)"
    assert "vae+acai" not in encoders.REGISTRY.names()  # `--encoder all` stays the registered families
    order = ["acai", "baseline+acai", "vae+acai", "mine"]
    assert sorted(order, key=encoders.REGISTRY.index) == order  # composed after registered, outside names last


@pytest.mark.parametrize("name, says", [
    ("acai+acai", "'acai' is the family the 'acai' regulariser comes from"),
    ("pixels+acai", "'pixels' is a reference encoder"),
    ("vae+nope", "Unknown regulariser 'nope'. Known regularisers: acai"),
    ("nope+acai", "Unknown encoder 'nope'"),
])
def test_compositions_that_cannot_be_made_say_why(name, says):
    with pytest.raises(UserError, match=says.replace("(", r"\(").replace(")", r"\)")):
        encoders.get(name)


def test_a_family_without_training_pass_does_not_compose():
    class Opaque(Autoencoder):
        name = "opaque"

        def training_step(self, x):
            raise AssertionError

    assert not Opaque.composable()
    from encoders.regularisers import compose_error

    assert "does not expose the latent its decoder reads" in compose_error(Opaque, encoders.REGULARISERS.get("acai"))


@pytest.mark.parametrize("name", COMPOSABLE)
def test_composed_step_adds_the_acai_terms_to_the_familys_own(tiny_arch, images, name):
    """The family's own pass first (same random draws, same losses), then α, the interpolants of
    the latent its decoder read, and ACAI's terms; recomputed here from the same seed."""
    family = build(name, tiny_arch, seed=1)
    composed = build(f"{name}+acai", tiny_arch, seed=1)
    assert all(torch.equal(v, composed.state_dict()[k]) for k, v in family.state_dict().items())
    torch.manual_seed(5)
    step, view = composed.training_pass(images)
    torch.manual_seed(5)
    own, own_view = family.training_pass(images)
    alpha = ACAI.mixing_coefficients(images)
    z = own_view.z
    a = alpha.view(-1, *(1,) * (z.dim() - 1))
    critic, terms = critic_losses(composed.critic, composed.hp, images, own_view.x_hat,
                                  own_view.decode(a * z + (1 - a) * z.flip(0)), alpha)
    torch.testing.assert_close(view.z, own_view.z, rtol=0, atol=0)
    torch.testing.assert_close(step.losses["autoencoder"], own.losses["autoencoder"] + 0.5 * terms["loss_ae_disc"])
    torch.testing.assert_close(step.losses["critic"], critic)
    assert set(step.losses) == set(own.losses) | {"critic"}
    for k in set(own.losses) - {"autoencoder"}:  # the AAE's discriminator loss is left as it was
        torch.testing.assert_close(step.losses[k], own.losses[k])
    torch.testing.assert_close(step.features, own.features)
    assert {"loss_disc", "loss_disc_real", "loss_ae_disc"} <= set(step.logs)


def test_vae_interpolates_the_sample_its_decoder_reads(tiny_arch, images):
    model = build("vae+acai", tiny_arch)
    torch.manual_seed(3)
    _, view = model.training_pass(images)
    torch.manual_seed(3)
    _, mu, log_var = model.posterior(images)
    sample = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape)
    torch.testing.assert_close(view.z, sample)
    assert not torch.allclose(view.z, mu)
    torch.testing.assert_close(view.decode(view.z), model.decode(sample))  # decoded as the Bernoulli mean in [-1, 1]


@pytest.mark.parametrize("name", COMPOSABLE)
def test_groups_partition_the_parameters_and_never_move_each_other(tiny_arch, images, group_step, name):
    model = build(f"{name}+acai", tiny_arch)
    groups = model.optimizer_groups(1e-3)
    ids = [id(p) for params, _ in groups.values() for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert [id(p) for p in groups["critic"][0]] == [id(p) for p in model.critic.parameters()]
    optimisers = {g: torch.optim.Adam(params, lr=lr) for g, (params, lr) in groups.items()}
    model.train()
    others = {g for g in groups if g != "critic"}

    def snapshot(names):
        return [p.detach().clone() for g in names for p in groups[g][0]]

    def unchanged(before, names):
        return all(torch.equal(a, p) for a, p in zip(before, (p for g in names for p in groups[g][0])))

    critic = snapshot({"critic"})
    group_step(model, images, optimisers, groups, only=others)
    assert unchanged(critic, {"critic"})
    rest = snapshot(others)
    group_step(model, images, optimisers, groups, only={"critic"})
    assert unchanged(rest, others) and not unchanged(critic, {"critic"})


def test_hyper_parameters_are_the_familys_and_the_regularisers(tiny_arch):
    spec = make_spec("vae+acai", "digits", budget=64, hparams={"advweight": 0.25, "beta": 2.0})
    assert spec.encoder == "vae+acai" and spec.hparams == {"advdepth": 0, "advweight": 0.25, "beta": 2.0, "reg": 0.2}
    assert spec.run_id.startswith("vae+acai-digits-256-b64-s0-")
    model = encoders.build_model(spec, 1)
    assert model.hp["advweight"] == 0.25 and model.hp["beta"] == 2.0
    assert model.parameter_counts()["critic"] == encoders.build_model(make_spec("acai", "digits", budget=64),
                                                                      1).parameter_counts()["critic"]
    with pytest.raises(UserError, match="'vae\\+acai' has no hyper-parameter\\(s\\) keep_prob"):
        make_spec("vae+acai", "digits", hparams={"keep_prob": 0.5})
    wide = encoders.build_model(make_spec("dropout+acai", "digits", budget=64, hparams={"advdepth": 8}), 1)
    assert wide.critic[0].out_channels == 8


@pytest.mark.slow
def test_baseline_plus_acai_trains_exactly_acai(tmp_path):
    """Same seed, same data, 8 steps through the real trainer: every weight of the model, the
    online classifier and the optimisers' states are identical, and so is the loss history."""
    from repeval import data
    from repeval.train import Trainer

    dataset = data.load("digits")
    states = {}
    for name in ("acai", "baseline+acai"):
        spec = make_spec(name, "digits", budget=8 * 64, seed=7)
        states[name] = Trainer(spec, dataset, "cpu", tmp_path / name, progress=False).run().load_state()
    acai, composed = states["acai"], states["baseline+acai"]
    assert list(acai["model"]) == list(composed["model"])
    for part in ("model", "classifier"):
        for key, value in acai[part].items():
            assert torch.equal(value, composed[part][key]), (part, key)
    for group in ("autoencoder", "critic"):
        for a, b in zip(acai["optimizers"][group]["state"].values(), composed["optimizers"][group]["state"].values()):
            assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    for key in ("mse", "loss_disc", "loss_disc_real", "loss_ae_disc", "online_accuracy"):
        assert acai["history"][key] == composed["history"][key], key


@pytest.mark.slow
def test_regularised_families_train_and_are_reported_beside_acai(tmp_path):
    """The issue's "done when": vae+acai and denoising+acai train on digits and appear in one
    report beside acai, named so everywhere, the regulariser recorded in provenance."""
    from repeval.cli import main

    runner = CliRunner()
    env = {"REPEVAL_HOME": str(tmp_path / "work")}

    def cli(*args, expect=0):
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    common = ("--task", "linear", "--dataset", "digits", "--budget", "256", "--json")
    rows = json.loads(cli("run", "--encoder", "vae", "--encoder", "denoising", "--regularizer", "acai",
                          "--hparam", "advweight=0.4", *common).stdout)
    rows += json.loads(cli("run", "--encoder", "acai", *common).stdout)
    assert {r["encoder"] for r in rows} == {"vae+acai", "denoising+acai", "acai"}
    assert {r["encoder"] for r in json.loads(cli("results", "--format", "json").stdout)} == \
        {"vae+acai", "denoising+acai", "acai"}
    provenance = {}
    for run_dir in (tmp_path / "work" / "checkpoints").iterdir():
        spec = json.loads((run_dir / "spec.json").read_text())
        provenance[spec["encoder"]] = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["vae+acai"]["regulariser"] == {
        "name": "acai", "family": "vae", "summary": encoders.REGULARISERS.get("acai").summary,
        "hparams": {"advdepth": 0, "advweight": 0.4, "reg": 0.2}}
    assert "regulariser" not in provenance["acai"]
    out = tmp_path / "report.html"
    cli("report", "--out", str(out))
    html = out.read_text()
    assert all(f'<td class="enc">{name}' in html for name in ("acai", "vae+acai", "denoising+acai"))
    listing = cli("encoders", "--dataset", "digits").output
    assert "vae+acai" in listing and "--regularizer acai" in listing
    families = {r["name"]: r for r in json.loads(cli("encoders", "--dataset", "digits", "--json").stdout)}
    assert families["vae"]["regularisers"] == ["acai"] and families["acai"]["regularisers"] == []
    assert "cannot be composed" in cli("run", "--encoder", "pixels", "--regularizer", "acai", *common,
                                       expect=2).output
