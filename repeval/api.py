"""repeval from Python: :func:`probe`, :func:`evaluate`, :func:`load_results`, :class:`Probe`
and :class:`Prober`.

These are the command line's own functions with Python arguments: :func:`evaluate` builds
the :class:`repeval.evaluation.Request` that ``repeval run`` builds from its options, and
:func:`probe` is ``repeval run --encoder latents:FILE`` with the arrays held in memory
(:class:`repeval.external.ArraysSource`). Nothing here computes a score: validation, the
per-task loop, storage and the numbers live below (``repeval/evaluation.py``,
``repeval/pipeline.py``, the probes), and ``tests/test_architecture.py`` keeps it so.
Every bad input raises :class:`repeval.UserError`, a ``ValueError`` whose text is the
paragraph the shell prints.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from repeval.errors import UserError
from repeval.frame import Results

PROBES = ("linear", "knn", "kmeans")  # the default tasks: the paper's three probes of a latent space


def _tasks(tasks: str | Sequence[str]) -> list[str]:
    if isinstance(tasks, str):
        return [tasks]
    if not isinstance(tasks, Sequence) or not all(isinstance(t, str) for t in tasks):
        raise UserError(f"tasks={tasks!r}: give a task name or a list of them (`repeval tasks` lists them), "
                        "e.g. tasks=('linear', 'knn').")
    return list(tasks)


def _settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise UserError(f"settings={settings!r}: give a dict, {{'kmeans': {{'restarts': 100}}}} or "
                        "{'kmeans.restarts': 100}.")
    return dict(settings)


def _quiet(log: Callable[[str], Any] | None, verbose: bool) -> Callable[[str], Any] | None:
    if log is not None or verbose:
        return log
    return lambda message: None


def probe(z_train, y_train, z_test=None, y_test=None, *, tasks: str | Sequence[str] = PROBES,
          settings: dict[str, Any] | None = None, probe_seeds: int = 1, device: str = "auto",
          name: str = "arrays", dataset: str = "arrays", seed: int = 0, test_fraction: float = 0.2,
          workdir: str | Path | None = None, overwrite: bool = False, data_dir: str | Path | None = None,
          verbose: bool = False, log: Callable[[str], Any] | None = None) -> Results:
    """Probe latents you already have (NumPy arrays or torch tensors, one row per example).

    ``z_train``/``y_train`` (and ``z_test``/``y_test``) are checked exactly as a
    ``latents:`` file is (shapes, dtypes, NaN/inf, labels 0..C-1). Without a test split, a
    seeded, stratified split holds out ``test_fraction`` of the examples (its fraction, seed
    and counts are in every row's run spec and provenance). ``tasks``: probe names
    (``repeval tasks``); ``settings``: ``{"kmeans": {"restarts": 100}}`` or
    ``{"kmeans.restarts": 100}`` (k-means defaults to the paper's 1,000 restarts, minutes
    on a CPU for 60,000 latents). ``seed``: the run's seed, which the stochastic probes and
    the split follow. ``dataset``: the name the rows are grouped under; a registered
    dataset's name (e.g. ``"mnist"``) checks the labels against it.

    With ``workdir=None`` nothing is written anywhere. With a workdir the rows go to its
    ``repeval.db`` and a run directory, as ``repeval run --encoder latents:FILE`` writes
    them (so ``repeval report``, ``compare`` and ``check`` see them); calling again returns
    the stored rows marked ``reused`` unless ``overwrite=True``.
    """
    from repeval.external import ArraysSource

    source = ArraysSource(z_train, y_train, z_test, y_test, name=name, test_fraction=test_fraction,
                          split_seed=seed)
    return _run([source], tasks=tasks, dataset=dataset, seeds=(seed,), settings=settings, probe_seeds=probe_seeds,
                device=device, workdir=workdir, overwrite=overwrite, data_dir=data_dir, log=_quiet(log, verbose),
                progress=verbose)


def evaluate(encoder, dataset: str = "mnist", *, tasks: str | Sequence[str] = PROBES, seeds: Sequence[int] = (0,),
             budget: int | None = None, weights: str | Path | None = None, latent: str | Callable | None = None,
             latent_dim: int | None = None, hparams: dict[str, Any] | None = None,
             settings: dict[str, Any] | None = None, probe_seeds: int = 1, workdir: str | Path | None = None,
             overwrite: bool = False, device: str = "auto", precision: str = "auto", name: str | None = None,
             data_dir: str | Path | None = None, allow_unverified: bool = False, along_training: bool = False,
             verbose: bool = False, log: Callable[[str], Any] | None = None) -> Results:
    """Train (or reuse), extract and probe an encoder on a dataset: ``repeval run`` from Python.

    ``encoder``: anything ``--encoder`` accepts (a family such as ``"acai"``,
    ``"vae+acai"``, ``"latents:FILE.npz"``, ``"python:MODULE:FACTORY"`` with ``weights``),
    a list of them, or a ``torch.nn.Module`` in memory (the ``python:`` input contract:
    images (B, C, 32, 32) in [-1, 1]; identified by a digest of its class and state dict, so
    a changed model is a new run; ``weights`` are loaded into a copy of it). ``latent``: a
    family's latent choice (``"mean"``), or for a module a callable ``(model, x) -> z``
    when its latent is not ``encode(x)`` (nor ``forward``). ``seeds``: one trained model
    per seed. ``budget``: training images (the CPU default is small; see the README).
    ``precision``: ``"auto"`` (bf16 where the device computes it natively, else fp32),
    ``"fp32"`` or ``"bf16"``; part of a trained run's identity, as ``--precision``.

    With ``workdir=None`` nothing is kept: a family is trained in a temporary folder that
    is deleted afterwards. With a workdir, runs and scores go where ``repeval run`` puts
    them; calling again reuses the trained runs and returns the stored scores marked
    ``reused``, unless ``overwrite=True`` (which probes again; training is deterministic
    and never repeated).
    """
    from repeval.external import ModuleSource

    items = list(encoder) if isinstance(encoder, (list, tuple)) else [encoder]
    sources: list[Any] = []
    outside = {"weights": None if weights is None else Path(weights), "name": name}
    for item in items:
        if isinstance(item, str):
            sources.append(item)
        elif callable(getattr(item, "state_dict", None)):
            sources.append(ModuleSource(item, name=name, latent=latent if callable(latent) else None,
                                        weights=weights))
            outside["weights"] = outside["name"] = None  # used by this module
        else:
            raise UserError(f"repeval.evaluate: encoder is a {type(item).__name__}; give a registered name "
                            "(`repeval encoders`), latents:FILE.npz, python:MODULE:FACTORY or a torch.nn.Module.")
    if latent is not None and not isinstance(latent, str) and not callable(latent):
        raise UserError(f"repeval.evaluate: latent={latent!r}: give a family's latent name (e.g. 'mean') or, for a "
                        "module, a callable (model, x) -> latents.")
    return _run(sources, tasks=tasks, dataset=dataset, seeds=seeds, budget=budget, latent=latent if isinstance(
        latent, str) else None, latent_dim=latent_dim, hparams=hparams, settings=settings, probe_seeds=probe_seeds,
        device=device, precision=precision, workdir=workdir, overwrite=overwrite, data_dir=data_dir,
        allow_unverified=allow_unverified, along_training=along_training, outside=outside, log=_quiet(log, verbose),
        progress=verbose)


def _run(sources: list[Any], *, tasks, dataset, seeds, settings, probe_seeds, device, workdir, overwrite,
         precision="auto", data_dir=None, allow_unverified=False, budget=None, latent=None, latent_dim=None,
         hparams=None, along_training=False, outside=None, log=None, progress=False) -> Results:
    """One :class:`repeval.evaluation.Request`, planned and executed as ``repeval run`` does."""
    from repeval import evaluation
    from repeval.external import OutsideOptions

    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = (seeds,)
    options = OutsideOptions(**(outside or {}))
    request = evaluation.Request(
        encoders=sources, tasks=_tasks(tasks), dataset=dataset, seeds=list(seeds), latent_dim=latent_dim,
        budget=budget, device=device, precision=precision, hparams=dict(hparams or {}), latent=latent,
        settings=_settings(settings),
        probe_seeds=probe_seeds, outside=options, along_training=along_training,
        workdir=None if workdir is None else Path(workdir), data_dir=None if data_dir is None else Path(data_dir),
        allow_unverified=allow_unverified, reuse=not overwrite)
    plan = evaluation.plan(request)  # every input checked before any work
    in_memory = all(getattr(s, "in_memory", False) for s in plan.encoders)
    with contextlib.ExitStack() as stack:
        if workdir is None and not in_memory:  # nothing kept: train and probe in a folder deleted afterwards
            request.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="repeval-")))
            request.store = False
        rows = evaluation.execute(plan, log=log, progress=progress)
    return Results(rows)


def load_results(workdir: str | Path = "runs", **filters: Any) -> Results:
    """The scores stored in ``workdir``'s ``repeval.db`` (as ``repeval results`` lists them),
    filtered by column (``dataset="mnist"``, ``encoder=["acai", "baseline"]``, ``task``,
    ``metric``, ``seed``, ``budget``, ``latent``, ``latent_dim``, ``run_id``). A workdir
    without a store gives an empty Results (nothing is created)."""
    from repeval.frame import FILTERS
    from repeval.store import DB_FILENAME, Store

    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise UserError(f"load_results: unknown filter(s) {', '.join(unknown)}; filter by {', '.join(FILTERS)}.")
    if not (Path(workdir) / DB_FILENAME).is_file():
        return Results()
    with Store.in_workdir(Path(workdir)) as store:
        return Results(store.scores(**{k: (list(v) if isinstance(v, (tuple, set)) else v)
                                       for k, v in filters.items()}))


# ------------------------------------------------------------------------------ scikit-learn style
class Probe:
    """One probe as a scikit-learn estimator: ``Probe("knn").fit(Z_train, y_train).score(Z_test,
    y_test)`` gives the task's headline metric (its first declared one, e.g. accuracy) as a
    float, higher is better. ``random_state`` seeds the stochastic probes (k-means, label
    efficiency; None means 0, so scores repeat); the other keyword arguments are the
    task's settings (``repeval tasks --json`` lists them, e.g. ``Probe("kmeans",
    restarts=100)``). ``clone``, ``get_params`` and ``set_params`` work; ``__init__`` only
    stores, so values are checked when ``fit`` is called."""

    def __init__(self, task: str = "linear", *, random_state: int | None = None, device: str = "auto",
                 **settings: Any) -> None:
        self.task = task
        self.random_state = random_state
        self.device = device
        self.settings = settings

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"task": self.task, "random_state": self.random_state, "device": self.device, **self.settings}

    def set_params(self, **params: Any) -> "Probe":
        for key, value in params.items():
            if key in ("task", "random_state", "device"):
                setattr(self, key, value)
            else:
                self.settings[key] = value
        return self

    def __sklearn_tags__(self):
        """scikit-learn's tags (1.6+): a classifier-like estimator whose ``fit`` needs labels,
        so model selection (``cross_val_score``, ``GridSearchCV``) uses stratified folds."""
        from repeval.probes.base import sklearn_tags

        return sklearn_tags()

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.settings.items())
        return f"Probe({self.task!r}, random_state={self.random_state!r}{extra})"

    def _check(self) -> tuple[str, int]:
        from repeval.probes import TASKS, resolve_settings

        task = TASKS.get(self.task)
        if task.needs_model:
            raise UserError(f"Probe({self.task!r}) decodes latents with the model; a Probe reads latents only. Use "
                            "repeval.evaluate(...) for it.")
        seed = 0 if self.random_state is None else self.random_state
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UserError(f"Probe({self.task!r}, random_state={self.random_state!r}): give a non-negative integer "
                            "or None.")
        resolve_settings(self.task, "cpu", {k: v for k, v in self.settings.items() if k != "seed"})
        return self.task, seed

    def fit(self, X, y) -> "Probe":
        """Check and keep the training latents and labels; returns self."""
        from repeval.external import ArraysSource

        self._check()
        ArraysSource.check_split(X, y, where=f"{self!r}.fit")
        self.X_, self.y_ = X, y
        return self

    def score(self, X, y) -> float:
        """The task fitted on the training latents and scored on ``X``, ``y``."""
        from repeval.probes import TASKS

        task, seed = self._check()
        if not hasattr(self, "X_"):
            raise UserError(f"{self!r}.score was called before fit: call fit(X_train, y_train) first.")
        results = probe(self.X_, self.y_, X, y, tasks=(task,), settings={task: dict(self.settings)},
                        device=self.device, name="probe", seed=seed)
        present = {r["metric"] for r in results}  # linear's first, accuracy_online, needs a trained run
        return results.score(task, next(m.name for m in TASKS.get(task).metrics if m.name in present))


# ------------------------------------------------------------------------------ inside a training loop
class Prober:
    """Probe a model inside any training loop: ``prober(model, step)`` encodes ``train`` and
    ``test`` with the model (eval mode under ``no_grad``, its previous mode restored,
    BatchNorm statistics untouched), probes the latents with ``tasks`` and returns
    ``{"task/metric": value}``; ``history`` keeps one dict per call (with ``step``) and
    ``results`` every row.

    ``train``/``test``: ``(x, y)`` pairs of tensors or arrays, or anything iterable over
    ``(x, y)`` batches (a DataLoader); at most ``max_examples`` of each are kept (a seeded
    draw, once). ``latent``: a callable ``(model, x) -> z``; without it ``model.encode(x)``,
    else ``model(x)``. ``settings``: as :func:`probe`.
    """

    def __init__(self, train, test, *, tasks: str | Sequence[str] = ("knn",), max_examples: int | None = 10_000,
                 latent: Callable | None = None, settings: dict[str, Any] | None = None, device: str = "auto",
                 batch_size: int = 256, seed: int = 0, name: str = "prober") -> None:
        from repeval.external import ArraysSource

        if latent is not None and not callable(latent):
            raise UserError(f"repeval.Prober: latent={latent!r}: give a callable (model, x) -> latents, or leave it "
                            "out to use model.encode(x) (else model(x)).")
        self.tasks, self.latent, self.device = _tasks(tasks), latent, device
        self.settings, self.batch_size, self.seed, self.name = _settings(settings), batch_size, seed, name
        self.train = ArraysSource.gather(train, max_examples, seed, "train", "repeval.Prober")
        self.test = ArraysSource.gather(test, max_examples, seed, "test", "repeval.Prober")
        self.history: list[dict[str, Any]] = []
        self.results = Results()

    def __call__(self, model, step: int | None = None) -> dict[str, float]:
        from repeval.extract import encode_inputs

        (x_train, y_train), (x_test, y_test) = self.train, self.test
        z_train = encode_inputs(model, x_train, latent=self.latent, batch_size=self.batch_size)
        z_test = encode_inputs(model, x_test, latent=self.latent, batch_size=self.batch_size)
        results = probe(z_train, y_train, z_test, y_test, tasks=self.tasks, settings=self.settings,
                        device=self.device, name=self.name, seed=self.seed)
        step = len(self.history) if step is None else step
        for row in results:
            row["step"] = step
        self.results = self.results + results
        values = {f"{r['task']}/{r['metric']}": float(r["value"]) for r in results}
        self.history.append({"step": step, **values})
        return values
