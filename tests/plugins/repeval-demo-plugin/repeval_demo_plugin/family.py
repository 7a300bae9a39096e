"""An MLP autoencoder: flattened image -> hidden -> latent -> hidden -> image."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from encoders import Arch, Autoencoder, Step
from repeval.ranges import POSITIVE_INT

HIDDEN = 64


class MLPAutoencoder(Autoencoder):
    name = "mlpae"
    summary = "two-layer MLP autoencoder (a plugin)"
    hparams = {"hidden": HIDDEN}
    hparam_ranges = {"hidden": POSITIVE_INT.means("the width of the hidden layers")}
    latents = {"code": "the bottleneck activations"}

    @classmethod
    def build(cls, colors, depth, latent_dim, hparams):
        return cls(Arch(colors, depth, 1, latent_dim), **hparams)

    @classmethod
    def resolve_latent_dim(cls, dataset, requested):
        return requested or 16

    def __init__(self, arch, **hparams):
        super().__init__(arch, **hparams)
        pixels, hidden = arch.colors * 32 * 32, int(self.hp["hidden"])
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, arch.latent_dim))
        self.dec = nn.Sequential(nn.Linear(arch.latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def encode(self, x, latent=None):
        self.check_latent(latent)
        return self.enc(x).float()

    def decode(self, z, latent=None):
        self.check_latent(latent)
        return self.dec(z).reshape(z.shape[0], self.arch.colors, 32, 32).float()

    def training_step(self, x):
        z = self.enc(x)
        loss = F.mse_loss(self.dec(z).reshape(x.shape).float(), x.float())
        return Step(losses={"autoencoder": loss}, features=z.detach().float(), logs={"mse": loss.detach()})

    def parameter_counts(self):
        return {"encoder": sum(p.numel() for p in self.enc.parameters()),
                "decoder": sum(p.numel() for p in self.dec.parameters())}
