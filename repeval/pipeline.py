"""``repeval run``: train (or reuse) → extract → probe → store, for one spec at a time.

Scores are stored as soon as each task finishes, so an interrupted multi-task run keeps
what it computed: first into the run directory's ``scores.json`` (the durable record,
:mod:`repeval.scorefile`), then into ``repeval.db`` (an index that ``repeval collect`` can
rebuild from those files). Without a store (``repeval run --no-store``, sweep workers) only
the file is written.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Callable

from repeval.errors import UserError
from repeval.specs import RunSpec

ONLINE_MEDIAN_OF = 20  # the paper reports the median of the last 20 online evaluations


def expand_tasks(tasks: tuple[str, ...] | list[str], dataset: str, entry=None) -> list[str]:
    """``all`` → every registered task that applies to ``dataset`` (its ``requires`` are among
    the dataset's ``features``); validates names, keeps order, no repeats. Naming a task
    that does not apply is a :class:`UserError` saying which datasets it needs. ``entry``
    stands in for the registry's entry of ``dataset`` (embeddings grouped under a name of
    their own, ``repeval/external.py``)."""
    from repeval import data
    from repeval.probes import TASKS

    entry = entry if entry is not None else data.get(dataset)
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
            snapshots: Iterable[int] | None = (), checkpoint_every_s: float | None = None,
            probe_seeds: int | dict[str, int] = 1, reuse: bool = False) -> list[dict[str, Any]]:
    """Train or reuse ``spec`` (writing ``snapshots`` as :class:`repeval.train.Trainer` does),
    probe it with ``tasks``, store and return the score rows.

    ``store`` may be ``None``: the scores then go only into the run directory's
    ``scores.json``. ``checkpoint_every_s`` is the trainer's checkpoint interval (default
    :data:`repeval.train.CHECKPOINT_EVERY_S`). ``probe_seeds`` (a count, or one per task
    name): how often each stochastic task (one whose settings have a ``seed``) runs on the
    cached latents, with seeds :func:`repeval.summary.probe_seed` of the run's seed (or of the
    task's ``seed`` override); each run is stored as its own rows, its index in
    ``details["probe_seed"]``. ``reuse``: a (latent, task, settings) whose scores the run's
    record already holds is not probed again; its stored rows are returned marked
    ``reused`` (``repeval.evaluate``'s default; ``repeval run`` recomputes).
    """
    from repeval import extract as ex
    from repeval.maps import write_map
    from repeval.previews import write_previews
    from repeval.train import train

    if spec.external:  # latents:, python: or in memory (repeval/external.py): nothing to train
        return run_outside(spec, tasks, dataset=dataset, device=device, workdir=workdir, store=store,
                           overrides=overrides, log=log, probe_seeds=probe_seeds, reuse=reuse)

    every = {} if checkpoint_every_s is None else {"checkpoint_every_s": checkpoint_every_s}
    checkpoint = train(spec, dataset, device, workdir, progress=progress, log=log, snapshots=snapshots, **every)
    record = _Record(store, spec, checkpoint)
    model = checkpoint.load_model(device)
    latent = model.check_latent(latent)
    write_previews(checkpoint.path, model, dataset, latent, device)
    cached: list[Any] = []

    def latents():
        if not cached:
            cached.append(ex.extract(checkpoint, dataset, latent, device, model=model))
            write_map(checkpoint.path, cached[0], latent)
        return cached[0]

    online = online_score(checkpoint.history) if model.learned else None
    return probe_tasks(spec, tasks, record, model=model, latents=latents, latent=latent, dataset=dataset,
                       device=device, overrides=overrides, probe_seeds=probe_seeds, log=log, reuse=reuse,
                       online=online)


def probe_tasks(spec: RunSpec, tasks: list[str], record: "_Record", *, model, latents: Callable[[], Any],
                latent: str, dataset, device: str, overrides: dict[str, dict[str, Any]] | None,
                probe_seeds: int | dict[str, int], log: Callable[[str], Any] | None = None, reuse: bool = False,
                online: tuple[float, dict[str, Any]] | None = None,
                no_decoder: str | None = None) -> list[dict[str, Any]]:
    """The per-task loop every run goes through (trained, outside, arrays, in-memory modules):
    each task at each probe seed, its scores recorded (``record``: scores.json and the store,
    or memory) as the task ends; returns the rows of this call's (latent, task, settings),
    as recorded. ``latents()`` gives the frozen latents (computed on first use); ``model`` is
    what decoding tasks run on; ``no_decoder`` says why they are skipped when it cannot
    decode. ``online``: the online classifier's score, stored beside the linear probe."""
    from repeval.jsonio import canonical_json
    from repeval.probes import TASKS
    from repeval.store import Score

    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    wanted: set[tuple[str, str]] = set()  # (task or metric, canonical settings) of this call
    fresh: set[tuple[str, str, str]] = set()  # (task, metric, canonical settings) computed by this call
    for task_name in tasks:
        task = TASKS[task_name]
        if task.needs_model and no_decoder is not None:
            say(f"{spec.encoder}: task {task_name!r} decodes latents and {no_decoder}; skipped.")
            continue
        for index, settings in _probe_settings(task_name, spec.seed, device, overrides, probe_seeds):
            wanted.add((task_name, canonical_json(asdict(settings))))
            if task_name == "linear" and online is not None:
                wanted.add(("accuracy_online", canonical_json(ONLINE_SETTINGS)))
            if reuse and record.has(latent, task_name, asdict(settings)):
                continue
            t0 = time.perf_counter()
            result = (task.run(model, dataset, settings, device, latent) if task.needs_model
                      else task.run(latents(), settings, device))
            wall = time.perf_counter() - t0
            at = record.now()
            scores = _scores(spec, task_name, result, latent, settings, index, wall, at, log)
            if task_name == "linear" and online is not None:
                scores.append(Score(task="linear", metric="accuracy_online", value=online[0], latent=latent,
                                    settings=ONLINE_SETTINGS, details=online[1], created_at=at))
            record.add(scores)
            fresh.update((s.task, s.metric, canonical_json(s.settings)) for s in scores)
    out = []
    for row in record.rows(latent=latent, task=list(tasks)):
        key = canonical_json(row["settings"])
        if (row["task"], key) in wanted or (row["metric"] == "accuracy_online" and (row["metric"], key) in wanted):
            out.append({**row, "reused": (row["task"], row["metric"], key) not in fresh})
    return out


def _probe_settings(task_name: str, seed: int, device: str, overrides: dict[str, dict[str, Any]] | None,
                    probe_seeds: int | dict[str, int]):
    """``(index, settings)`` for each probe seed of ``task_name`` (index ``None`` for a task
    without a seed, which runs once)."""
    from repeval.probes import TASKS

    count = probe_seeds.get(task_name, 1) if isinstance(probe_seeds, dict) else probe_seeds
    if count < 1:
        raise UserError(f"{task_name}: probe seeds must be at least 1, got {count}.")
    if not _has_seed(TASKS[task_name]):
        return [(None, task_settings(task_name, seed, device, (overrides or {}).get(task_name)))]
    return [(index, task_settings(task_name, seed, device, (overrides or {}).get(task_name), index))
            for index in range(count)]


def _scores(spec: RunSpec, task_name: str, result, latent: str, settings, index: int | None, wall: float, at: str,
            log: Callable[[str], Any] | None) -> list:
    """The rows of one probe result (only its :func:`computable` scores), marked with the
    probe-seed index when the task has a seed."""
    from repeval.store import Score

    marker = {} if index is None else {"probe_seed": index}
    if isinstance(spec.source, dict) and spec.source.get("split"):  # repeval.probe split one labelled pair
        marker["split"] = spec.source["split"]
    return [Score(task=task_name, metric=m, value=v, latent=latent, settings=asdict(settings),
                  details={**result.details, **result.metric_details.get(m, {}), **marker}, wall_time_s=wall,
                  created_at=at) for m, v in computable(spec, task_name, result, log).items()]


class _Record:
    """Where a run's scores go: ``scores.json`` in its run directory first (the durable
    record), then the store when there is one (``None`` for sweep workers), with the same
    timestamps, so that ``repeval collect`` rebuilds exactly what the store holds. A run
    without a directory (``repeval.probe`` with no workdir) keeps its record in memory."""

    def __init__(self, store, spec: RunSpec, checkpoint, provenance: dict[str, Any] | None = None) -> None:
        from repeval import scorefile

        self.scorefile, self.store, self.spec = scorefile, store, spec
        self.path = checkpoint.path if checkpoint is not None else None
        at = scorefile.now()
        if self.path is None:
            self.record = {"format": scorefile.FORMAT, "run_id": spec.run_id, "spec": spec.to_dict(),
                           "provenance": provenance or {}, "checkpoint": None, "created_at": at,
                           "updated_at": at, "scores": []}
            self.store = None
            return
        self.record = scorefile.record_run(checkpoint.path, spec.run_id, spec.to_dict(), checkpoint.provenance,
                                           str(checkpoint.path), at=at)
        if store is not None:
            store.record_run(spec.run_id, spec.to_dict(), checkpoint.provenance, str(checkpoint.path),
                             created_at=self.record["created_at"], updated_at=at)

    def now(self) -> str:
        return self.scorefile.now()

    def has(self, latent: str, task: str, settings: dict[str, Any]) -> bool:
        """Whether scores of ``task`` with these settings are recorded for ``latent``."""
        return self.scorefile.holds(self.record, latent, task, settings)

    def add(self, scores: list) -> None:
        rows = [asdict(s) for s in scores]
        if self.path is None:
            self.scorefile.merge_scores(self.record, rows)
            return
        self.record = self.scorefile.add_scores(self.path, rows)
        if self.store is not None:
            self.store.add_scores(self.spec.run_id, scores)

    def rows(self, **filters: Any) -> list[dict[str, Any]]:
        if self.store is None:
            return self.scorefile.store_rows(self.record, **filters)
        return self.store.scores(run_id=self.spec.run_id, **filters)


def task_settings(task_name: str, seed: int, device: str, overrides: dict[str, Any] | None = None,
                  index: int = 0):
    """The settings :func:`run_one` probes ``task_name`` with for probe seed ``index`` of a run
    of ``seed`` on ``device``: the task's defaults, then ``overrides``, and for a task with a
    seed :func:`repeval.summary.probe_seed` of the run's seed (or of an overridden ``seed``)."""
    from repeval.probes import TASKS, resolve_settings
    from repeval.summary import probe_seed

    given = dict(overrides or {})
    if _has_seed(TASKS[task_name]):
        given["seed"] = probe_seed(int(given["seed"]) if "seed" in given else seed, index)
    return resolve_settings(task_name, device, given)


def run_along_training(spec: RunSpec, tasks: list[str], *, workdir: Path, snapshots: Iterable[int] | None = (),
                       log: Callable[[str], Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Probe every snapshot of ``spec``'s run (each stored as the scores of its own, shorter
    run); ``kwargs`` as :func:`run_one`. A snapshot that is missing (the run was trained
    without it) or damaged is skipped with a line on ``log``, never probed."""
    from repeval.checkpoint import Checkpoint, DamagedCheckpoint, run_dir
    from repeval.train import snapshot_points

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    rows: list[dict[str, Any]] = []
    for images in snapshot_points(spec, snapshots or ()):
        short = replace(spec, budget=images)
        found = Checkpoint(run_dir(workdir, short))
        if not found.exists():
            log(f"{spec.run_id}: no snapshot at {images:,} images (trained without it); skipped.")
            continue
        try:
            found.verify()
        except DamagedCheckpoint as exc:
            log(f"warning: {exc.message} Skipped; `repeval run` of its own budget ({images:,}) retrains it.")
            continue
        rows += run_one(short, tasks, workdir=workdir, log=log, snapshots=None, **kwargs)
    return rows


def run_outside(spec: RunSpec, tasks: list[str], *, dataset, device: str, workdir: Path | None, store,
                overrides: dict[str, dict[str, Any]] | None = None,
                log: Callable[[str], Any] | None = None,
                probe_seeds: int | dict[str, int] = 1, reuse: bool = False) -> list[dict[str, Any]]:
    """Probe an encoder from outside repeval (``spec.external``): checked and written as a run
    directory by :func:`repeval.external.prepare` first (a bad input stores nothing), then
    probed and stored like any run. Tasks that decode (``needs_model``) and the previews are
    skipped with a line on ``log`` when the encoder has no decoder (embeddings files, a
    module without ``decode``). With ``workdir=None`` nothing is written: the scores stay in
    memory and are returned."""
    from repeval.external import prepare
    from repeval.previews import write_previews

    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    outside = prepare(spec, dataset, device, workdir)
    record = _Record(store, spec, outside.checkpoint, outside.provenance)
    if outside.checkpoint is not None:
        if outside.no_decoder is None:
            write_previews(outside.checkpoint.path, outside.model, dataset, outside.latent, device)
        else:
            say(f"{spec.encoder}: {outside.no_decoder}, so no reconstructions or interpolations are previewed.")
    return probe_tasks(spec, tasks, record, model=outside.model, latents=lambda: outside.latents,
                       latent=outside.latent, dataset=dataset, device=device, overrides=overrides,
                       probe_seeds=probe_seeds, log=log, reuse=reuse, no_decoder=outside.no_decoder)


def _has_seed(task) -> bool:
    """Probes with a seed take the run's seed (or probe seeds derived from it), so training
    seeds spread the probes as well as training."""
    return any(f.name == "seed" for f in fields(task.settings))


def computable(spec: RunSpec, task_name: str, result, log: Callable[[str], Any] | None = None) -> dict[str, float]:
    """The scores of ``result`` to store, as floats. A score that could not be computed is never
    stored as a number, and a line on ``log`` says which and why: NaN (undefined, e.g. the
    lines benchmark's smoothness when no interpolation's angle moves) is stored as "no
    number" (SQL NULL; the report shows it as undefined and ``repeval check`` treats a number
    against it as a change); an infinite value, or one that is no number at all, is refused."""
    import math

    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    out: dict[str, float] = {}
    for metric, value in result.scores.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and math.isfinite(number):
            out[metric] = number
            continue
        undefined = result.details.get("n_undefined") if isinstance(result.details, dict) else None
        why = f" ({undefined} of the interpolations have no defined value)" if undefined else ""
        kept = number is not None and math.isnan(number)
        if kept:
            out[metric] = math.nan
        say(f"{spec.run_id}: {task_name} {metric} came out as {value!r}, which is no score{why}; "
            + ("it is stored as undefined (no number)." if kept else "it is not stored.")
            + " Check the run's latents (a diverged or collapsed model) and the task's settings.")
    return out
