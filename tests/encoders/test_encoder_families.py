"""The seven learned families: losses as docs/protocol.md §3 writes them, latents, groups, training."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import encoders
from encoders.base import Arch

LEARNED = ["baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai"]
SMALL_VQ = {"z_log_size": 8}  # a 256-entry codebook keeps the CPU tests fast


def build(name: str, arch: Arch, seed: int = 0, **hparams):
    torch.manual_seed(seed)
    if name == "vqvae":
        hparams = {**SMALL_VQ, **hparams}
    return encoders.get(name)(arch, **hparams)


def test_registry_holds_the_seven_families_and_two_references():
    # name, summary and latents of every registered family: test_encoder_contract.py
    assert list(encoders.REGISTRY)[:9] == [*LEARNED, "pixels", "pca"]  # users may register more
    for name in [*LEARNED, "pixels", "pca"]:
        assert encoders.REGISTRY[name].learned == (name in LEARNED)


def test_paper_default_hyper_parameters():
    hp = {name: encoders.get(name).hparams for name in LEARNED}
    assert hp == {
        "baseline": {},
        "dropout": {"keep_prob": 0.5},
        "denoising": {"noise": 1.0},
        "vae": {"beta": 1.0},
        "aae": {"adversary_lr": 1e-4},
        "vqvae": {"z_log_size": 14, "num_latents": 10, "beta": 10.0, "decay": 0.999, "epsilon": 1e-5,
                  "filter_size": 512},
        "acai": {"advweight": 0.5, "advdepth": 0, "reg": 0.2},
    }


def test_vqvae_defaults_to_the_papers_256_dim_latent_on_lines():
    lines = SimpleNamespace(name="lines", latent_dims=(64, 256), default_latent_dim=64)
    assert encoders.get("vqvae").resolve_latent_dim(lines, None) == 256
    assert encoders.get("acai").resolve_latent_dim(lines, None) == 64


# --- losses, recomputed from docs/protocol.md §3 with the same random draws ----------------------------

def test_baseline_loss_is_the_mean_squared_error(tiny_arch, images):
    model = build("baseline", tiny_arch)
    step = model.training_step(images)
    z = model.encoder(images)
    assert torch.equal(step.losses["autoencoder"], ((model.decoder(z) - images) ** 2).mean())
    assert torch.equal(step.features, z.flatten(1).detach())


def test_dropout_keeps_half_the_latent_scaled_by_two(tiny_arch, images):
    model = build("dropout", tiny_arch)
    z = model.encoder(images).flatten(1)
    torch.manual_seed(7)
    step = model.training_step(images)
    torch.manual_seed(7)
    dropped = F.dropout(z, p=0.5, training=True)
    ratio = dropped[z != 0] / z[z != 0]
    assert set(ratio.unique().tolist()) == {0.0, 2.0}
    expected = ((model.decoder(dropped.reshape(-1, 2, 4, 4)) - images) ** 2).mean()
    assert torch.allclose(step.losses["autoencoder"], expected, rtol=0, atol=1e-7)
    assert torch.equal(step.features, z.detach())  # the classifier reads the un-dropped map


def test_denoising_reconstructs_the_clean_image_from_unclipped_noise(tiny_arch, images):
    model = build("denoising", tiny_arch)
    torch.manual_seed(7)
    step = model.training_step(images)
    torch.manual_seed(7)
    noisy = images + torch.randn(images.shape)
    assert noisy.abs().max() > 1  # no clipping back to [-1, 1]
    expected = ((model.decoder(model.encoder(noisy)) - images) ** 2).mean()
    assert torch.allclose(step.losses["autoencoder"], expected, rtol=0, atol=1e-7)
    assert torch.equal(step.features, model.encoder(images).flatten(1).detach())


def test_vae_loss_is_the_negative_elbo(tiny_arch, images):
    model = build("vae", tiny_arch)
    torch.manual_seed(7)
    step = model.training_step(images)
    torch.manual_seed(7)
    h = model.encoder(images).flatten(1)
    mu, log_var = model.mu(h), model.log_var(h)
    z = mu + torch.sqrt(torch.exp(log_var)) * torch.randn(mu.shape)
    logits = model.decoder(z.reshape(-1, 2, 4, 4))
    target = (images + 1) / 2
    nll = -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).sum() / 64
    kl = 0.5 * (-log_var - 1 + torch.exp(log_var) + mu ** 2).sum() / 64
    assert torch.allclose(step.losses["autoencoder"], nll + kl, rtol=1e-6, atol=0)
    assert torch.allclose(step.logs["loss_kl"], kl, rtol=1e-6, atol=0)
    assert torch.equal(step.features, h.detach())  # the pre-head conv map (docs/protocol.md §3.5)


def test_aae_losses_are_non_saturating_gan_losses(tiny_arch, images):
    model = build("aae", tiny_arch)
    torch.manual_seed(7)
    step = model.training_step(images)
    torch.manual_seed(7)
    z = model.encoder(images)
    prior = torch.randn(64, 32)
    p_codes = torch.sigmoid(model.discriminator(z.flatten(1)))
    p_prior = torch.sigmoid(model.discriminator(prior))
    rec = ((model.decoder(z) - images) ** 2).mean()
    expected_disc = -torch.log(1 - p_codes).mean() - torch.log(p_prior).mean()
    expected_ae = rec - torch.log(p_codes).mean()
    assert torch.allclose(step.losses["discriminator"], expected_disc, rtol=1e-6, atol=0)
    assert torch.allclose(step.losses["autoencoder"], expected_ae, rtol=1e-6, atol=0)


def test_acai_losses_follow_section_3_8(tiny_arch, images):
    model = build("acai", tiny_arch)
    torch.manual_seed(7)
    step = model.training_step(images)
    torch.manual_seed(7)
    u = torch.rand(64)
    alpha = 0.5 - (u - 0.5).abs()
    z = model.encoder(images)
    x_hat = model.decoder(z)
    a = alpha[:, None, None, None]
    x_mix = model.decoder(a * z + (1 - a) * z[torch.arange(63, -1, -1)])

    def d(v):
        return model.critic(v).mean(dim=(1, 2, 3))

    critic = ((d(x_mix) - alpha) ** 2).mean() + (d(0.2 * images + 0.8 * x_hat) ** 2).mean()
    autoencoder = ((x_hat - images) ** 2).mean() + 0.5 * (d(x_mix) ** 2).mean()
    assert torch.allclose(step.losses["critic"], critic, rtol=1e-6, atol=0)
    assert torch.allclose(step.losses["autoencoder"], autoencoder, rtol=1e-6, atol=0)


def test_acai_batched_passes_equal_separate_passes(tiny_arch, images):
    """The CUDA path runs decoder and critic once over both halves; the values must be
    those of two separate passes (no layer mixes images)."""
    from encoders.acai import _paired

    model = build("acai", tiny_arch)
    z = model.encoder(images)
    for module, a, b in ((model.decoder, z, z.flip(0)), (model.critic_score, images, -images)):
        together = _paired(module, a, lambda: b, batched=True)
        apart = _paired(module, a, lambda: b, batched=False)
        for t, s in zip(together, apart):
            assert t.shape == s.shape
            assert torch.allclose(t, s, rtol=1e-5, atol=1e-6)


def test_acai_alpha_is_folded_uniform_on_zero_to_half():
    torch.manual_seed(3)
    alpha = encoders.get("acai").mixing_coefficients(torch.zeros(10_000, 1))
    torch.manual_seed(3)
    u = torch.rand(10_000)
    assert torch.equal(alpha, torch.where(u > 0.5, 1 - u, u))
    assert alpha.min() >= 0 and alpha.max() <= 0.5


@pytest.mark.parametrize("stepped, frozen", [("autoencoder", "critic"), ("critic", "autoencoder")])
def test_acai_groups_never_move_each_other(tiny_arch, images, group_step, stepped, frozen):
    model = build("acai", tiny_arch)
    groups = model.optimizer_groups(1e-3)
    assert set(groups) == {"autoencoder", "critic"}
    assert {id(p) for p in groups["autoencoder"][0]} | {id(p) for p in groups["critic"][0]} == \
        {id(p) for p in model.parameters()}
    before = {g: [p.detach().clone() for p in params] for g, (params, _) in groups.items()}
    optimisers = {g: torch.optim.Adam(params, lr=lr) for g, (params, lr) in groups.items()}
    group_step(model, images, optimisers, groups, only={stepped})
    assert all(torch.equal(p, q) for p, q in zip(groups[frozen][0], before[frozen]))
    assert all(not torch.equal(p, q) for p, q in zip(groups[stepped][0], before[stepped]))


def test_aae_groups_and_discriminator_learning_rate(tiny_arch):
    model = build("aae", tiny_arch, adversary_lr=3e-4)
    groups = model.optimizer_groups(1e-3)
    assert groups["autoencoder"][1] == 1e-3 and groups["discriminator"][1] == 3e-4
    assert len(groups["discriminator"][0]) == 6  # three dense layers


# --- VQ-VAE bottleneck on hand-made codes ----------------------------------------------------

def hand_made_codebook(tiny_arch):
    model = build("vqvae", tiny_arch, z_log_size=2, decay=0.5, epsilon=0.1)
    e0, e1 = torch.eye(32)[0], torch.eye(32)[1]
    codebook = torch.stack([torch.zeros(32), e0, 2 * e1, -e0])
    model.codebook.copy_(codebook)
    model.ema_means.copy_(codebook)
    return model, e0, e1


def test_vqvae_codebook_starts_as_the_official_initialiser(tiny_arch):
    model = build("vqvae", tiny_arch, z_log_size=14)
    bound = math.sqrt(3 / 2 ** 14)
    assert model.codebook.shape == (2 ** 14, 32)
    assert model.codebook.abs().max() <= bound and model.codebook.abs().max() > 0.99 * bound
    assert torch.equal(model.ema_means, model.codebook) and not model.ema_count.any()
    assert "codebook" not in dict(model.named_parameters()) and "codebook" in model.state_dict()


def test_vqvae_snaps_to_the_nearest_code_and_updates_by_ema(tiny_arch):
    model, e0, e1 = hand_made_codebook(tiny_arch)
    z_e = torch.stack([0.9 * e0, 1.2 * e1, -0.4 * e0, -2 * e0, 1.1 * e0])
    idx = model.nearest(z_e)
    assert idx.tolist() == [1, 2, 0, 3, 1]
    counts = model.update_codebook(z_e, idx)
    assert counts.tolist() == [1, 2, 1, 1]
    assert model.ema_count.tolist() == [0.5, 1.0, 0.5, 0.5]
    # ema_means = 0.5·initial + 0.5·(sum of assigned z_e); smoothed counts = (c + 0.1)/(2.5 + 4·0.1)·2.5
    smoothed = [(c + 0.1) / 2.9 * 2.5 for c in (0.5, 1.0, 0.5, 0.5)]
    expected = torch.stack([-0.2 * e0 / smoothed[0], 1.5 * e0 / smoothed[1], 1.6 * e1 / smoothed[2],
                            -1.5 * e0 / smoothed[3]])
    assert torch.allclose(model.codebook, expected, rtol=1e-6, atol=0)


def test_vqvae_quantized_latent_is_made_of_codebook_rows(tiny_arch, images):
    model = build("vqvae", tiny_arch).eval()
    q = model.encode(images, "quantized")
    assert q.shape == (64, 10 * 32)
    rows = q.reshape(-1, 32)
    assert torch.equal(rows, model.codebook[model.nearest(rows)])
    assert torch.equal(model.decode(q, "quantized"), model.decode(model.encode(images, "continuous"), "continuous"))


def test_vqvae_training_step_is_straight_through_with_commitment(tiny_arch, images):
    model = build("vqvae", tiny_arch)
    codebook = model.codebook.clone()
    step = model.training_step(images)
    h = model.encoder(images).flatten(1)
    z_e = model.project(h).reshape(-1, 32)
    z_q = codebook[torch.cdist(z_e, codebook).argmin(1)]
    dense_out = model.out(F.relu(model.hidden(F.relu(z_q.reshape(64, -1)))))
    rec = ((model.decoder(dense_out.reshape(-1, 2, 4, 4)) - images) ** 2).mean()
    expected = rec + 10 * ((z_e - z_q) ** 2).mean()
    assert torch.allclose(step.losses["autoencoder"], expected, rtol=1e-5, atol=0)
    assert torch.allclose(step.features, dense_out.detach(), rtol=1e-5, atol=1e-7)
    assert not torch.equal(model.codebook, codebook)  # the EMA step moved the used codes
    grad = torch.autograd.grad(step.losses["autoencoder"], model.project.weight)[0]
    assert grad.abs().sum() > 0  # the gradient passes the quantiser


# --- latents ----------------------------------------------------------------------------------

EXPECTED_DIMS = {"baseline": {"map": 32}, "dropout": {"map": 32}, "denoising": {"map": 32},
                 "vae": {"mean": 32, "sample": 32}, "aae": {"map": 32},
                 "vqvae": {"continuous": 32, "quantized": 320}, "acai": {"map": 32}}


@pytest.mark.parametrize("name", LEARNED)
def test_latent_choices_and_their_sizes(tiny_arch, images, name):
    """The paper's latents per family; that every latent encodes to (B, latent_dim) float32,
    decodes to images and that an unknown one is rejected: test_encoder_contract.py."""
    model = build(name, tiny_arch).eval()
    assert list(model.latents) == list(EXPECTED_DIMS[name])
    x = images[:5]
    for latent, dim in EXPECTED_DIMS[name].items():
        assert model.latent_dim(latent) == dim
        assert model.encode(x, latent).shape == (5, dim)


def test_vae_mean_is_deterministic_and_sample_is_not(tiny_arch, images):
    model = build("vae", tiny_arch).eval()
    assert torch.equal(model.encode(images, "mean"), model.encode(images, "mean"))
    assert not torch.equal(model.encode(images, "sample"), model.encode(images, "sample"))
    assert model.default_latent() == "mean"
    decoded = model.decode(model.encode(images))
    assert decoded.min() >= -1 and decoded.max() <= 1


@pytest.mark.parametrize("name", ["dropout", "denoising"])
def test_dropout_and_denoising_encode_is_deterministic(tiny_arch, images, name):
    model = build(name, tiny_arch).eval()
    assert torch.equal(model.encode(images), model.encode(images))
    assert torch.equal(model.encode(images), model.encoder(images).flatten(1))


# state_dict round trips and bf16 training steps of every family: test_encoder_contract.py


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNED)
def test_short_training_lowers_the_reconstruction_error(tiny_arch, images, train, name):
    model = build(name, tiny_arch)
    x = images[:32]

    def reconstruction_error() -> float:
        model.eval()
        with torch.no_grad():
            return float(((model.decode(model.encode(x)) - x) ** 2).mean())

    before = reconstruction_error()
    train(model, x, steps=20, lr=3e-3)
    after = reconstruction_error()
    assert after < 0.7 * before, (before, after)
