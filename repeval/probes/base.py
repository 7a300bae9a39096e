"""The types every probe shares: :class:`Latents` in, :class:`Result` out, one :class:`Task`
per probe with its :class:`Metric` declarations, and the settings coercion.

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
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from repeval.errors import UserError
from repeval.latents import Latents  # noqa: F401  (public API: the probes' input)


@dataclass(frozen=True)
class Result:
    """What a probe returns: ``scores`` (metric name -> value, the stored numbers),
    ``details`` (auxiliary JSON values: inertia, restarts used, top-5, ...) stored with every
    metric's score, and ``metric_details`` (metric name -> JSON values stored with that
    metric's score only, e.g. its per-example correctness as packed bits, ``correct``)."""

    scores: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    metric_details: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Tolerance:
    """Allowed deviation of a score from a baseline value in ``repeval check``:
    max(abs, rel·|value|)."""

    abs: float = 0.0
    rel: float = 0.0

    def allowed(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline)) if math.isfinite(baseline) else self.abs


DIRECTIONS = ("higher", "lower", "none")

Bounds = tuple[float | None, float | None]
UNBOUNDED: Bounds = (None, None)
FRACTION: Bounds = (0.0, 1.0)  # accuracies, stored as fractions
NON_NEGATIVE: Bounds = (0.0, None)


@dataclass(frozen=True)
class Metric:
    """Everything repeval knows about one number a probe stores, declared once, with the probe.

    ``direction``: ``"higher"`` or ``"lower"`` is better, or ``"none"`` (the check then
    treats any change beyond tolerance as a regression and the report marks no best).
    ``tolerance``: the default allowed deviation in ``repeval check`` (a baseline file may
    override it). Display: the report shows ``value·scale`` with ``decimals`` decimals under
    ``heading`` (default: the task's ``label``) and ``label`` plus ``unit``; ``note``
    explains the number where it appears. ``headline``: the report's pairwise-difference
    matrix shows this metric (the first headline metric a table has). ``bounds``: the
    closed range ``(low, high)`` every value of the metric lies in, in stored units
    (:data:`FRACTION` for accuracies; ``None`` for an unbounded side): no interval
    :func:`repeval.summary.summarise` or the report shows leaves it.
    """

    name: str
    direction: str
    tolerance: Tolerance
    label: str
    unit: str = ""
    scale: float = 1.0
    decimals: int = 3
    heading: str = ""
    note: str = ""
    headline: bool = False
    bounds: Bounds = UNBOUNDED

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        low, high = self.bounds
        if any(b is not None and not math.isfinite(b) for b in self.bounds) or \
                (low is not None and high is not None and low >= high):
            raise ValueError(f"metric {self.name!r}: bounds must be (low, high) with low < high, finite or None, "
                             f"got {self.bounds!r}")

    @property
    def column_label(self) -> str:
        """The column header under the heading, e.g. ``acc. %``."""
        return f"{self.label} {self.unit}".strip()

    def display(self, value: float) -> float:
        return value * self.scale


@dataclass(frozen=True)
class Task:
    """One probe, declared whole: its ``name``, settings class, ``run`` function, the
    :class:`Metric` s it stores, and what it needs.

    ``needs_model``: ``run(model, dataset, settings, device, latent)`` on the frozen model
    (it decodes) instead of ``run(latents, settings, device)``. ``requires``: dataset
    features it needs (a :class:`~repeval.data.registry.DatasetEntry`'s ``features``), e.g.
    ``{"factor_bank"}``; ``--task all`` skips a task whose requirements a dataset lacks.
    ``label`` heads its columns in the report.
    """

    name: str
    settings: type
    run: Callable[..., Result]
    metrics: tuple[Metric, ...]
    label: str = ""
    needs_model: bool = False
    requires: frozenset[str] = frozenset()
    summary: str = ""

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def applies_to(self, entry: Any) -> bool:
        """Whether the dataset ``entry`` offers every feature this task requires."""
        return self.requires <= frozenset(getattr(entry, "features", ()))


def coerce_overrides(settings_cls: type, overrides: dict[str, Any], task: str = "") -> dict[str, Any]:
    """Check override names against ``settings_cls``, convert values (text from the command
    line, or JSON) to each field's kind and check them against its declared range
    (:func:`repeval.ranges.setting`; a field without one gets the range its default's type
    implies); raise :class:`UserError` naming ``--set TASK.NAME``, the value, the range and
    a fix."""
    from repeval.ranges import check_setting

    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in fields:
            raise UserError(
                f"Unknown setting {name!r} for {settings_cls.__name__}; known settings: {', '.join(fields)}."
            )
        out[name] = check_setting(settings_cls, name, value, f"--set {task}.{name}" if task else f"setting {name}")
    return out


def sklearn_tags():
    """scikit-learn's estimator tags of a probe used as an estimator (``repeval.Probe``): a
    classifier-like estimator whose ``fit`` needs labels."""
    from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

    return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                classifier_tags=ClassifierTags(), input_tags=InputTags())
