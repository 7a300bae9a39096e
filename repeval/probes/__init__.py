"""Probes: pure functions of (latents, labels, settings) -> scores, each declared as a
:class:`Task` with its :class:`Metric` s in :data:`TASKS` (:mod:`repeval.probes.registry`).

============== ============================ =========================== ===========
task           metrics                      run(...)                    module
============== ============================ =========================== ===========
linear         accuracy (+ accuracy_online) (latents, settings, device)  linear
kmeans         accuracy, nmi, ari           (latents, settings, device)  kmeans
knn            accuracy (top-5 in details)  (latents, settings, device)  knn
label_         linear@1 … linear@all,       (latents, settings, device)  label_efficiency
efficiency     knn@1 … knn@all
interpolation  mean_distance, smoothness    (model, dataset, settings,   interpolation
                                            device, latent)
============== ============================ =========================== ===========

Accuracies are fractions in [0, 1]. Every ``run`` returns a :class:`Result`. Settings are
frozen dataclasses of JSON values; :func:`resolve_settings` gives the recorded instance for
a device and the user's overrides. Each module's docstring states its protocol.

A new probe is one module with a settings dataclass, a pure ``run`` and a ``TASK``,
registered with :func:`register` (or from a plugin). The built-in modules import torch and
faiss inside their functions, so reading the declarations (``repeval check``) stays cheap.
"""

from __future__ import annotations

from repeval.probes import interpolation, kmeans, knn, label_efficiency, linear
from repeval.probes.base import Latents, Metric, Result, Task, Tolerance
from repeval.probes.registry import TASKS, get_task, metric_facts, register, resolve_settings

# the report's column order
for _task in (linear.TASK, kmeans.TASK, knn.TASK, label_efficiency.TASK, interpolation.TASK):
    register(_task)

__all__ = ["Latents", "Metric", "Result", "Task", "Tolerance", "TASKS", "get_task", "metric_facts", "register",
           "resolve_settings"]
