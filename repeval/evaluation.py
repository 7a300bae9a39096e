"""One evaluation request, checked whole and then run: what ``repeval run`` and
``repeval.evaluate`` both call.

The command line parses its options into an :class:`Request`; Python builds the same
request from keyword arguments. :func:`plan` resolves every name and checks every value
(encoders, the dataset, tasks, probe settings, probe seeds, snapshots, the latent choice)
before any work, and :func:`execute` trains or reuses each run, probes it and stores its
scores through :mod:`repeval.pipeline`. Nothing here formats output: the CLI prints the
rows, the API wraps them in :class:`repeval.frame.Results`.

An encoder is a registered name (a family, ``FAMILY+REGULARISER``, ``latents:FILE``,
``python:MODULE:FACTORY``) or an in-memory source from :mod:`repeval.external` (arrays, a
module), which makes its own :class:`~repeval.specs.RunSpec` per dataset and seed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from repeval.errors import UserError


@dataclass
class Request:
    """What one ``repeval run`` (or ``repeval.evaluate``) asks for, as given."""

    encoders: Sequence[Any]
    tasks: Sequence[str]
    dataset: str | None = None  # None: the latents: files' meta names it, else mnist
    seeds: Sequence[int] = (0,)
    latent_dim: int | None = None
    budget: int | None = None
    device: str = "auto"
    precision: str = "auto"  # auto, fp32, bf16 (repeval/precision.py)
    hparams: dict[str, Any] = field(default_factory=dict)
    latent: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # "task.key" -> value, or {task: {key: value}}
    probe_seeds: int = 1
    regulariser: str | None = None
    outside: Any = None  # repeval.external.OutsideOptions
    snapshots: list[int] | None = field(default_factory=list)  # None: none at all
    pack: bool | None = None
    along_training: bool = False
    checkpoint_every: float | None = None
    store: bool = True
    workdir: Path | None = Path("runs")  # None: nothing is written anywhere (in-memory sources only)
    data_dir: Path | None = None
    allow_unverified: bool = False
    reuse: bool = False  # return stored scores of the same (latent, task, settings) instead of recomputing


@dataclass
class Plan:
    """A checked request: every spec with its device, the tasks, the resolved overrides."""

    request: Request
    dataset: str
    specs: list[tuple[Any, str]]  # (RunSpec, device)
    tasks: list[str]
    overrides: dict[str, dict[str, Any]]
    probe_seeds: dict[str, int]
    grouping: Any  # a stand-in dataset entry for embeddings under an unregistered name, else None
    encoders: list[Any]
    latents: dict[str, str | None]  # run id -> the latent choice that applies to it


def _say(log: Callable[[str], Any] | None) -> Callable[[str], Any]:
    return log or (lambda message: print(message, file=sys.stderr, flush=True))


# ------------------------------------------------------------------------------ encoders
def regularised(name: str, regulariser: str | None) -> str:
    """``name`` with ``regulariser`` added (FAMILY+REGULARISER), validated."""
    import encoders

    family = encoders.get(name)
    if not regulariser or name.endswith(f"+{regulariser}"):
        return name
    if getattr(family, "outside", False):
        raise UserError(f"--regularizer {regulariser} adds a training loss, but {name} is an encoder from outside "
                        "repeval (not trained here). Leave --regularizer out for it.")
    composed = f"{name}+{regulariser}"
    encoders.get(composed)  # a family or regulariser that cannot compose fails here, with the reason
    return composed


def encoder_names(requested: Sequence[Any], regulariser: str | None = None, outside=None) -> list[Any]:
    """The encoders of a request: ``all`` expanded (the families ``regulariser`` composes with,
    when one is given), the regulariser added, every name validated, before any work.
    In-memory sources pass through."""
    import encoders
    from repeval.external import OutsideOptions, check_options

    names: list[Any] = []
    for name in requested:
        if not isinstance(name, str):
            names.append(name)
        elif name == "all":
            names += (encoders.REGISTRY.composable_with(encoders.REGULARISERS.get(regulariser)) if regulariser
                      else list(encoders.REGISTRY))
        else:
            names.append(name)
    typed = [n for n in names if isinstance(n, str)]
    typed = list(dict.fromkeys(regularised(n, regulariser) for n in dict.fromkeys(typed)))
    for name in typed:
        encoders.get(name)  # an unknown name fails here, before any work
    check_options(typed, outside or OutsideOptions())
    return typed + [n for n in names if not isinstance(n, str)]


def _is_embeddings(name: Any) -> bool:
    from repeval.external import is_embeddings

    return bool(getattr(name, "embeddings", False)) if not isinstance(name, str) else is_embeddings(name)


def command_dataset(dataset: str | None, names: list[Any]) -> str:
    """The dataset: ``dataset`` when given; else, for latents: files, the dataset their meta
    names (all the same); else mnist."""
    from repeval.external import meta_dataset

    if dataset is not None:
        return dataset
    typed = [n for n in names if isinstance(n, str)]
    named = {n: meta_dataset(n) for n in typed}
    found = {d for d in named.values() if d}
    if len(found) > 1:
        raise UserError(f"The latents: files name different datasets in their meta ({', '.join(sorted(found))}); "
                        "give --dataset NAME, or run them separately.")
    files = [n for n in typed if _is_embeddings(n)]
    if not found and files:
        raise UserError(f"{files[0]} does not say which dataset its rows are (no 'dataset' in its meta): give "
                        "--dataset NAME, a registered dataset (its labels are then checked against the file's) "
                        "or a name of your own to group the scores under.")
    if found and len(files) < len(names):
        raise UserError(f"The latents: file names the dataset {found.pop()!r}; give --dataset explicitly when it is "
                        "probed beside other encoders, so they all use the same data.")
    return found.pop() if found else "mnist"


def registered_dataset(dataset: str) -> bool:
    from repeval import data

    try:
        data.get(dataset)
    except UserError:
        return False
    return True


def grouping_entry(dataset: str, names: list[Any]):
    """For embeddings grouped under a name that is no registered dataset, a stand-in dataset
    entry with no features, which tasks are expanded against; else None."""
    from types import SimpleNamespace

    if registered_dataset(dataset) or not names or not all(_is_embeddings(n) for n in names):
        return None
    return SimpleNamespace(name=dataset, features=frozenset())


# ------------------------------------------------------------------------------ settings
def split_settings(settings: dict[str, Any], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """``{"task.key": value}`` (the command line's --set) or ``{task: {key: value}}`` → per-task
    overrides; every task named must be one of ``tasks``."""
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in (settings or {}).items():
        if isinstance(value, dict) and "." not in key:
            task, items = key, value
        else:
            task, dot, name = key.partition(".")
            if not dot:
                task = ""
            items = {name: value}
        if not task or task not in tasks:
            if isinstance(value, dict) and "." not in key:  # {task: {key: value}}: name it as --set does
                key = f"{key}.{next(iter(value), 'KEY')}"
            raise UserError(f"--set {key}=... must name one of this run's tasks ({', '.join(tasks)}) "
                            "as TASK.KEY, e.g. --set kmeans.restarts=1000.")
        overrides.setdefault(task, {}).update(items)
    return overrides


def probe_seed_counts(default: int, overrides: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Probe seeds per task: ``default`` (--probe-seeds), or a task's ``TASK.probe_seeds=N``
    (taken out of that task's setting overrides)."""
    from repeval.probes import TASKS

    def checked(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{what} must be a whole number of at least 1 (how many probe seeds each stochastic "
                            f"probe runs with), got {value!r}. Use 1 for a single run per trained model.")
        return value

    counts = {name: checked(default, "--probe-seeds") for name in TASKS}
    for task, values in overrides.items():
        if "probe_seeds" in values:
            counts[task] = checked(values.pop("probe_seeds"), f"--set {task}.probe_seeds")
    return counts


def check_settings(tasks: list[str], overrides: dict[str, dict[str, Any]], devices: set[str]) -> None:
    """Every task's settings on every device of the request, with the overrides, checked
    against their declared ranges now (the probes resolve them again when they run)."""
    from repeval.probes import resolve_settings

    for task in tasks:
        for device in sorted(devices):
            resolve_settings(task, device, overrides.get(task, {}))


def snapshot_list(text: str | None, none: bool) -> list[int] | None:
    """The trainer's ``snapshots`` argument from ``--snapshots N,M`` / ``--no-snapshots``:
    None (none at all) or the extra image counts."""
    if none:
        if text:
            raise UserError("--snapshots and --no-snapshots contradict each other; give one of them.")
        return None
    out = []
    for item in (text or "").replace(" ", "").split(","):
        if not item:
            continue
        try:
            out.append(int(item.replace("_", "")))
        except ValueError:
            raise UserError(f"--snapshots {text!r}: {item!r} is not a whole number of images; give "
                            "comma-separated counts such as --snapshots 6144,12288.") from None
    return out


# ------------------------------------------------------------------------------ specs
def resolve_spec(encoder: Any, dataset: str, *, latent_dim=None, budget=None, seed: int = 0, device: str = "auto",
                 hparams: dict[str, Any] | None = None, regulariser: str | None = None, outside=None,
                 precision: str = "auto"):
    """``(RunSpec, device)`` of one encoder on ``dataset`` with ``seed``: a family's spec, or an
    outside encoder's (its files read and checked now), or an in-memory source's."""
    import encoders
    from repeval.devices import resolve_device
    from repeval.specs import make_spec

    device = resolve_device(device)
    hparams = dict(hparams or {})
    if not isinstance(encoder, str):  # an in-memory source (repeval/external.py)
        return encoder.make_spec(dataset, seed=seed, latent_dim=latent_dim, hparams=hparams), device
    encoder = regularised(encoder, regulariser)
    family = encoders.get(encoder)
    if getattr(family, "outside", False):  # latents: or python: (repeval/external.py)
        from repeval import external

        if outside is None:
            raise UserError(f"{encoder} is an encoder from outside repeval: it is not trained here. Probe it with "
                            f"`repeval run --encoder {encoder} --task ...`.")
        return external.make_spec(encoder, dataset, seed=seed, options=outside, latent_dim=latent_dim,
                                  hparams=hparams), device
    spec = make_spec(encoder, dataset, latent_dim=latent_dim, budget=budget if family.learned else None,
                     seed=seed, device=device, hparams=hparams, precision=precision)
    return spec, device


def latent_for(spec, latent: str | None) -> str | None:
    """The latent choice for one spec: ``latent`` when its encoder has it, else its default (None)."""
    import encoders

    if spec.external:
        return None
    return latent if latent in encoders.get(spec.encoder).latents else None


def announce_budget(specs, budget, log: Callable[[str], Any]) -> None:
    """The first line of output says when a CPU run uses the small default budget."""
    from repeval.specs import PAPER_BUDGET

    defaulted = [s for s, dev in specs if budget is None and s.budget and s.budget != PAPER_BUDGET]
    if defaulted:
        log(f"CPU run: default budget {defaulted[0].budget:,} images (the paper's 2^24 is for GPUs; "
            "set --budget to change it).")


def writable(workdir: Path, out: Path | None = None) -> None:
    """The workdir (and ``--out``'s folder) can be written, checked before any work."""
    from repeval.paths import writable_dir

    writable_dir(workdir, "--workdir")
    if out is not None:
        writable_dir(Path(out).expanduser().parent, f"The folder of --out {out}:")


# ------------------------------------------------------------------------------ plan and run
def plan(request: Request) -> Plan:
    """Check the whole request before any work: every problem is a :class:`UserError`."""
    import encoders
    from repeval import pipeline
    from repeval.external import OutsideOptions
    from repeval.train import snapshot_points

    outside = request.outside or OutsideOptions()
    names = encoder_names(request.encoders, request.regulariser, outside)
    if not names:
        raise UserError("No encoder given: name at least one (`repeval encoders` lists them).")
    dataset = command_dataset(request.dataset, names)
    grouping = grouping_entry(dataset, names)
    tasks = pipeline.expand_tasks(list(request.tasks), dataset, entry=grouping)
    if not tasks:
        raise UserError("No task given: name at least one (`repeval tasks` lists them).")
    overrides = split_settings(request.settings, tasks)
    counts = probe_seed_counts(request.probe_seeds, overrides)
    latent = request.latent
    if latent is not None and isinstance(latent, str):
        typed = [n for n in names if isinstance(n, str)]
        if typed and not any(latent in encoders.get(n).latents for n in typed):
            choices = "; ".join(f"{n}: {', '.join(encoders.get(n).latents)}" for n in typed)
            raise UserError(f"No chosen encoder has a latent {latent!r} ({choices}).")
    seeds = list(request.seeds)
    if not seeds:
        raise UserError("No seed given: give at least one (e.g. seeds=(0,)).")
    specs = [resolve_spec(name, dataset, latent_dim=request.latent_dim, budget=request.budget, seed=seed,
                          device=request.device, hparams=request.hparams, regulariser=None, outside=outside,
                          precision=request.precision)
             for name in names for seed in seeds]
    check_settings(tasks, overrides, {dev for _, dev in specs})  # a bad setting fails before any work
    if request.along_training and request.snapshots is None:
        raise UserError("--along-training probes a run's snapshots; --no-snapshots leaves none. Drop one of them.")
    for spec, _ in specs:
        if spec.budget and request.snapshots:
            snapshot_points(spec, request.snapshots)  # a bad value fails before any work
    return Plan(request, dataset, specs, tasks, overrides, counts, grouping, names,
                {spec.run_id: latent_for(spec, latent if isinstance(latent, str) else None) for spec, _ in specs})


def execute(plan_: Plan, *, claim=None, log: Callable[[str], Any] | None = None,
            progress: bool = True) -> list[dict[str, Any]]:
    """Train or reuse every run of ``plan_``, probe and store it; returns the score rows
    (each run's rows for its tasks, as stored; with ``request.reuse`` a row that was already
    stored for the same latent, task and settings is returned as it was, marked ``reused``)."""
    from repeval import data, pipeline
    from repeval.store import Store

    request = plan_.request
    say = _say(log)
    workdir = request.workdir
    announce_budget(plan_.specs, request.budget, say)
    if workdir is None:
        if any(not getattr(n, "in_memory", False) for n in plan_.encoders):
            raise UserError("workdir=None keeps nothing on disk, which only probing arrays or an in-memory module "
                            "can do: a registered family or a file encoder needs a workdir for its runs.")
    else:
        writable(workdir)
    store_wanted = request.store and workdir is not None
    if store_wanted:
        with Store.in_workdir(workdir) as store:
            store.check_writable()  # a locked or damaged store fails here, before any training
    rows: list[dict[str, Any]] = []
    with claim if claim is not None else contextlib.nullcontext():
        ds = (None if plan_.grouping is not None
              else data.load(plan_.dataset, data.DataOptions(data_dir=request.data_dir,
                                                             allow_unverified=request.allow_unverified)))
        specs = plan_.specs
        if request.pack if request.pack is not None else any(dev.startswith("cuda") for _, dev in specs):
            from repeval.packed import pack_groups, train_packed

            device_of = {s.run_id: dev for s, dev in specs}
            every = {} if request.checkpoint_every is None else {"checkpoint_every_s": request.checkpoint_every}
            for group in pack_groups([s for s, _ in specs if s.budget and not s.external]):
                if len(group) > 1:
                    train_packed(group, ds, device_of[group[0].run_id], workdir, snapshots=request.snapshots,
                                 **every)
        with (Store.in_workdir(workdir) if store_wanted else contextlib.nullcontext()) as store:
            for spec, dev in specs:  # a family without the latent choice uses its default
                common = dict(dataset=ds, device=dev, store=store, latent=plan_.latents[spec.run_id],
                              overrides=plan_.overrides, checkpoint_every_s=request.checkpoint_every,
                              probe_seeds=plan_.probe_seeds, reuse=request.reuse, progress=progress, log=log)
                rows += pipeline.run_one(spec, plan_.tasks, workdir=workdir, snapshots=request.snapshots, **common)
                if request.along_training and spec.budget and not spec.external:
                    rows += pipeline.run_along_training(spec, plan_.tasks, workdir=workdir,
                                                        snapshots=request.snapshots, **common)
    return rows


def evaluate(request: Request, *, claim=None, log: Callable[[str], Any] | None = None,
             progress: bool = True) -> list[dict[str, Any]]:
    """:func:`plan` then :func:`execute`."""
    return execute(plan(request), claim=claim, log=log, progress=progress)
