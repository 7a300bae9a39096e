"""A small convolutional autoencoder of your own, as repeval loads it (`python:` encoders).

repeval imports this file, calls ``build()`` and loads the weights you trained into what it
returns (``--weights tiny_conv.safetensors``, strictly: the same keys and shapes). It then
calls ``encode`` on batches of (B, 1, 32, 32) images in [-1, 1] and, because ``decode``
exists too, shows reconstructions and interpolations in the report. Nothing here depends
on repeval.
"""

import torch
from torch import nn


class TinyConv(nn.Module):
    def __init__(self, latent_dim: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),   # 16 x 16 x 16
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # 32 x 8 x 8
            nn.Flatten(), nn.Linear(32 * 8 * 8, latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 32 * 8 * 8), nn.ReLU(), nn.Unflatten(1, (32, 8, 8)),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1), nn.Tanh())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def build(latent_dim: int = 32) -> TinyConv:
    """The factory repeval calls (``python:examples/own_model/tiny_conv.py:build``)."""
    return TinyConv(latent_dim)
