"""Denoising autoencoder (``docs/protocol.md`` §3.4, official ``denoising.py``)."""

from __future__ import annotations

import torch
from torch import Tensor

from encoders.base import DecoderInput, Step
from encoders.layers import ConvAutoencoder
from repeval.ranges import NON_NEGATIVE


class Denoising(ConvAutoencoder):
    """Loss = MSE(x, g(f(x̃))) with x̃ = x + N(0, ``noise``²) in the [-1, 1] scale, unclipped.

    Encoding and the online classifier use the clean input, as the official code (whose
    classifier reads f(x), an extra encoder pass without gradient here). A latent regulariser
    (``denoising+acai``) interpolates f(x̃), the code of the noisy input that the decoder read.
    """

    name = "denoising"
    summary = "reconstructs x from x + N(0, 1) noise"
    hparams = {"noise": 1.0}
    hparam_ranges = {"noise": NON_NEGATIVE.means("the standard deviation of the input noise, in the [-1, 1] scale")}
    latents = {"map": "the flattened encoder map of the clean input f(x)"}

    def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
        noisy = x + float(self.hp["noise"]) * torch.randn(x.shape, device=x.device, dtype=x.dtype)
        z_noisy = self.encoder(noisy)
        x_hat = self.decoder(z_noisy)
        with torch.no_grad():
            clean = self.encoder(x)
        return self.reconstruction_step(x, x_hat, clean), self.decoder_input(z_noisy, x_hat)
