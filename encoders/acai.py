"""Adversarially Constrained Autoencoder Interpolation (``docs/protocol.md`` §2.6, §3.8, official ``acai.py``)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from encoders.base import Arch, Step, count
from encoders.layers import ConvAutoencoder, Encoder, mse


class ACAI(ConvAutoencoder):
    """A critic learns to recover the mixing coefficient of decoded latent interpolations.

    Per step (batch x): z = f(x), x̂ = g(z), L_rec = MSE(x, x̂); α ~ U(0, 1) per example,
    folded to 0.5 − |α − 0.5| ∈ [0, 0.5]; z_α = α·z + (1 − α)·z reversed along the batch;
    x̂_α = g(z_α). The critic d is an encoder stack of width ``advdepth`` (0 → the
    autoencoder's ``depth``) whose output map is averaged to one scalar per image.

    - critic loss: mean((d(x̂_α) − α)²) + mean(d(γ·x + (1 − γ)·x̂)²), γ = ``reg``;
    - autoencoder loss: L_rec + λ·mean(d(x̂_α)²), λ = ``advweight``.

    Groups ``autoencoder`` (encoder + decoder) and ``critic``; both step simultaneously
    from one forward pass. d(x̂_α) is computed once and shared by both losses: the critic's
    loss is differentiated w.r.t. the critic only, so x̂_α acts as detached for it, and the
    autoencoder's loss w.r.t. the autoencoder only (the official code's ``var_list``s).
    """

    name = "acai"
    summary = "adversarial critic on latent interpolations (lambda=0.5, gamma=0.2)"
    hparams = {"advweight": 0.5, "advdepth": 0, "reg": 0.2}
    latents = {"map": "the flattened encoder map f(x)"}

    def __init__(self, arch: Arch, **hparams):
        super().__init__(arch, **hparams)
        width = int(self.hp["advdepth"]) or arch.depth
        self.critic = Encoder(arch.colors, width, arch.scales, arch.latent_channels)

    @staticmethod
    def mixing_coefficients(x: Tensor) -> Tensor:
        """α, one per example of ``x``: u ~ U(0, 1) folded to 0.5 − |u − 0.5| ∈ [0, 0.5]."""
        u = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        return 0.5 - (u - 0.5).abs()

    def critic_score(self, images: Tensor) -> Tensor:
        """d(images): the critic's output map averaged to one float32 scalar per image."""
        return self.critic(images).float().mean(dim=(1, 2, 3))

    def training_step(self, x: Tensor) -> Step:
        z = self.encoder(x)
        alpha = self.mixing_coefficients(x)
        a = alpha.view(-1, 1, 1, 1)
        x_hat, x_mix = _paired(self.decoder, z, lambda: a * z + (1 - a) * z.flip(0))
        rec = mse(x_hat, x)
        reg = float(self.hp["reg"])
        blend = reg * x + (1 - reg) * x_hat.detach()
        score_mix, score_blend = _paired(self.critic_score, x_mix, lambda: blend)
        loss_disc = (score_mix - alpha.float()).square().mean()
        loss_disc_real = score_blend.square().mean()
        loss_ae_disc = score_mix.square().mean()
        return Step(losses={"autoencoder": rec + float(self.hp["advweight"]) * loss_ae_disc,
                            "critic": loss_disc + loss_disc_real},
                    features=z.detach().flatten(1).float(),
                    logs={"mse": rec.detach(), "loss_disc": loss_disc.detach(),
                          "loss_disc_real": loss_disc_real.detach(), "loss_ae_disc": loss_ae_disc.detach()})

    def optimizer_groups(self, lr: float) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"autoencoder": (self.autoencoder_parameters(), lr), "critic": (list(self.critic.parameters()), lr)}

    def extra_counts(self) -> dict[str, int]:
        return {"critic": count(self.critic)}


def _paired(module, a: Tensor, make_b: Callable[[], Tensor], batched: bool | None = None) -> tuple[Tensor, Tensor]:
    """``module(a), module(make_b())``. No layer mixes images, so on CUDA one pass over
    both halves gives the same values with half the kernel launches, which bound a batch-64
    GPU step (1.16× on an H200, benchmarks/RESULTS.md §6). On the CPU two passes are faster
    (batch-128 convolutions: 12 % slower there), and ``make_b`` runs after the first pass:
    autograd then accumulates gradients in the order it always did, so CPU results stay
    bit-for-bit. ``batched`` forces either way."""
    if a.is_cuda if batched is None else batched:
        first, second = module(torch.cat([a, make_b()])).chunk(2)
        return first, second
    first = module(a)
    return first, module(make_b())
