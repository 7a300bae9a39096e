"""The encoder registry: name users type (``--encoder acai``) → family class.

Register your own family without editing repeval::

    from encoders import Autoencoder, register

    @register
    class MyAE(Autoencoder):
        name = "myae"
        ...

or ship it as a plugin (entry-point group ``repeval.encoders``, see :mod:`repeval.plugins`).

Besides registered names, :data:`REGISTRY` resolves composed names ``FAMILY+REGULARISER``
(``vae+acai``: a registered family with a regulariser of :data:`REGULARISERS` added,
:mod:`encoders.regularisers`) and prefixed names for encoders from outside repeval
(``latents:FILE.npz``, ``python:MODULE:FACTORY``; :mod:`encoders.external`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from repeval.errors import UserError
from repeval.registry import Registry

if TYPE_CHECKING:
    from encoders.base import Autoencoder
    from encoders.regularisers import Regulariser

COMPOSE = "+"  # FAMILY+REGULARISER


class FamilyRegistry(Registry):
    """A :class:`repeval.registry.Registry` of families that also resolves ``FAMILY+REGULARISER``.

    A composed family is built on first use (:func:`encoders.regularisers.compose`) and kept,
    so a name always gives the same class. Composed families are not listed by
    :meth:`names` (``--encoder all`` means the registered families); :meth:`composed_names`
    lists the compositions the registries allow. They sort after every registered family,
    in their family's order.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._composed: dict[str, type] = {}

    @staticmethod
    def _split(name: str) -> tuple[str, str] | None:
        prefix, colon, _ = name.partition(":")
        if colon and COMPOSE not in prefix:  # a prefixed name (python:path/a+b.py:f) is not a composition
            return None
        base, plus, reg = name.rpartition(COMPOSE)
        return (base, reg) if plus and base and reg else None

    def get(self, name: str):
        parts = self._split(name)
        if parts is None:
            return super().get(name)
        if name not in self._composed:
            from encoders.regularisers import compose, compose_error

            base, reg_name = parts
            family = self.get(base)
            regulariser = REGULARISERS.get(reg_name)
            problem = compose_error(family, regulariser)
            if problem is not None:
                able = ", ".join(self.composable_with(regulariser)) or "none"
                raise UserError(f"Encoder {name!r} cannot be composed: {problem}. The families {reg_name!r} "
                                f"composes with: {able}.")
            self._composed[name] = compose(family, regulariser)
        return self._composed[name]

    def source(self, name: str) -> str:
        parts = self._split(name)
        if parts is None:
            return super().source(name)
        base, reg_name = parts
        return f"{self.source(base)} + regulariser {reg_name} ({REGULARISERS.source(reg_name)})"

    def index(self, name: str) -> int:
        """Registration order; composed families after every registered one (in their family's
        order), then names registered nowhere (encoders from outside repeval, old plugins)."""
        parts = self._split(name)
        if parts is None:
            found = super().index(name)
            return found if found < len(self.names()) else 2 * len(self.names())
        return len(self.names()) + self.index(parts[0])

    def unknown_message(self, name: str) -> str:
        message = super().unknown_message(name)
        regs = ", ".join(REGULARISERS.names())
        if regs:
            message += (f" A family with a latent regulariser is FAMILY{COMPOSE}REGULARISER (e.g. "
                        f"baseline{COMPOSE}{REGULARISERS.names()[0]}; regularisers: {regs}).")
        return message

    def composable_with(self, regulariser: Regulariser) -> list[str]:
        """The registered families ``regulariser`` composes with, in registration order."""
        from encoders.regularisers import compose_error

        return [n for n, family in self.items() if compose_error(family, regulariser) is None]

    def composed_names(self) -> list[str]:
        """Every ``FAMILY+REGULARISER`` the registries allow (families in order, then regularisers)."""
        return [f"{family}{COMPOSE}{reg}" for reg, regulariser in REGULARISERS.items()
                for family in self.composable_with(regulariser)]


REGISTRY: FamilyRegistry = FamilyRegistry(
    "encoder", "repeval.encoders", "`repeval encoders` lists them with their parameter counts.")

REGULARISERS: Registry[Regulariser] = Registry(
    "regulariser", "repeval.regularisers",
    "`repeval encoders` lists them with the families each composes with.")


def register(cls: type[Autoencoder]) -> type[Autoencoder]:
    """Class decorator: add a family to :data:`REGISTRY` under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__qualname__} needs a class attribute `name`")
    if COMPOSE in cls.name:
        raise ValueError(f"family name {cls.name!r} must not contain {COMPOSE!r} (it composes a regulariser)")
    return REGISTRY.register(cls)


def register_regulariser(regulariser: Regulariser) -> Regulariser:
    """Add a regulariser (an instance of :class:`encoders.regularisers.Regulariser`) to
    :data:`REGULARISERS` under its ``name``."""
    if COMPOSE in (getattr(regulariser, "name", "") or ""):
        raise ValueError(f"regulariser name {regulariser.name!r} must not contain {COMPOSE!r}")
    return REGULARISERS.register(regulariser)


def get(name: str) -> type[Autoencoder]:
    """The family called ``name`` (or composed as ``FAMILY+REGULARISER``); a UserError
    listing the known families otherwise."""
    return REGISTRY.get(name)


def check_kind(family: type[Autoencoder], dataset_name: str, example: Any) -> None:
    """A :class:`~repeval.errors.UserError` when ``family`` builds no model for the kind of
    ``example`` (a :class:`repeval.data.base.Example`; images when None), naming the
    registered families that do."""
    kind = example.kind if example is not None else "image"
    kinds = getattr(family, "kinds", frozenset({"image"}))
    if kind in kinds:
        return
    able = [name for name, other in REGISTRY.items() if kind in getattr(other, "kinds", ())]
    plural = {"image": "images", "signal": "signals", "tokens": "token sequences"}
    raise UserError(f"{family.name!r} builds models for {' and '.join(plural.get(k, k) for k in sorted(kinds))} only; "
                    f"{dataset_name!r} holds {example.describe()}. Families that work on {plural.get(kind, kind)}: "
                    f"{', '.join(able)}.")
