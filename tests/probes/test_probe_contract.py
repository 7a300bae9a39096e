"""The probe contract (``repeval/probes/base.py``), checked for every registered task.

Parametrised over ``TASKS.names()`` at collection time: a probe registered by a plugin or a
new module is checked without editing this file. What each built-in probe computes is
tested in its own file (``test_probe_<task>.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
from range_cases import out_of_range

from repeval.data import DATASETS
from repeval.errors import UserError
from repeval.jsonio import canonical_json
from repeval.probes import TASKS, Latents, Metric, Result, Task, Tolerance, resolve_settings
from repeval.probes.base import DIRECTIONS
from repeval.ranges import Range, declared_setting_ranges

NAMES = TASKS.names()
LATENT_TASKS = [name for name in NAMES if not TASKS[name].needs_model]
DEVICES = ("cpu", "cuda", "cuda:1")

# Fields that, where a task's settings have them, are cut down so each run takes milliseconds.
FAST = {"restarts": 2, "niter": 20, "max_iter": 50, "k": 5, "n_pairs": 4, "steps": 3}

JSON_VALUES = (bool, int, float, str, type(None))


def random_latents(seed: int = 0) -> Latents:
    """3 classes, 60 train and 30 test latents of 8 dims: noise around a mean per class."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(3, 8))
    y_train, y_test = np.arange(60) % 3, np.arange(30) % 3
    return Latents(means[y_train] + rng.normal(size=(60, 8)), y_train,
                   means[y_test] + rng.normal(size=(30, 8)), y_test, num_classes=3)


def fast_settings(task: Task, device: str = "cpu"):
    fields = {f.name for f in dataclasses.fields(task.settings)}
    return dataclasses.replace(task.settings.defaults(device), **{k: v for k, v in FAST.items() if k in fields})


@pytest.mark.parametrize("name", NAMES)
def test_task_is_declared_whole(name):
    task = TASKS[name]
    assert isinstance(task, Task)
    assert task.name == name
    assert callable(task.run)
    assert isinstance(task.needs_model, bool)
    assert isinstance(task.requires, frozenset) and all(isinstance(r, str) and r for r in task.requires)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_settings_are_a_frozen_dataclass_of_json_values(name, device):
    settings_cls = TASKS[name].settings
    assert dataclasses.is_dataclass(settings_cls) and isinstance(settings_cls, type)
    assert settings_cls.__dataclass_params__.frozen
    settings = settings_cls.defaults(device)
    assert type(settings) is settings_cls
    values = dataclasses.asdict(settings)
    assert all(isinstance(v, JSON_VALUES) for v in values.values()), values
    assert json.loads(json.dumps(values)) == values
    field = dataclasses.fields(settings_cls)[0].name if dataclasses.fields(settings_cls) else None
    if field is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(settings, field, getattr(settings, field))
    # what `repeval run` records: the device's defaults, through the registry
    resolved = resolve_settings(name, device, {})
    assert resolved == settings
    assert json.loads(json.dumps(dataclasses.asdict(resolved))) == dataclasses.asdict(resolved)


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_declares_a_range_the_defaults_fit_and_bad_values_are_refused(name):
    """Each settings field states the values it accepts (``repeval.ranges.setting``);
    ``--set TASK.KEY=VALUE`` is checked once, in ``resolve_settings``, and a bad value names
    the input, the value and the range."""
    settings_cls = TASKS[name].settings
    ranges = declared_setting_ranges(settings_cls)
    assert all(isinstance(r, Range) for r in ranges.values()), f"{name}: fields without a range: " \
        f"{[f for f, r in ranges.items() if r is None]}"
    for device in DEVICES:
        for field, value in dataclasses.asdict(settings_cls.defaults(device)).items():
            assert ranges[field].convert(value) == value, f"{name} on {device}: default {field}={value!r} out of range"
            assert resolve_settings(name, device, {field: str(value).lower()}) == dataclasses.replace(
                settings_cls.defaults(device), **{field: value})  # as typed on the command line
    for field, declared in ranges.items():
        for bad in out_of_range(declared):
            with pytest.raises(UserError, match=f"--set {name}.{field}=.* is not allowed: {field} must be "
                                                f"{re.escape(declared.describe())}"):
                resolve_settings(name, "cpu", {field: bad})


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_is_declared_with_direction_tolerance_and_label(name):
    task = TASKS[name]
    assert isinstance(task.metrics, tuple) and task.metrics
    names = [m.name for m in task.metrics]
    assert len(set(names)) == len(names), f"{name} declares a metric twice: {names}"
    for metric in task.metrics:
        assert isinstance(metric, Metric)
        assert isinstance(metric.name, str) and metric.name, metric
        assert metric.direction in DIRECTIONS, metric
        assert isinstance(metric.tolerance, Tolerance), metric
        for part in (metric.tolerance.abs, metric.tolerance.rel):
            assert isinstance(part, (int, float)) and math.isfinite(part) and part >= 0, metric
        assert isinstance(metric.label, str) and metric.label.strip(), metric
        assert math.isfinite(metric.scale) and metric.scale != 0, metric
        assert isinstance(metric.decimals, int) and metric.decimals >= 0, metric
        assert task.metric(metric.name) is metric


@pytest.mark.parametrize("name", LATENT_TASKS)
def test_latent_task_returns_declared_finite_scores_and_json_details(name):
    task = TASKS[name]
    result = task.run(random_latents(), fast_settings(task), "cpu")
    assert isinstance(result, Result)
    assert result.scores, f"{name} returned no score"
    declared = {m.name for m in task.metrics}
    for metric, value in result.scores.items():
        assert metric in declared, f"{name} returned {metric!r}, which it does not declare ({sorted(declared)})"
        assert isinstance(value, float) and not isinstance(value, bool) and math.isfinite(value), (metric, value)
    assert isinstance(result.details, dict) and all(isinstance(k, str) for k in result.details)
    json.loads(canonical_json(result.details))  # as the store writes them


@pytest.mark.parametrize("name", LATENT_TASKS)
def test_latent_task_is_a_pure_function_of_latents_and_settings(name):
    task = TASKS[name]
    first = task.run(random_latents(), fast_settings(task), "cpu")
    again = task.run(random_latents(), fast_settings(task), "cpu")
    assert first.scores == again.scores


@pytest.mark.parametrize("name", NAMES)
def test_requirements_are_offered_by_some_registered_dataset(name):
    task = TASKS[name]
    offering = [entry.name for entry in DATASETS.values() if task.applies_to(entry)]
    assert offering, f"{name} requires {sorted(task.requires)}, which no registered dataset offers"


def test_every_registered_task_is_checked():
    """The parametrisation above is the registry itself (a hand-written list would drift)."""
    assert NAMES and NAMES == TASKS.names()
    assert LATENT_TASKS == [name for name in TASKS.names() if not TASKS[name].needs_model]
