"""``repeval run``: train (or reuse) → extract → probe → store, for one spec at a time.

Scores are stored as soon as each task finishes, so an interrupted multi-task run keeps
what it computed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

from repeval.errors import UserError
from repeval.specs import RunSpec

ONLINE_MEDIAN_OF = 20  # the paper reports the median of the last 20 online evaluations


def expand_tasks(tasks: tuple[str, ...] | list[str], dataset: str) -> list[str]:
    """``all`` → every registered task that applies to ``dataset`` (its ``requires`` are among
    the dataset's ``features``); validates names, keeps order, no repeats. Naming a task
    that does not apply is a :class:`UserError` saying which datasets it needs."""
    from repeval import data
    from repeval.probes import TASKS

    entry = data.get(dataset)
    out: list[str] = []
    for t in tasks:
        names = [name for name, task in TASKS.items() if task.applies_to(entry)] if t == "all" else [t]
        for name in names:
            task = TASKS.get(name)
            if not task.applies_to(entry):
                fitting = [e.name for e in data.DATASETS.values() if task.applies_to(e)]
                needs = " or ".join(f"--dataset {n}" for n in fitting) or "a dataset that has them"
                raise UserError(f"Task {name!r} needs {needs} (a dataset with {', '.join(sorted(task.requires))}, "
                                f"which {dataset!r} lacks).")
            if name not in out:
                out.append(name)
    return out


def online_score(history: dict[str, Any]) -> tuple[float, dict[str, Any]] | None:
    """The paper's Table 2 number: median of the last 20 online-classifier test accuracies."""
    accs = history.get("online_accuracy") or []
    if not accs:
        return None
    last = accs[-ONLINE_MEDIAN_OF:]
    at_images = history["online_images"][-len(last):]
    return float(statistics.median(last)), {"evaluations": len(last), "at_images": at_images}


ONLINE_SETTINGS = {
    "protocol": "online: dense layer on the stop-gradient latent, trained alongside the autoencoder "
                "(Adam 1e-4, same batches), scored on the full test split",
    "aggregate": f"median of the last {ONLINE_MEDIAN_OF} evaluations",
}


def run_one(spec: RunSpec, tasks: list[str], *, dataset, device: str, workdir: Path, store,
            latent: str | None = None, overrides: dict[str, dict[str, Any]] | None = None,
            progress: bool = True, log: Callable[[str], Any] | None = None,
            probe_seeds: int | dict[str, int] = 1) -> list[dict[str, Any]]:
    """Train or reuse ``spec``, probe it with ``tasks``, store and return the score rows.

    ``probe_seeds`` (a count, or one per task name): how often each stochastic task (one
    whose settings have a ``seed``) runs on the cached latents, with seeds
    :func:`repeval.summary.probe_seed` of the run's seed (or of the task's ``seed``
    override); each run is stored as its own rows, its index in ``details["probe_seed"]``.
    """
    from repeval import extract as ex
    from repeval.maps import write_map
    from repeval.previews import write_previews
    from repeval.probes import TASKS, resolve_settings
    from repeval.store import Score
    from repeval.summary import probe_seed
    from repeval.train import train

    checkpoint = train(spec, dataset, device, workdir, progress=progress, log=log)
    store.record_run(spec.run_id, spec.to_dict(), checkpoint.provenance, str(checkpoint.path))
    model = checkpoint.load_model(device)
    latent = model.check_latent(latent)
    write_previews(checkpoint.path, model, dataset, latent, device)
    latents = None
    for task_name in tasks:
        task = TASKS[task_name]
        seeded = _has_seed(task)
        count = probe_seeds.get(task_name, 1) if isinstance(probe_seeds, dict) else probe_seeds
        if count < 1:
            raise UserError(f"{task_name}: probe seeds must be at least 1, got {count}.")
        given = (overrides or {}).get(task_name, {})
        for index in range(count if seeded else 1):
            task_overrides = dict(given)
            if seeded:
                base = int(given["seed"]) if "seed" in given else spec.seed
                task_overrides["seed"] = probe_seed(base, index)
            settings = resolve_settings(task_name, device, task_overrides)
            t0 = time.perf_counter()
            if task.needs_model:
                result = task.run(model, dataset, settings, device, latent)
            else:
                if latents is None:
                    latents = ex.extract(checkpoint, dataset, latent, device, model=model)
                    write_map(checkpoint.path, latents, latent)
                result = task.run(latents, settings, device)
            wall = time.perf_counter() - t0
            marker = {"probe_seed": index} if seeded else {}
            scores = [Score(task=task_name, metric=m, value=float(v), latent=latent, settings=asdict(settings),
                            details={**result.details, **result.metric_details.get(m, {}), **marker},
                            wall_time_s=wall) for m, v in result.scores.items()]
            if task_name == "linear" and model.learned:
                online = online_score(checkpoint.history)
                if online is not None:
                    scores.append(Score(task="linear", metric="accuracy_online", value=online[0], latent=latent,
                                        settings=ONLINE_SETTINGS, details=online[1]))
            store.add_scores(spec.run_id, scores)
    return store.scores(run_id=spec.run_id, latent=latent, task=tasks)


def _has_seed(task) -> bool:
    """Probes with a seed take the run's seed (or probe seeds derived from it), so training
    seeds spread the probes as well as training."""
    return any(f.name == "seed" for f in fields(task.settings))
