"""The types every probe shares: :class:`Latents` in, :class:`Result` out, one :class:`Task`
per probe, and :func:`resolve_settings`.

A probe is a pure function: ``run(latents, settings, device) -> Result`` for the latent
probes, ``run(model, dataset, settings, device, latent) -> Result`` for the interpolation
task (which needs the frozen decoder). It does no I/O and keeps no state between calls.

Settings are frozen dataclasses of plain JSON values (``dataclasses.asdict`` is stored with
every score). Each settings class provides ``defaults(device)``: the documented defaults for
that device, so device-dependent choices (k-means restarts and backend) are explicit values
rather than decisions hidden inside ``run``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from repeval.errors import UserError


@dataclass(frozen=True)
class Latents:
    """Frozen latents of both splits: ``z_*`` float32 ``(N, D)``, ``y_*`` int64 ``(N,)``.

    Inputs are validated and converted on construction (contiguous float32 / int64); a
    latent with NaN or infinite values, mismatched sizes or labels outside
    ``[0, num_classes)`` raises :class:`~repeval.errors.UserError`.
    """

    z_train: np.ndarray
    y_train: np.ndarray
    z_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise UserError(f"num_classes must be at least 1, got {self.num_classes}.")
        for split in ("train", "test"):
            z = np.ascontiguousarray(getattr(self, f"z_{split}"), dtype=np.float32)
            y = np.ascontiguousarray(getattr(self, f"y_{split}")).astype(np.int64, copy=False)
            if z.ndim != 2 or y.ndim != 1 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
                raise UserError(
                    f"{split} latents must be a non-empty (N, D) array with N labels; got latents "
                    f"{z.shape} and labels {y.shape}. Flatten each latent to one row per image."
                )
            if not np.isfinite(z).all():
                raise UserError(
                    f"The {split} latents contain NaN or infinite values; the encoder's checkpoint is "
                    "unusable for probing (retrain it, or check the input scaling)."
                )
            if y.min() < 0 or y.max() >= self.num_classes:
                raise UserError(
                    f"{split} labels must lie in [0, {self.num_classes}); found {int(y.min())}..{int(y.max())}."
                )
            object.__setattr__(self, f"z_{split}", z)
            object.__setattr__(self, f"y_{split}", y)
        if self.z_train.shape[1] != self.z_test.shape[1]:
            raise UserError(
                f"train and test latents differ in size ({self.z_train.shape[1]} vs "
                f"{self.z_test.shape[1]}); extract both splits with the same encoder and latent choice."
            )

    @property
    def dim(self) -> int:
        return int(self.z_train.shape[1])


@dataclass(frozen=True)
class Result:
    """What a probe returns: ``scores`` (metric name -> value, the stored numbers) and
    ``details`` (auxiliary JSON values: inertia, restarts used, top-5, ...)."""

    scores: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One probe: its name, settings class, ``run`` function, metric names, and whether
    ``run`` needs the frozen model (``run(model, dataset, settings, device, latent)``)
    instead of latents (``run(latents, settings, device)``)."""

    name: str
    settings: type
    run: Callable[..., Result]
    metrics: tuple[str, ...]
    needs_model: bool = False


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def coerce_overrides(settings_cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """Check override names against ``settings_cls`` and convert strings (from the command
    line) to the type of the field's default; raise :class:`UserError` on a bad name/value."""
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    defaults = settings_cls()
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in fields:
            raise UserError(
                f"Unknown setting {name!r} for {settings_cls.__name__}; known settings: {', '.join(fields)}."
            )
        kind = type(getattr(defaults, name))
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1")
            elif kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
                value = float(value)
            elif kind is int and isinstance(value, str):
                value = int(value)
        except ValueError:
            raise UserError(f"Setting {name!r} expects a value of type {kind.__name__}, got {value!r}.") from None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UserError(f"Setting {name!r} expects a value of type {kind.__name__}, got {value!r}.")
        out[name] = value
    return out
