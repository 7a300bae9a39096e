"""Score rows out to an experiment tracker: MLflow, Weights & Biases or TensorBoard.

:func:`log_rows` is the one function; ``repeval export --to mlflow|wandb|tensorboard`` starts
a run of the tracker (:func:`export`) and calls it, and ``Results.log_to`` calls it from
Python. Tracker packages are extras (``repeval[mlflow]``, ``repeval[wandb]``,
``repeval[tensorboard]``), imported only when a run is started here; :func:`log_rows` itself
only calls methods of the object it is given.

What goes out (:func:`plan`, the same for every tracker):

* **Metrics.** Rows are aggregated as the report does (:func:`repeval.summary.summarise`:
  over probe seeds within a model, then over training seeds), and each group's mean is one
  value named ``DATASET/ENCODER/TASK/METRIC`` (``mnist/acai/kmeans/accuracy``), logged at
  step = the training budget (images), so several budgets are a curve. Where the rows of
  one dataset, encoder, task and metric hold several latent sizes, latent tensors or
  settings, the differing ones name themselves in the key, run qualifiers after the encoder
  and settings after the task: ``mnist/acai/latent_dim_32/kmeans/accuracy``,
  ``mnist/acai/knn/k_5/accuracy``. ``per_seed=True`` adds each training seed's own value as
  ``DATASET/ENCODER/seed_S/TASK/METRIC``.
* **Params.** Each task's settings, flattened (``knn.k``, ``linear.C``): one value, or a
  JSON list of the distinct values when the rows differ (then the keys say which is which).
  A probe seed that follows the run's seed reads ``run seed``.
* **Undefined scores** (NaN, e.g. a diverged run) are not logged as numbers: they are listed
  in the result's ``skipped`` and in a warning of the ``repeval.trackers`` logger.

Keys are legal in every tracker: MLflow's rules (letters, digits, ``_ - . /`` and spaces, no
``.``/``..`` segment, at most 250 characters) hold for all, other characters become ``_``,
and a key made ambiguous by that (or by truncation, which appends a digest) gets ``_2``,
``_3``, ... in a fixed order. Param values longer than MLflow's 6,000 characters are cut.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import re
import types
from pathlib import Path
from typing import Any

from repeval.errors import UserError

log = logging.getLogger(__name__)

TRACKERS = ("mlflow", "wandb", "tensorboard")
LABELS = {"mlflow": "MLflow", "wandb": "Weights & Biases", "tensorboard": "TensorBoard"}
MAX_KEY_LENGTH = 250  # MLflow's limit on a metric or param key
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
REQUIRED_COLUMNS = ("dataset", "encoder", "latent", "latent_dim", "seed", "budget", "task", "metric", "value",
                    "settings")
_BAD_CHARACTERS = re.compile(r"[^\w.\- ]")  # MLflow's key characters, less '/' (our separator) and ':' (Windows)
_MISSING = object()


class Logged(dict):
    """What :func:`log_rows` logged: metric key → value (the value at the largest budget
    when a key was logged at several).

    Attributes: ``tracker`` (``"mlflow"``, ``"wandb"``, ``"tensorboard"``, or ``None`` for a
    :func:`plan`), ``params`` (param key → text), ``history`` (key → {step: value}, every
    point logged; the step is the budget), ``skipped`` (one line per undefined score that
    was not logged).
    """

    def __init__(self, tracker: str | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.params: dict[str, str] = {}
        self.history: dict[str, dict[int, float]] = {}
        self.skipped: list[str] = []

    @property
    def points(self) -> int:
        """How many (key, step) values were logged."""
        return sum(len(steps) for steps in self.history.values())

    def by_step(self) -> dict[int, dict[str, float]]:
        """The values per step (budget), steps ascending: what one logging call sends."""
        steps: dict[int, dict[str, float]] = {}
        for key, points in self.history.items():
            for step, value in points.items():
                steps.setdefault(step, {})[key] = value
        return dict(sorted(steps.items()))


# ------------------------------------------------------------------------------ keys
def _segment(text: Any) -> str:
    """One ``/``-separated part of a key, with only characters every tracker accepts."""
    part = _BAD_CHARACTERS.sub("_", str(text)).strip()
    return part if part and not part.startswith(".") else f"_{part}"  # no '', '.', '..' (MLflow: paths)


def _prefix(prefix: str) -> str:
    """The prefix with each part cleaned as a key segment; a trailing ``/`` is kept."""
    if not isinstance(prefix, str):
        raise UserError(f"prefix must be text (e.g. 'eval/'), got a {type(prefix).__name__}: {prefix!r}.")
    parts = [p for p in prefix.split("/") if p]
    cleaned = "/".join(_segment(p) for p in parts)
    return cleaned + "/" if cleaned and prefix.endswith("/") else cleaned


def _fit(key: str) -> str:
    """``key`` within MLflow's length limit: a long key is cut and ends with a digest of itself."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return f"{key[:MAX_KEY_LENGTH - 11]}_{digest}"


def _text(value: Any) -> str:
    """A setting's value as text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _qualifier(name: str, value: Any) -> str:
    return _segment(f"{name}_{'none' if value is _MISSING else _text(value)}")


def _flatten(settings: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Nested settings as ``{"a.b": value}``, keys sorted."""
    out: dict[str, Any] = {}
    for name in sorted(settings, key=str):
        value = settings[name]
        if isinstance(value, dict) and value:
            out.update(_flatten(value, (*path, str(name))))
        else:
            out[".".join((*path, str(name)))] = value
    return out


def _unique(keys: dict[str, str]) -> dict[str, str]:
    """identity → key, with keys that two identities share made distinct: the first identity
    (in sorted order) keeps the key, the next get ``_2``, ``_3``, ..."""
    owners: dict[str, list[str]] = {}
    for identity in sorted(keys):
        owners.setdefault(keys[identity], []).append(identity)
    taken = set(owners)
    out = {}
    for key, identities in owners.items():
        out[identities[0]] = key
        n = 2
        for identity in identities[1:]:
            while _fit(f"{key}_{n}") in taken:
                n += 1
            out[identity] = _fit(f"{key}_{n}")
            taken.add(out[identity])
    return out


# ------------------------------------------------------------------------------ plan
def _value_order(text: str) -> tuple[int, Any, str]:
    """Distinct param values in order: numbers by value, then everything else by its JSON."""
    value = json.loads(text)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, text)
    return (1, 0, text)


def _checked(rows: Any) -> list[dict[str, Any]]:
    if isinstance(rows, (str, bytes, dict)) or not hasattr(rows, "__iter__"):
        raise UserError(f"log_rows takes a list of score rows (dicts as repeval.store.Store.scores() returns them), "
                        f"got a {type(rows).__name__}.")
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"Score row {i} is a {type(row).__name__}, not a dict: log_rows takes rows as "
                            "repeval.store.Store.scores() returns them.")
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise UserError(f"Score row {i} has no {', '.join(missing)}: log_rows takes rows as "
                            f"repeval.store.Store.scores() returns them (columns {', '.join(REQUIRED_COLUMNS)}).")
        if not isinstance(row["settings"], dict):
            raise UserError(f"Score row {i} has settings of type {type(row['settings']).__name__}; they must be "
                            "a dict (as the store returns them).")
        value = row["value"]
        if value is None:  # undefined, as strict JSON writes NaN
            rows[i] = {**row, "value": math.nan}
        elif isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise UserError(f"Score row {i} has the value {value!r} ({type(value).__name__}); a score is a number "
                            "(NaN or None when undefined).")
    return rows


def plan(rows: list[dict[str, Any]], *, prefix: str = "", per_seed: bool = False) -> Logged:
    """What :func:`log_rows` logs for ``rows``, without a tracker (keys, steps, params and
    skipped scores as the module docstring describes)."""
    from repeval.jsonio import canonical_json
    from repeval.summary import summarise

    rows = _checked(rows)
    head = _prefix(prefix)
    out = Logged()
    groups = summarise(rows, intervals=False)

    by_base: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for g in groups:
        by_base.setdefault((g["dataset"], g["encoder"], g["task"], g["metric"]), []).append(g)

    wanted: dict[str, str] = {}  # identity → key
    points: list[tuple[str, int, float]] = []  # (identity, step, value)
    for (dataset, encoder, task, metric), members in by_base.items():
        flat = [_flatten(g["settings"]) for g in members]
        names = sorted({name for f in flat for name in f})
        varying = [n for n in names if len({canonical_json([n in f, f.get(n)]) for f in flat}) > 1]
        several_dims = len({g["latent_dim"] for g in members}) > 1
        several_latents = len({g["latent"] for g in members}) > 1
        for g, f in zip(members, flat):
            run_parts = [_segment(dataset), _segment(encoder)]
            if several_dims:
                run_parts.append(_qualifier("latent_dim", g["latent_dim"]))
            if several_latents:
                run_parts.append(_qualifier("latent", g["latent"]))
            task_parts = [_segment(task), *(_qualifier(n, f.get(n, _MISSING)) for n in varying)]
            identity = canonical_json([dataset, encoder, g["latent_dim"], g["latent"], g["settings"], task, metric])
            seeds: list[tuple[str, Any, float]] = [(identity, None, g["mean"])]
            if per_seed:
                seeds += [(canonical_json([identity, seed]), seed, value) for seed, value in
                          sorted(g["model_means"].items())]
            for ident, seed, value in seeds:
                parts = [*run_parts, *([_qualifier("seed", seed)] if seed is not None else []), *task_parts,
                         _segment(metric)]
                wanted[ident] = _fit(head + "/".join(parts))
                points.append((ident, int(g["budget"] or 0), value))
    keys = _unique(wanted)

    for ident, step, value in sorted(points, key=lambda p: (p[1], keys[p[0]])):
        key = keys[ident]
        value = float(value)
        if not math.isfinite(value):
            out.skipped.append(f"{key} at budget {step}: undefined ({value}), not logged")
            continue
        out.history.setdefault(key, {})[step] = value
        out[key] = value

    values: dict[str, set[str]] = {}
    for g in groups:
        for name, value in _flatten(g["settings"]).items():
            values.setdefault(f"{_segment(g['task'])}.{_segment(name)}", set()).add(canonical_json(value))
    for name in sorted(values):
        distinct = sorted(values[name], key=_value_order)
        text = _text(json.loads(distinct[0])) if len(distinct) == 1 else "[" + ", ".join(distinct) + "]"
        if len(text) > MAX_PARAM_LENGTH:
            text = text[:MAX_PARAM_LENGTH - 3] + "..."
        out.params[_fit(head + name)] = text
    return out


# ------------------------------------------------------------------------------ trackers
def _kind(tracker: Any) -> tuple[str, Any]:
    """(kind, the object to call) for a tracker, or a UserError naming what is accepted."""
    if isinstance(tracker, types.ModuleType) and tracker.__name__ == "wandb":
        run = getattr(tracker, "run", None)
        if run is None:
            raise UserError("The wandb module has no active run: call wandb.init(...) first and pass the run it "
                            "returns (or the wandb module while that run is active).")
        return "wandb", run
    if callable(getattr(tracker, "add_scalar", None)):
        return "tensorboard", tracker
    if callable(getattr(tracker, "log", None)) and hasattr(tracker, "config") and \
            callable(getattr(tracker, "define_metric", None)):
        return "wandb", tracker
    if callable(getattr(tracker, "log_metrics", None)):
        return "mlflow", tracker
    kind = type(tracker)
    name = tracker.__name__ if isinstance(tracker, types.ModuleType) else f"{kind.__module__}.{kind.__qualname__}"
    hint = ""
    if callable(getattr(tracker, "log_batch", None)):
        hint = (" An MlflowClient needs a run id for every call: pass the mlflow module inside "
                "`with mlflow.start_run(run_id=...)` instead.")
    elif hasattr(tracker, "experiment"):
        hint = " For a Lightning logger, pass the logger itself (it has log_metrics) or its .experiment."
    raise UserError(f"Cannot log scores to a {'module ' if isinstance(tracker, types.ModuleType) else ''}{name}: "
                    "repeval logs to the mlflow module (inside mlflow.start_run(), or any object with "
                    "log_metrics(metrics, step=...) and optionally log_params(params), such as a Lightning "
                    "logger), a W&B run (what wandb.init() returns, or the wandb module while a run is active) "
                    "or a TensorBoard SummaryWriter (torch.utils.tensorboard or tensorboardX). Pass one of "
                    f"those.{hint}")


def _mlflow_params(tracker: Any, params: dict[str, str]) -> None:
    log_params = getattr(tracker, "log_params", None) or getattr(tracker, "log_hyperparams", None)
    if not params or not callable(log_params):
        return
    try:
        log_params(params)
    except Exception as exc:
        if type(exc).__name__ != "MlflowException":
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"MLflow refused the probe settings as params ({first}). A param of an MLflow run "
                        "cannot change its value: log these scores to a new run, or give a prefix (prefix=..., "
                        "repeval export --prefix) so that their params get names of their own.") from exc


def _markdown(params: dict[str, str]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {cell(k)} | {cell(v)} |" for k, v in params.items())])


def log_rows(rows: list[dict[str, Any]], tracker: Any, *, prefix: str = "", per_seed: bool = False) -> Logged:
    """Log score rows to an experiment tracker and return what was logged (key → value).

    ``rows`` are shaped as :meth:`repeval.store.Store.scores` returns them. ``tracker`` is
    one of:

    * the ``mlflow`` module (inside ``mlflow.start_run()``; MLflow starts a run otherwise), or
      any object with ``log_metrics(metrics, step=...)`` — params then go to its
      ``log_params`` (or ``log_hyperparams``, so a Lightning logger works) if it has one;
    * a W&B run (``wandb.init()``'s return value, or the ``wandb`` module while a run is
      active): one ``run.log`` per budget, with ``PREFIXbudget`` as the metrics' x-axis
      (``define_metric``), settings into ``run.config``;
    * a TensorBoard ``SummaryWriter``: ``add_scalar(key, value, global_step=budget)``, the
      settings as one markdown table (``add_text``, tag ``PREFIXsettings``), then ``flush``.

    Keys, params, seeds, budgets and undefined scores: see the module docstring
    (:func:`plan` gives the same result without logging). ``prefix`` goes before every key
    (e.g. ``"eval/"``); ``per_seed`` adds each training seed's value. The result is a
    :class:`Logged`: a dict with ``params``, ``history`` and ``skipped`` attributes.
    Anything else as ``tracker`` is a :class:`~repeval.errors.UserError`.
    """
    kind, target = _kind(tracker)
    out = plan(rows, prefix=prefix, per_seed=per_seed)
    out.tracker = kind
    if out.skipped:
        log.warning("repeval: %d undefined (NaN) score%s not logged to %s (e.g. %s); the result's .skipped "
                    "lists them", len(out.skipped), "s" * (len(out.skipped) != 1), LABELS[kind], out.skipped[0])
    steps = out.by_step()
    if kind == "mlflow":
        _mlflow_params(target, out.params)
        for step, metrics in steps.items():
            target.log_metrics(metrics, step=step)
    elif kind == "wandb":
        if out.params:
            target.config.update(out.params, allow_val_change=True)
        step_key = _prefix(prefix) + "budget"
        if steps:
            target.define_metric(step_key, hidden=True)
            for key in out.history:
                target.define_metric(key, step_metric=step_key)
        for step, metrics in steps.items():
            target.log({step_key: step, **metrics})
    else:
        if out.params and callable(getattr(target, "add_text", None)):
            target.add_text(_prefix(prefix) + "settings", _markdown(out.params))
        for step, metrics in steps.items():
            for key, value in metrics.items():
                target.add_scalar(key, value, global_step=step)
        if callable(getattr(target, "flush", None)):
            target.flush()
    return out


# ------------------------------------------------------------------------------ export (the CLI)
def require(kind: str) -> Any:
    """The tracker's package (``torch.utils.tensorboard`` for TensorBoard), or a UserError
    naming the extra that installs it."""
    module = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "torch.utils.tensorboard"}[kind]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_package(kind, exc) from exc


def missing_package(kind: str, exc: BaseException) -> UserError:
    package = {"mlflow": "mlflow-skinny (with SQLAlchemy and Alembic for its SQLite store)", "wandb": "wandb",
               "tensorboard": "tensorboard"}[kind]
    return UserError(f"Exporting to {LABELS[kind]} needs {package}, which is not installed here ({exc}). "
                     f'Install it with: pip install "repeval[{kind}]".')


def export(rows: list[dict[str, Any]], to: str, *, tracking_uri: str | None = None, experiment: str | None = None,
           run_name: str | None = None, project: str | None = None, logdir: Path | str | None = None,
           prefix: str = "", per_seed: bool = False) -> tuple[Logged, str]:
    """Start a run of tracker ``to``, :func:`log_rows` into it, end the run; returns what was
    logged and where (one line). ``tracking_uri``/``experiment`` are MLflow's (default: its
    own, ``MLFLOW_TRACKING_URI``), ``project`` W&B's (``WANDB_MODE=offline`` keeps the run
    local), ``logdir`` TensorBoard's (a ``run_name`` is a subfolder of it)."""
    if to not in TRACKERS:
        raise UserError(f"Unknown tracker {to!r}: choose one of {', '.join(TRACKERS)}.")
    given = {"tracking_uri": ("--tracking-uri", tracking_uri, "mlflow"), "experiment": ("--experiment", experiment,
             "mlflow"), "project": ("--project", project, "wandb"), "logdir": ("--logdir", logdir, "tensorboard")}
    wrong = [flag for flag, value, owner in given.values() if value is not None and owner != to]
    if wrong:
        raise UserError(f"{', '.join(wrong)} do{'es' if len(wrong) == 1 else ''} not apply to --to {to}: "
                        "--tracking-uri and --experiment are MLflow's, --project is W&B's, --logdir is "
                        "TensorBoard's.")
    package = require(to)
    if to == "mlflow":
        try:
            if tracking_uri:
                package.set_tracking_uri(tracking_uri)
            if experiment:
                package.set_experiment(experiment)
            with package.start_run(run_name=run_name) as run:
                logged = log_rows(rows, package, prefix=prefix, per_seed=per_seed)
        except ImportError as exc:
            raise missing_package(to, exc) from exc
        where = (f"MLflow run {run.info.run_name} ({run.info.run_id}) in experiment {run.info.experiment_id}, "
                 f"tracking URI {package.get_tracking_uri()}")
        return logged, where
    if to == "wandb":
        try:
            run = package.init(project=project, name=run_name, job_type="repeval-export")
        except importlib.import_module("wandb.errors").Error as exc:
            raise UserError(f"W&B could not start a run: {exc}. Log in (`wandb login`, or WANDB_API_KEY) or set "
                            "WANDB_MODE=offline to keep the run on this machine (`wandb sync` uploads it "
                            "later).") from exc
        try:
            logged = log_rows(rows, run, prefix=prefix, per_seed=per_seed)
        finally:
            run.finish()
        name = f"W&B run {run.id}" + (f" ({run.name})" if run.name else "")
        if run.offline:
            where = (f"{name} of project {run.project}, offline in {run.settings.sync_dir} "
                     f"(`wandb sync {run.settings.sync_dir}` uploads it)")
        else:
            where = f"{name} at {run.url}"
        return logged, where
    base = Path(logdir) if logdir is not None else Path("tensorboard")
    folder = base / run_name if run_name else base
    writer = package.SummaryWriter(log_dir=str(folder))
    try:
        logged = log_rows(rows, writer, prefix=prefix, per_seed=per_seed)
    finally:
        writer.close()
    return logged, f"TensorBoard events in {folder} (`tensorboard --logdir {base}`)"
