"""Variational autoencoder (``docs/protocol.md`` §3.5, official ``vae.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from encoders.base import Arch, DecoderInput, Step, count
from encoders.layers import ConvAutoencoder, dense, full_precision
from repeval.ranges import NON_NEGATIVE


class VAE(ConvAutoencoder):
    """Gaussian posterior from two dense heads on the encoder map, Bernoulli decoder.

    The flattened encoder map h (size D) feeds two D→D dense heads, μ and log σ²;
    z = μ + σ·ε; the decoder's output are Bernoulli logits. Loss = −ELBO:
    sigmoid cross-entropy of the logits against (x + 1)/2, summed over pixels, plus
    ``beta``·KL(q(z|x) ‖ N(0, I)) summed over dimensions, both averaged over the batch.
    Images are 2·sigmoid(logits) − 1. On token sequences the likelihood is categorical: the
    decoder's logits at each position go through a softmax, the reconstruction term is the
    cross-entropy against the one-hot input summed over positions, and decoded examples are
    the softmax probabilities.

    Latents: ``mean`` (μ, deterministic) and ``sample`` (a fresh reparameterised sample
    on every call: the official ``ops.encode`` that the paper's clustering and interpolation
    used). The online classifier reads h, the conv map before the heads, as the official
    code does.

    With a latent regulariser (``vae+acai``, ``docs/protocol.md`` §8) the interpolated latent
    is the one the decoder reads in training: the reparameterised sample z = μ + σ·ε of each
    image (not μ), and an interpolant is decoded as the Bernoulli mean 2·sigmoid(logits) − 1,
    the image the critic then scores.
    """

    name = "vae"
    summary = "variational autoencoder, Bernoulli likelihood, beta=1"
    hparams = {"beta": 1.0}
    hparam_ranges = {"beta": NON_NEGATIVE.means("the weight of the KL term")}
    latents = {"mean": "the posterior mean mu",
               "sample": "a random posterior sample mu + sigma*eps (the official code's latent)"}

    def __init__(self, arch: Arch, **hparams):
        super().__init__(arch, **hparams)
        self.mu = dense(arch.latent_dim, arch.latent_dim)
        self.log_var = dense(arch.latent_dim, arch.latent_dim)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(h, μ, log σ²): the flattened conv map and the two heads, the heads in float32."""
        h = self.encoder(x).flatten(1)
        with full_precision(x.device):
            return h, self.mu(h.float()), self.log_var(h.float())

    @staticmethod
    def sample(mu: Tensor, log_var: Tensor) -> Tensor:
        return mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, device=mu.device, dtype=mu.dtype)

    def encode(self, x: Tensor, latent: str | None = None) -> Tensor:
        latent = self.check_latent(latent)
        _, mu, log_var = self.posterior(x)
        return mu if latent == "mean" else self.sample(mu, log_var)

    def decode(self, z: Tensor, latent: str | None = None) -> Tensor:
        self.check_latent(latent)
        return self.mean(self.decoder(self.to_map(z)).float())

    def mean(self, logits: Tensor) -> Tensor:
        """The likelihood's mean as an example: 2·sigmoid − 1 (Bernoulli), or the softmax over
        the symbols on token sequences (categorical)."""
        return self.output(logits) if self.arch.tokens else 2.0 * torch.sigmoid(logits) - 1.0

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(x).flatten(1).float()

    def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
        h, mu, log_var = self.posterior(x)
        z = self.sample(mu, log_var)
        logits = self.decoder(self.to_map(z)).float()
        batch = x.shape[0]
        with full_precision(x.device):
            if self.arch.tokens:
                nll = F.cross_entropy(logits, x.argmax(dim=1), reduction="sum") / batch
            else:
                nll = F.binary_cross_entropy_with_logits(logits, 0.5 * (x.float() + 1.0), reduction="sum") / batch
            kl = 0.5 * (-log_var - 1.0 + log_var.exp() + mu.square()).sum() / batch
            loss = nll + float(self.hp["beta"]) * kl
            x_hat = self.mean(logits.detach())
            rec = (F.cross_entropy(logits.detach(), x.argmax(dim=1)) if self.arch.tokens
                   else F.mse_loss(x_hat, x.float()))
        step = Step(losses={"autoencoder": loss}, features=h.detach().float(),
                    logs={self.reconstruction_name: rec, "loss_kl": kl.detach(), "loss_ll": -nll.detach(),
                          "elbo": -loss.detach()})
        return step, DecoderInput(z=z, x_hat=x_hat, decode=lambda code: self.decode(code))

    def extra_counts(self) -> dict[str, int]:
        return {"heads": count(self.mu) + count(self.log_var)}
