"""``repeval run``: train (or reuse) → extract → probe → store, for one spec at a time.

Scores are stored as soon as each task finishes, so an interrupted multi-task run keeps
what it computed: first into the run directory's ``scores.json`` (the durable record,
:mod:`repeval.scorefile`), then into ``repeval.db`` (an index that ``repeval collect`` can
rebuild from those files). Without a store (``repeval run --no-store``, sweep workers) only
the file is written.
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
            checkpoint_every_s: float | None = None) -> list[dict[str, Any]]:
    """Train or reuse ``spec``, probe it with ``tasks``, store and return the score rows.

    ``store`` may be ``None``: the scores then go only into the run directory's
    ``scores.json``. ``checkpoint_every_s`` is the trainer's checkpoint interval (default
    :data:`repeval.train.CHECKPOINT_EVERY_S`)."""
    from repeval import extract as ex
    from repeval import scorefile
    from repeval.previews import write_previews
    from repeval.probes import TASKS
    from repeval.store import Score
    from repeval.train import train

    every = {} if checkpoint_every_s is None else {"checkpoint_every_s": checkpoint_every_s}
    checkpoint = train(spec, dataset, device, workdir, progress=progress, log=log, **every)
    at = scorefile.now()
    record = scorefile.record_run(checkpoint.path, spec.run_id, spec.to_dict(), checkpoint.provenance,
                                  str(checkpoint.path), at=at)
    if store is not None:
        store.record_run(spec.run_id, spec.to_dict(), checkpoint.provenance, str(checkpoint.path),
                         created_at=record["created_at"], updated_at=at)
    model = checkpoint.load_model(device)
    latent = model.check_latent(latent)
    write_previews(checkpoint.path, model, dataset, latent, device)
    latents = None
    for task_name in tasks:
        task = TASKS[task_name]
        settings = task_settings(task_name, spec.seed, device, (overrides or {}).get(task_name))
        t0 = time.perf_counter()
        if task.needs_model:
            result = task.run(model, dataset, settings, device, latent)
        else:
            if latents is None:
                latents = ex.extract(checkpoint, dataset, latent, device, model=model)
            result = task.run(latents, settings, device)
        wall = time.perf_counter() - t0
        at = scorefile.now()
        scores = [Score(task=task_name, metric=m, value=float(v), latent=latent, settings=asdict(settings),
                        details=result.details, wall_time_s=wall, created_at=at) for m, v in result.scores.items()]
        if task_name == "linear" and model.learned:
            online = online_score(checkpoint.history)
            if online is not None:
                scores.append(Score(task="linear", metric="accuracy_online", value=online[0], latent=latent,
                                    settings=ONLINE_SETTINGS, details=online[1], created_at=at))
        record = scorefile.add_scores(checkpoint.path, [asdict(s) for s in scores])
        if store is not None:
            store.add_scores(spec.run_id, scores)
    if store is None:
        return scorefile.store_rows(record, latent=latent, task=tasks)
    return store.scores(run_id=spec.run_id, latent=latent, task=tasks)


def task_settings(task_name: str, seed: int, device: str, overrides: dict[str, Any] | None = None):
    """The settings :func:`run_one` probes ``task_name`` with for a run of ``seed`` on
    ``device``: the task's defaults, its seed from the run's, then ``overrides``."""
    from repeval.probes import TASKS, resolve_settings

    return resolve_settings(task_name, device, {**_seeded(TASKS[task_name], seed), **(overrides or {})})


def _seeded(task, seed: int) -> dict[str, Any]:
    """Probes with a seed take the run's seed, so seeds spread probes as well as training."""
    return {"seed": seed} if any(f.name == "seed" for f in fields(task.settings)) else {}
