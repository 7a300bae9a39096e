"""The encoder families and their registry.

``REGISTRY`` maps a name users type (``--encoder acai``) to its class. Register your own
family without editing repeval::

    from encoders import Autoencoder, register

    @register
    class MyAE(Autoencoder):
        name = "myae"
        ...

Learned families: ``baseline dropout denoising vae aae vqvae acai`` (the ACAI paper's
seven). Reference (non-learned) encoders: ``pixels pca``.
"""

from __future__ import annotations

from encoders.base import Arch, Autoencoder, Step  # noqa: F401  (public API)

REGISTRY: dict[str, type[Autoencoder]] = {}


def register(cls: type[Autoencoder]) -> type[Autoencoder]:
    """Class decorator: add a family to :data:`REGISTRY` under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__qualname__} needs a class attribute `name`")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"encoder {cls.name!r} is already registered by {REGISTRY[cls.name].__qualname__}")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Autoencoder]:
    from repeval.errors import UserError

    if name not in REGISTRY:
        raise UserError(f"Unknown encoder {name!r}. Known encoders: {', '.join(REGISTRY)}. "
                        "`repeval encoders` lists them with their parameter counts.")
    return REGISTRY[name]


def _register_builtins() -> None:
    import importlib

    for module in ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai", "reference"):
        importlib.import_module(f"encoders.{module}")


_register_builtins()
