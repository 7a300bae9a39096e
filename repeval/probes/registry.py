"""The probe registry: task name (``--task kmeans``) → :class:`~repeval.probes.base.Task`.

The built-ins register when :mod:`repeval.probes` is imported; outside probes register with
:func:`register` or as plugins (entry-point group ``repeval.probes``, :mod:`repeval.plugins`).
Everything that needs a fact about a task or one of its metrics (the command line, the
check's tolerances and directions, the report's columns) asks here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from repeval.probes.base import Metric, Task, coerce_overrides
from repeval.registry import Registry

TASKS: Registry[Task] = Registry("task", "repeval.probes", "`repeval tasks` lists them.")


def register(task: Task) -> Task:
    """Add a probe; its name must be new. Returns ``task``."""
    if not isinstance(task, Task):
        raise ValueError(f"a probe plugin must provide a repeval.probes.Task, got {type(task).__name__}")
    return TASKS.register(task)


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`~repeval.errors.UserError` listing the known ones otherwise."""
    return TASKS.get(name)


def metric_facts(task: str, metric: str) -> Metric | None:
    """The declaration of ``metric`` of ``task``, or None when no registered task declares it
    (e.g. a score stored by a plugin that is no longer installed)."""
    if task not in TASKS:
        return None
    return TASKS.get(task).metric(metric)


def resolve_settings(task_name: str, device: str, overrides: dict[str, Any] | None = None):
    """The settings ``task_name`` runs with on ``device``: the task's documented defaults
    for that device (``Settings.defaults(device)``) with ``overrides`` applied. Override
    values may be strings (from the command line); they are converted to the field's type.
    Unknown names or bad values raise :class:`~repeval.errors.UserError`."""
    task = get_task(task_name)
    checked = coerce_overrides(task.settings, overrides or {}, task_name)
    return dataclasses.replace(task.settings.defaults(device), **checked)
