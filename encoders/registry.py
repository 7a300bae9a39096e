"""The encoder registry: name users type (``--encoder acai``) → family class.

Register your own family without editing repeval::

    from encoders import Autoencoder, register

    @register
    class MyAE(Autoencoder):
        name = "myae"
        ...

or ship it as a plugin (entry-point group ``repeval.encoders``, see :mod:`repeval.plugins`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from repeval.registry import Registry

if TYPE_CHECKING:
    from encoders.base import Autoencoder

REGISTRY: Registry[type[Autoencoder]] = Registry(
    "encoder", "repeval.encoders", "`repeval encoders` lists them with their parameter counts.")


def register(cls: type[Autoencoder]) -> type[Autoencoder]:
    """Class decorator: add a family to :data:`REGISTRY` under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__qualname__} needs a class attribute `name`")
    return REGISTRY.register(cls)


def get(name: str) -> type[Autoencoder]:
    """The family called ``name``; a UserError listing the known families otherwise."""
    return REGISTRY.get(name)
