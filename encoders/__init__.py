"""The encoder families and their registry.

:data:`REGISTRY` maps a name users type (``--encoder acai``) to its class
(:mod:`encoders.registry`); :func:`build_model` is the one factory (:mod:`encoders.factory`).
Importing this package registers the built-ins, in the paper's order (which tables and
listings follow): the learned families ``baseline dropout denoising vae aae vqvae acai``,
then the reference encoders ``pixels pca``. Outside families register with
:func:`register` or as plugins (:mod:`repeval.plugins`).
"""

from __future__ import annotations

# registration order = the paper's order: keep these unsorted (isort off, or ruff sorts them)
# isort: off
from encoders import baseline, dropout, denoising, vae, aae, vqvae, acai, reference  # noqa: F401
# isort: on
from encoders.base import Arch, Autoencoder, Step  # noqa: F401  (public API)
from encoders.factory import build_model  # noqa: F401  (public API)
from encoders.registry import REGISTRY, get, register  # noqa: F401  (public API)
