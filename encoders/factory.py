"""The one factory of encoder models: a run's spec → the family's module, untrained.

Every caller (the trainer, checkpoint loading, ``repeval encoders``) builds models here,
so a family is sized in one place: :meth:`encoders.base.Autoencoder.build` (the paper's
conv-map shapes; reference encoders override it).
"""

from __future__ import annotations

from typing import Any

from encoders.registry import check_kind, get


def build_model(spec: Any, example: Any):
    """The family of ``spec`` (a :class:`repeval.specs.RunSpec`) for examples of the shape
    ``example`` (a :class:`repeval.data.base.Example`, or an int: images of that many channels),
    with the architecture its dataset and latent size call for."""
    from repeval.data.base import Example

    if isinstance(example, int):
        example = Example("image", example)
    family = get(spec.encoder)
    check_kind(family, spec.dataset, example)
    extra = {} if example.kind == "image" else {"example": example}  # families from before signals take no example
    return family.build(colors=example.channels, depth=spec.depth, latent_dim=spec.latent_dim,
                        hparams=spec.hparams, **extra)
