"""Adversarially Constrained Autoencoder Interpolation (``docs/protocol.md`` §2.6, §3.8, official ``acai.py``).

Two things live here: the ``acai`` family (the paper's model) and the ``acai`` regulariser
(:class:`AcaiRegulariser`), the same critic and interpolation loss added to any composable
family (``vae+acai``, ``docs/protocol.md`` §8). Both compute the critic's losses with
:func:`critic_losses`; ``baseline+acai`` trains exactly the computation of ``acai`` (on a
CPU, bit for bit).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from encoders.base import Arch, Autoencoder, DecoderInput, Step, count
from encoders.layers import ConvAutoencoder, Encoder
from encoders.registry import register_regulariser
from encoders.regularisers import Regulariser
from repeval.ranges import NON_NEGATIVE, NON_NEGATIVE_INT, Float

HPARAM_RANGES = {"advweight": NON_NEGATIVE.means("lambda, the weight of the critic term in the autoencoder's loss"),
                 "advdepth": NON_NEGATIVE_INT.means("the critic's first-layer width; 0 = the autoencoder's"),
                 "reg": Float(0, 1).means("gamma, how the critic's regulariser mixes x with its reconstruction")}


class ACAI(ConvAutoencoder):
    """A critic learns to recover the mixing coefficient of decoded latent interpolations.

    Per step (batch x): z = f(x), x̂ = g(z), L_rec = MSE(x, x̂); α ~ U(0, 1) per example,
    folded to 0.5 − |α − 0.5| ∈ [0, 0.5]; z_α = α·z + (1 − α)·z reversed along the batch;
    x̂_α = g(z_α). The critic d is an encoder stack of width ``advdepth`` (0 → the
    autoencoder's ``depth``) whose output map is averaged to one scalar per image.

    - critic loss: mean((d(x̂_α) − α)²) + mean(d(γ·x + (1 − γ)·x̂)²), γ = ``reg``;
    - autoencoder loss: L_rec + λ·mean(d(x̂_α)²), λ = ``advweight``.

    On token sequences L_rec is the per-position cross-entropy and the critic reads
    probabilities, never logits: x̂ and x̂_α are the decoder's softmax, so the blend
    γ·x + (1 − γ)·x̂ of the one-hot input and the reconstruction stays on the simplex.

    Groups ``autoencoder`` (encoder + decoder) and ``critic``; both step simultaneously
    from one forward pass. d(x̂_α) is computed once and shared by both losses: the critic's
    loss is differentiated w.r.t. the critic only, so x̂_α acts as detached for it, and the
    autoencoder's loss w.r.t. the autoencoder only (the official code's ``var_list``s).
    """

    name = "acai"
    summary = "adversarial critic on latent interpolations (lambda=0.5, gamma=0.2)"
    hparams = {"advweight": 0.5, "advdepth": 0, "reg": 0.2}
    hparam_ranges = HPARAM_RANGES
    latents = {"map": "the flattened encoder map f(x)"}

    def __init__(self, arch: Arch, **hparams):
        super().__init__(arch, **hparams)
        self.critic = make_critic(arch, self.hp)

    @staticmethod
    def mixing_coefficients(x: Tensor) -> Tensor:
        """α, one per example of ``x``: u ~ U(0, 1) folded to 0.5 − |u − 0.5| ∈ [0, 0.5]."""
        u = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        return 0.5 - (u - 0.5).abs()

    def critic_score(self, images: Tensor) -> Tensor:
        """d(images): the critic's output map averaged to one float32 scalar per image."""
        return critic_score(self.critic, images)

    def training_step(self, x: Tensor) -> Step:
        z = self.encoder(x)
        alpha = self.mixing_coefficients(x)
        a = alpha.view(-1, *(1,) * (x.dim() - 1))
        x_hat, x_mix = _paired(self.decoder, z, lambda: a * z + (1 - a) * z.flip(0))
        rec = self.reconstruction_loss(x_hat, x)
        critic, logs = critic_losses(self.critic, self.hp, x, self.output(x_hat), self.output(x_mix), alpha)
        return Step(losses={"autoencoder": rec + float(self.hp["advweight"]) * logs["loss_ae_disc"], "critic": critic},
                    features=z.detach().flatten(1).float(),
                    logs={self.reconstruction_name: rec.detach(), **_detached(logs)})

    def optimizer_groups(self, lr: float) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"autoencoder": (self.autoencoder_parameters(), lr), "critic": (list(self.critic.parameters()), lr)}

    def extra_counts(self) -> dict[str, int]:
        return {"critic": count(self.critic)}


def make_critic(arch: Arch, hp: dict) -> Encoder:
    """The critic d: the encoder stack (``docs/protocol.md`` §2.6) of first width ``advdepth``
    (0: the autoencoder's ``depth``), ending in the latent map's channels."""
    width = int(hp["advdepth"]) or arch.depth
    return Encoder(arch.colors, width, arch.scales, arch.latent_channels, arch.spatial)


def critic_score(critic: nn.Module, images: Tensor) -> Tensor:
    """d(images): the critic's output map averaged to one float32 scalar per example."""
    out = critic(images).float()
    return out.mean(dim=tuple(range(1, out.dim())))  # (1, 2, 3) on images: their rounding as before signals


def critic_losses(critic: nn.Module, hp: dict, x: Tensor, x_hat: Tensor, x_mix: Tensor,
                  alpha: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """ACAI's critic terms for images ``x``, their reconstructions ``x_hat`` and the decoded
    interpolants ``x_mix`` of mixing coefficients ``alpha`` (``docs/protocol.md`` §3.8).

    Returns the critic group's loss, mean((d(x̂_α) − α)²) + mean(d(γ·x + (1 − γ)·x̂)²), and
    the terms by name: ``loss_disc``, ``loss_disc_real`` and ``loss_ae_disc`` = mean(d(x̂_α)²),
    which the autoencoder's loss adds with weight λ = ``advweight``. d(x̂_α) is computed once
    and shared: each group's loss is differentiated w.r.t. its own parameters only."""
    reg = float(hp["reg"])
    blend = reg * x + (1 - reg) * x_hat.detach()
    score_mix, score_blend = _paired(lambda images: critic_score(critic, images), x_mix, lambda: blend)
    loss_disc = (score_mix - alpha.float()).square().mean()
    loss_disc_real = score_blend.square().mean()
    loss_ae_disc = score_mix.square().mean()
    return loss_disc + loss_disc_real, {"loss_disc": loss_disc, "loss_disc_real": loss_disc_real,
                                        "loss_ae_disc": loss_ae_disc}


def _detached(logs: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in logs.items()}


class AcaiRegulariser(Regulariser):
    """ACAI's critic and interpolation loss on any composable family (``FAMILY+acai``).

    Per step, after the family's own pass: α ~ U(0, 1) folded to [0, 0.5] per example; the
    latent the family's decoder read, z (:class:`encoders.base.DecoderInput`; the VAE's
    sample, the dropped-out latent, the noisy input's code, the VQ-VAE's dense output), is
    mixed with the batch reversed, z_α = α·z + (1 − α)·z_reversed, and decoded the way the
    family decodes in training; the critic (:func:`make_critic`, its own optimiser group
    ``critic``) and the terms of :func:`critic_losses` follow ACAI exactly, the blend using
    the family's reconstruction. The family's ``autoencoder`` loss gains λ·mean(d(x̂_α)²);
    its other groups (the AAE's discriminator) are unchanged. Hyper-parameters: λ
    ``advweight``, γ ``reg``, critic width ``advdepth``, defaults as ACAI's.
    """

    name = "acai"
    summary = "ACAI's critic on decoded latent interpolations (lambda=0.5, gamma=0.2)"
    hparams = dict(ACAI.hparams)
    hparam_ranges = HPARAM_RANGES
    modules = ("critic",)

    def attach(self, model: Autoencoder) -> None:
        model.critic = make_critic(model.arch, model.hp)

    def apply(self, model: Autoencoder, x: Tensor, step: Step, view: DecoderInput) -> Step:
        if "autoencoder" not in step.losses:
            raise ValueError(f"{model.name}: the acai regulariser adds to the 'autoencoder' loss group, "
                             f"which this family does not have (it has {sorted(step.losses)})")
        z = view.z
        alpha = ACAI.mixing_coefficients(x)
        a = alpha.view(-1, *(1,) * (z.dim() - 1))
        x_mix = view.decode(a * z + (1 - a) * z.flip(0))
        critic, terms = critic_losses(model.critic, model.hp, x, view.x_hat, x_mix, alpha)
        losses = dict(step.losses)
        losses["autoencoder"] = losses["autoencoder"] + float(model.hp["advweight"]) * terms["loss_ae_disc"]
        losses["critic"] = critic
        return Step(losses=losses, features=step.features, logs={**step.logs, **_detached(terms)})

    def groups(self, model: Autoencoder, lr: float) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"critic": (list(model.critic.parameters()), lr)}


register_regulariser(AcaiRegulariser())


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
