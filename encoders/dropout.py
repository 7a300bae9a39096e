"""Dropout autoencoder (``docs/protocol.md`` §3.3, official ``dropout.py``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from encoders.base import DecoderInput, Step
from encoders.layers import ConvAutoencoder
from repeval.ranges import PROBABILITY


class Dropout(ConvAutoencoder):
    """During training only, the flattened latent goes through dropout before decoding.

    Each latent unit is kept with probability ``keep_prob`` (the official flag ``dropout``,
    default 0.5) and survivors are scaled by 1/``keep_prob`` (``tf.nn.dropout``); loss =
    MSE(x, g(dropout(f(x)))). Encoding, decoding and the online classifier use the
    un-dropped map. The paper's CIFAR-10 table row used ``keep_prob=0.75`` (``docs/protocol.md`` §3.3).
    A latent regulariser (``dropout+acai``) interpolates the dropped latent the decoder read.
    """

    name = "dropout"
    summary = "latent dropout during training (keep probability 0.5)"
    hparams = {"keep_prob": 0.5}
    hparam_ranges = {"keep_prob": PROBABILITY.means("the probability of keeping a latent unit in training")}
    latents = {"map": "the flattened, un-dropped encoder map f(x)"}

    def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
        z = self.encoder(x)
        dropped = F.dropout(z.flatten(1), p=1.0 - float(self.hp["keep_prob"]), training=True)
        x_hat = self.decoder(self.to_map(dropped))
        return self.reconstruction_step(x, x_hat, z), self.decoder_input(dropped, x_hat)
