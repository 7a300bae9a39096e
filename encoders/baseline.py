"""Baseline autoencoder: reconstruction only (``docs/protocol.md`` §3.2, official ``baseline.py``)."""

from __future__ import annotations

from torch import Tensor

from encoders.base import DecoderInput, Step
from encoders.layers import ConvAutoencoder


class Baseline(ConvAutoencoder):
    """Loss = MSE(x, g(f(x))), the mean over all pixels and the batch.

    Latent ``map``: the flattened encoder map; the online classifier reads the same map.
    """

    name = "baseline"
    summary = "plain autoencoder, MSE reconstruction only"
    hparams = {}
    latents = {"map": "the flattened encoder map f(x)"}

    def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
        z = self.encoder(x)
        x_hat = self.decoder(z)
        return self.reconstruction_step(x, x_hat, z), self.decoder_input(z, x_hat)
