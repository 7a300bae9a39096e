"""Adversarial autoencoder (``docs/protocol.md`` §3.6, official ``aae.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import Arch, DecoderInput, Step, count
from encoders.layers import ConvAutoencoder, dense, lrelu
from repeval.ranges import POSITIVE

DISC_LAYERS = (100, 100)  # the official flag disc_layer_sizes='100,100'


class AAE(ConvAutoencoder):
    """A latent discriminator pushes the codes towards the prior N(0, I).

    Discriminator (on the flattened map): dense 100 → leaky ReLU → dense 100 → leaky ReLU →
    dense 1 logit, Glorot init. Non-saturating GAN losses with sigmoid cross-entropy:
    discriminator = BCE(codes → 0) + BCE(prior samples → 1); autoencoder = MSE +
    BCE(codes → 1). Two optimiser groups, ``autoencoder`` (learning rate ``lr``) and
    ``discriminator`` (``adversary_lr``), stepped simultaneously from one forward pass; the
    losses share a graph, each is differentiated w.r.t. its own group only.
    """

    name = "aae"
    summary = "adversarial autoencoder, N(0, I) prior on the latent map"
    hparams = {"adversary_lr": 1e-4}
    hparam_ranges = {"adversary_lr": POSITIVE.means("the discriminator's Adam learning rate")}
    latents = {"map": "the flattened encoder map f(x)"}

    def __init__(self, arch: Arch, **hparams):
        super().__init__(arch, **hparams)
        layers: list[nn.Module] = []
        n_in = arch.latent_dim
        for size in DISC_LAYERS:
            layers += [dense(n_in, size), lrelu()]
            n_in = size
        self.discriminator = nn.Sequential(*layers, dense(n_in, 1))

    def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
        z = self.encoder(x)
        x_hat = self.decoder(z)
        rec = self.reconstruction_loss(x_hat, x)
        codes = z.flatten(1)
        prior = torch.randn(codes.shape, device=x.device, dtype=x.dtype)
        logit_codes = self.discriminator(codes).float()
        logit_prior = self.discriminator(prior).float()
        loss_codes = F.binary_cross_entropy_with_logits(logit_codes, torch.zeros_like(logit_codes))
        loss_prior = F.binary_cross_entropy_with_logits(logit_prior, torch.ones_like(logit_prior))
        loss_ae_codes = F.binary_cross_entropy_with_logits(logit_codes, torch.ones_like(logit_codes))
        accuracy = ((logit_codes <= 0).float().mean() + (logit_prior > 0).float().mean()) / 2
        return Step(losses={"autoencoder": rec + loss_ae_codes, "discriminator": loss_codes + loss_prior},
                    features=codes.detach().float(),
                    logs={self.reconstruction_name: rec.detach(), "loss_adv_latent": loss_codes.detach(),
                          "loss_adv_prior": loss_prior.detach(), "loss_ae_latent": loss_ae_codes.detach(),
                          "adversary_accuracy": accuracy.detach()}), self.decoder_input(z, x_hat)

    def optimizer_groups(self, lr: float) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"autoencoder": (self.autoencoder_parameters(), lr),
                "discriminator": (list(self.discriminator.parameters()), float(self.hp["adversary_lr"]))}

    def extra_counts(self) -> dict[str, int]:
        return {"discriminator": count(self.discriminator)}
