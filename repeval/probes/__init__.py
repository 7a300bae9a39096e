"""Probes: pure functions of (latents, labels, settings) -> scores.

``TASKS`` maps each task name to its :class:`Task`:

============== ============================ =========================== ===========
task           metrics                      run(...)                    module
============== ============================ =========================== ===========
linear         accuracy                     (latents, settings, device)  linear
kmeans         accuracy, nmi, ari           (latents, settings, device)  kmeans
knn            accuracy (top-5 in details)  (latents, settings, device)  knn
interpolation  mean_distance, smoothness    (model, dataset, settings,   interpolation
                                            device, latent)
============== ============================ =========================== ===========

Accuracies are fractions in [0, 1]. Every ``run`` returns a :class:`Result`. Settings are
frozen dataclasses of JSON values; :func:`resolve_settings` gives the recorded instance for
a device and the user's overrides. Each module's docstring states its protocol and source.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from repeval.errors import UserError
from repeval.probes import interpolation, kmeans, knn, linear
from repeval.probes.base import Latents, Result, Task, coerce_overrides

TASKS: dict[str, Task] = {task.name: task for task in (linear.TASK, kmeans.TASK, knn.TASK, interpolation.TASK)}


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`UserError` listing the known ones otherwise."""
    if name not in TASKS:
        raise UserError(f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}.")
    return TASKS[name]


def resolve_settings(task_name: str, device: str, overrides: dict[str, Any] | None = None):
    """The settings ``task_name`` runs with on ``device``: the task's documented defaults
    for that device (``Settings.defaults(device)``) with ``overrides`` applied. Override
    values may be strings (from the command line); they are converted to the field's type.
    Unknown names or bad values raise :class:`UserError`."""
    task = get_task(task_name)
    return dataclasses.replace(task.settings.defaults(device), **coerce_overrides(task.settings, overrides or {}))


__all__ = ["Latents", "Result", "Task", "TASKS", "get_task", "resolve_settings"]
