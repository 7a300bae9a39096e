"""``ProbeCallback``: repeval's probes inside a Lightning training (the ``repeval[lightning]`` extra).

At the end of every ``every_n_epochs``-th validation epoch (never during the sanity check)
rank 0 probes the module's latents with a :class:`repeval.Prober`; the values are broadcast
to every rank and logged through ``pl_module.log`` as ``PREFIX + task/metric`` (e.g.
``probe/knn/accuracy``), so every Lightning logger receives them and
``ModelCheckpoint(monitor="probe/knn/accuracy", mode="max")`` can select on them. The module
is probed in eval mode under ``no_grad`` (BatchNorm statistics untouched) and its mode
restored; ``history`` keeps every epoch's values.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

try:  # the unified package first, then the standalone one
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning import Callback
    except ImportError:
        from repeval.errors import UserError

        raise UserError("repeval.lightning needs Lightning: pip install \"repeval[lightning]\" (or lightning, or "
                        "pytorch-lightning).") from None


class ProbeCallback(Callback):
    """Probe the module at validation epoch ends; see the module docstring.

    ``train``, ``test``, ``tasks`` and the keyword arguments (``max_examples``, ``latent``,
    ``settings``, ...) are :class:`repeval.Prober`'s."""

    def __init__(self, train, test, *, tasks: str | Sequence[str] = ("knn",), every_n_epochs: int = 1,
                 prefix: str = "probe/", latent: Callable | None = None, **prober_options: Any) -> None:
        from repeval.api import Prober
        from repeval.errors import UserError

        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise UserError(f"ProbeCallback(every_n_epochs={every_n_epochs!r}): give a whole number of at least 1.")
        self.prober = Prober(train, test, tasks=tasks, latent=latent, **prober_options)
        self.every_n_epochs, self.prefix = every_n_epochs, prefix
        self.history: list[dict[str, Any]] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        values: dict[str, float] = {}
        if trainer.is_global_zero:
            values = self.prober(pl_module, step=trainer.global_step)
        values = trainer.strategy.broadcast(values, src=0)
        for key, value in values.items():
            pl_module.log(f"{self.prefix}{key}", value, on_step=False, on_epoch=True, sync_dist=False)
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **values})
