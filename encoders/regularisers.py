"""Latent regularisers: a loss on a family's latent added to that family's own losses.

A regulariser composes with any family that implements
:meth:`encoders.base.Autoencoder.training_pass` (all built-in learned families do). The
composed family is named ``FAMILY+REGULARISER`` (``vae+acai``) everywhere: on the command
line (``--encoder vae+acai``, or ``--encoder vae --regularizer acai``), in the RunSpec, the
run directory, tables and the report. Its hyper-parameters are the family's and the
regulariser's together (``--hparam`` sets either; a name both declare cannot compose), and
its modules are the family's, then the regulariser's (initialised in that order, from the
run's seed).

Per training step the composed family runs the family's own pass, then the regulariser's
:meth:`Regulariser.apply` on what that pass returned (:class:`encoders.base.DecoderInput`):
the regulariser may add to the family's loss groups and add groups of its own (a critic),
which the trainer steps simultaneously, each group differentiated with respect to its own
parameters only. Random draws of the regulariser come after the family's.

:data:`encoders.registry.REGULARISERS` holds the regularisers (``acai``, from
:mod:`encoders.acai`); a plugin adds one through the entry-point group
``repeval.regularisers``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from encoders.base import Autoencoder, DecoderInput, Step


class Regulariser:
    """A loss on the latent, added to any composable family (subclass and register an instance).

    ``name`` is the suffix users type (``vae+acai``); ``hparams`` its hyper-parameters with
    their defaults (merged with the family's) and ``hparam_ranges`` the values each accepts
    (:mod:`repeval.ranges`); ``modules`` the attribute names of the
    modules :meth:`attach` adds (their parameters leave the family's groups and form the
    regulariser's own).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    hparams: ClassVar[dict[str, Any]] = {}
    hparam_ranges: ClassVar[dict[str, Any]] = {}
    modules: ClassVar[tuple[str, ...]] = ()

    def attach(self, model: Autoencoder) -> None:
        """Add the regulariser's modules to a freshly built ``model`` (after the family's own)."""

    def apply(self, model: Autoencoder, x: Tensor, step: Step, view: DecoderInput) -> Step:
        """The composed step: the family's ``step`` on the batch ``x`` with the regulariser's
        losses added; ``view`` is what the family's decoder read."""
        raise NotImplementedError

    def groups(self, model: Autoencoder, lr: float) -> dict[str, tuple[list[nn.Parameter], float]]:
        """The optimiser groups of the regulariser's own modules."""
        return {}

    def counts(self, model: Autoencoder) -> dict[str, int]:
        """Parameter counts of the regulariser's own modules (``repeval encoders``)."""
        return {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in self.modules}

    def record(self, model_cls: type[Autoencoder], hparams: dict[str, Any]) -> dict[str, Any]:
        """What a run's provenance says about the regulariser: its name, the family it was
        added to, and its resolved hyper-parameters (from the run's ``hparams``)."""
        return {"name": self.name, "family": model_cls.base_family.name, "summary": self.summary,
                "hparams": {k: hparams.get(k, v) for k, v in sorted(self.hparams.items())}}


def compose_error(family: type[Autoencoder], regulariser: Regulariser) -> str | None:
    """Why ``family`` cannot take ``regulariser`` (a sentence), or None when it can."""
    if family.name == regulariser.name:
        return (f"{family.name!r} is the family the {regulariser.name!r} regulariser comes from; use it alone "
                f"(or baseline{'+'}{regulariser.name}, where the regulariser is added to a plain autoencoder)")
    if not family.learned:
        return (f"{family.name!r} is a reference encoder (fitted, not trained), so there is no training "
                f"loss to add {regulariser.name!r} to")
    if not family.composable():
        return (f"{family.name!r} does not expose the latent its decoder reads (it implements "
                "training_step but not training_pass, see encoders/base.py)")
    clash = sorted(set(family.hparams) & set(regulariser.hparams))
    if clash:
        return f"{family.name!r} already has the hyper-parameter(s) {', '.join(clash)} of {regulariser.name!r}"
    taken = [m for m in regulariser.modules if hasattr(family, m)]
    if taken:
        return f"{family.name!r} already defines {', '.join(taken)}"
    return None


def compose(family: type[Autoencoder], regulariser: Regulariser) -> type[Autoencoder]:
    """The family class ``FAMILY+REGULARISER``; raises ValueError when they do not compose."""
    problem = compose_error(family, regulariser)
    if problem is not None:
        raise ValueError(problem)
    reg = regulariser

    class Composed(family):  # type: ignore[misc, valid-type]
        name = f"{family.name}+{reg.name}"
        summary = f"{family.summary}; + {reg.summary}"
        hparams = {**family.hparams, **reg.hparams}
        hparam_ranges = {**getattr(family, "hparam_ranges", {}), **getattr(reg, "hparam_ranges", {})}
        regulariser = reg
        base_family = family

        def __init__(self, arch, **hparams):
            super().__init__(arch, **hparams)
            reg.attach(self)

        def training_step(self, x: Tensor) -> Step:
            return self.training_pass(x)[0]

        def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
            step, view = super().training_pass(x)
            return reg.apply(self, x, step, view), view

        def optimizer_groups(self, lr: float) -> dict[str, tuple[list[nn.Parameter], float]]:
            own = {id(p) for m in reg.modules for p in getattr(self, m).parameters()}
            groups = {g: ([p for p in params if id(p) not in own], group_lr)
                      for g, (params, group_lr) in super().optimizer_groups(lr).items()}
            added = reg.groups(self, lr)
            clash = set(groups) & set(added)
            if clash:
                raise ValueError(f"{self.name}: optimiser group(s) {sorted(clash)} exist in both parts")
            return {**groups, **added}

        def parameter_counts(self) -> dict[str, int]:
            return {**super().parameter_counts(), **reg.counts(self)}

    Composed.__name__ = Composed.__qualname__ = f"{family.__name__}With{type(reg).__name__}"
    Composed.__module__ = family.__module__
    Composed.__doc__ = (f"{family.name} with the {reg.name} regulariser (:mod:`encoders.regularisers`).\n\n"
                        f"{family.__doc__ or ''}")
    return Composed
