"""The one factory of encoder models: a run's spec → the family's module, untrained.

Every caller (the trainer, checkpoint loading, ``repeval encoders``) builds models here,
so a family is sized in one place: :meth:`encoders.base.Autoencoder.build` (the paper's
conv-map shapes; reference encoders override it).
"""

from __future__ import annotations

from typing import Any

from encoders.registry import get


def build_model(spec: Any, colors: int):
    """The family of ``spec`` (a :class:`repeval.specs.RunSpec`) for images of ``colors``
    channels, with the architecture its dataset and latent size call for."""
    return get(spec.encoder).build(colors=colors, depth=spec.depth, latent_dim=spec.latent_dim,
                                   hparams=spec.hparams)
