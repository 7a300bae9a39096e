"""The encoder families and their registry.

:data:`REGISTRY` maps a name users type (``--encoder acai``) to its class
(:mod:`encoders.registry`); :func:`build_model` is the one factory (:mod:`encoders.factory`).
Importing this package registers the built-ins, in the paper's order (which tables and
listings follow): the learned families ``baseline dropout denoising vae aae vqvae acai``,
then the reference encoders ``pixels pca``. Outside families register with
:func:`register` (a class decorator) or as plugins (:mod:`repeval.plugins`). Composed names
``FAMILY+REGULARISER`` (:mod:`encoders.regularisers`; ``acai`` from :mod:`encoders.acai`)
and the prefixes ``python:`` and ``latents:`` (:mod:`encoders.external`) resolve without
registration.
"""

from __future__ import annotations

from encoders import aae, acai, baseline, denoising, dropout, external, reference, vae, vqvae
from encoders.base import Arch, Autoencoder, Step  # noqa: F401  (public API)
from encoders.factory import build_model  # noqa: F401  (public API)
from encoders.registry import REGISTRY, REGULARISERS, get, register, register_regulariser  # noqa: F401  (public API)
from encoders.regularisers import Regulariser  # noqa: F401  (public API)

for _family in (baseline.Baseline, dropout.Dropout, denoising.Denoising, vae.VAE, aae.AAE, vqvae.VQVAE, acai.ACAI,
                reference.Pixels, reference.PCA):
    register(_family)

# encoders from outside repeval (encoders/external.py): resolved from the name, never registered
REGISTRY.add_prefix("python", external.python_source, external.PYTHON_USAGE)
REGISTRY.add_prefix("latents", external.latents_source, external.LATENTS_USAGE)
