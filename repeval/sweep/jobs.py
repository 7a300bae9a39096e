"""Jobs: the grid's cells resolved into runs, each job exactly one spec.

A :class:`Job` is one run directory (one :class:`~repeval.specs.RunSpec`, its run id) and
the ``repeval run`` invocation(s) that probe it: normally one, with every task the grid asks
of that run; several only when the grid varies a probe setting (``--set`` with several values)
or the latent, since one ``repeval run`` takes one value of each. The invocations run one after
another in the same job, so the run trains once. Where a job runs is the launcher's choice;
what it computes is fixed here.

A job is **done** when its run directory's ``scores.json`` holds a score for every
(latent, task, settings) its invocations ask for, with the settings resolved for the device
the job computes on (k-means restarts differ between CPU and GPU).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.sweep.grid import Cell

LOG_NAME = "job.log"


@dataclass(frozen=True)
class Invocation:
    """One ``repeval run`` of the job's spec: these tasks, on this latent, with these settings."""

    tasks: tuple[str, ...]
    latent: str
    settings: tuple[tuple[str, Any], ...] = ()  # ("task.key", value)
    expect: tuple[tuple[str, str, str], ...] = ()  # (latent, task, settings JSON) scores that mark it done

    def overrides(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, value in self.settings:
            task, _, name = key.partition(".")
            out.setdefault(task, {})[name] = value
        return out


@dataclass(frozen=True)
class Job:
    run_id: str
    spec: dict[str, Any]
    hparams: tuple[tuple[str, Any], ...]  # the overrides the grid gave (the spec holds all values)
    learned: bool
    device: str  # "cpu" or "cuda": what the job computes on
    invocations: tuple[Invocation, ...]

    @property
    def label(self) -> str:
        s = self.spec
        return f"{s['encoder']} {s['dataset']} {s['latent_dim']}d seed {s['seed']}"

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for inv in self.invocations for t in inv.tasks))

    def run_dir(self, workdir: Path) -> Path:
        return Path(workdir) / "checkpoints" / self.run_id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Job":
        invs = tuple(Invocation(tasks=tuple(i["tasks"]), latent=i["latent"],
                                settings=tuple((k, v) for k, v in i["settings"]),
                                expect=tuple(tuple(e) for e in i["expect"])) for i in d["invocations"])
        return cls(run_id=d["run_id"], spec=d["spec"], hparams=tuple((k, v) for k, v in d["hparams"]),
                   learned=d["learned"], device=d["device"], invocations=invs)

    def argv(self, inv: Invocation, python: str, options: dict[str, Any]) -> list[str]:
        """The ``repeval run`` command line of one invocation (``options``: workdir, data_dir,
        allow_unverified, threads, checkpoint_every)."""
        s = self.spec
        argv = [python, "-m", "repeval", "run", "--encoder", s["encoder"], "--dataset", s["dataset"],
                "--latent-dim", str(s["latent_dim"]), "--seed", str(s["seed"]), "--device", self.device]
        if self.learned:
            argv += ["--budget", str(s["budget"]), "--precision", s.get("precision", "fp32")]
        for key, value in self.hparams:
            argv += ["--hparam", f"{key}={json.dumps(value)}"]
        for task in inv.tasks:
            argv += ["--task", task]
        argv += ["--latent", inv.latent]
        for key, value in inv.settings:
            argv += ["--set", f"{key}={json.dumps(value)}"]
        argv += ["--workdir", str(options["workdir"])]
        if options.get("data_dir"):
            argv += ["--data-dir", str(options["data_dir"])]
        if options.get("allow_unverified"):
            argv.append("--allow-unverified")
        if options.get("threads"):
            argv += ["--threads", str(options["threads"])]
        if options.get("checkpoint_every") is not None:
            argv += ["--checkpoint-every", str(options["checkpoint_every"])]
        argv += ["--no-store", "--job", self.run_id]
        return argv


def _encoder_names(names: list[str]) -> list[str]:
    import encoders

    out: list[str] = []
    for name in names:
        if name == "all":
            out += list(encoders.REGISTRY)
        elif name == "all-learned":
            out += [n for n, family in encoders.REGISTRY.items() if family.learned]
        else:
            encoders.get(name)  # an unknown name fails here
            out.append(name)
    return list(dict.fromkeys(out))


def build_jobs(cells: list[Cell], device: str, precision: str = "auto") -> list[Job]:
    """Resolve ``cells`` into jobs for ``device``, merging cells that are the same run. Any
    bad value (unknown name, illegal latent size, a setting of a task not run) is a
    :class:`UserError` naming the grid part it came from.

    As in ``repeval run``, a family without the cell's ``latent`` uses its default latent; a
    hyper-parameter applies to the families that declare it, a probe setting to the cells that
    run its task; a latent, hyper-parameter or setting that applies nowhere is an error."""
    import encoders
    from repeval.pipeline import expand_tasks, task_settings
    from repeval.specs import make_spec

    jobs: dict[str, dict[str, Any]] = {}
    latents_used: dict[str, bool] = {}
    hparams_used: dict[str, bool] = {}
    settings_used: dict[str, bool] = {}
    for cell in cells:
        where = f" (grid part from {cell.origin})"
        try:
            names = _encoder_names([cell.encoder])
            tasks = expand_tasks(cell.tasks, cell.dataset)
        except UserError as exc:
            raise UserError(f"{exc.message}{where}") from None
        overrides: dict[str, dict[str, Any]] = {}
        kept = []
        for key, value in sorted(dict(cell.settings).items()):
            task, dot, sub = key.partition(".")
            if not dot or not sub:
                raise UserError(f"--set {key}=... must be TASK.KEY=VALUE, e.g. --set kmeans.restarts=1000{where}.")
            settings_used[key] = settings_used.get(key, False) or task in tasks
            if task in tasks:
                overrides.setdefault(task, {})[sub] = value
                kept.append((key, value))
        settings = tuple(kept)
        for name in names:
            family = encoders.get(name)
            if cell.latent is not None:
                latents_used[cell.latent] = latents_used.get(cell.latent, False) or cell.latent in family.latents
            latent = cell.latent if cell.latent in family.latents else next(iter(family.latents))
            hparams = tuple((k, v) for k, v in cell.hparams if k in family.hparams)
            for k, _ in cell.hparams:
                hparams_used[k] = hparams_used.get(k, False) or k in family.hparams
            try:
                spec = make_spec(name, cell.dataset, latent_dim=cell.latent_dim,
                                 budget=cell.budget if family.learned else None, seed=cell.seed, device=device,
                                 hparams=dict(hparams), precision=precision)
                expect = [(latent, t, _settings_json(task_settings(t, spec.seed, device, overrides.get(t))))
                          for t in tasks]
            except UserError as exc:
                raise UserError(f"{exc.message}{where}") from None
            entry = jobs.setdefault(spec.run_id, {"spec": spec, "learned": family.learned, "hparams": hparams,
                                                  "invocations": {}})
            inv = entry["invocations"].setdefault((latent, settings), {"tasks": [], "expect": []})
            for t, e in zip(tasks, expect):
                if t not in inv["tasks"]:
                    inv["tasks"].append(t)
                    inv["expect"].append(e)
    for latent, used in latents_used.items():
        if not used:
            raise UserError(f"No encoder of the sweep has a latent {latent!r}; `repeval encoders` lists each "
                            "family's latents (e.g. vae: mean, sample).")
    for key, used in settings_used.items():
        if not used:
            raise UserError(f"--set {key}=...: no cell of the sweep runs the task {key.partition('.')[0]!r}. Name "
                            "one of the sweep's tasks as TASK.KEY, e.g. --set kmeans.restarts=1000.")
    for key, used in hparams_used.items():
        if not used:
            raise UserError(f"No encoder of the sweep has a hyper-parameter {key!r}; `repeval encoders --json` "
                            "lists each family's hyper-parameters.")
    return [Job(run_id=run_id, spec=e["spec"].to_dict(), hparams=e["hparams"], learned=e["learned"], device=device,
                invocations=tuple(Invocation(tasks=tuple(v["tasks"]), latent=latent, settings=st,
                                             expect=tuple(v["expect"]))
                                  for (latent, st), v in e["invocations"].items()))
            for run_id, e in jobs.items()]


def _settings_json(settings) -> str:
    from repeval.jsonio import canonical_json

    return canonical_json(asdict(settings))


# --------------------------------------------------------------------------- states
DONE, INCOMPLETE, TO_RUN, CLAIMED = "done", "incomplete", "to run", "claimed elsewhere"


def scored_keys(run_dir: Path) -> set[tuple[str, str, str]]:
    """(latent, task, settings JSON) of every score in ``run_dir``'s ``scores.json``."""
    from repeval import scorefile
    from repeval.jsonio import canonical_json

    try:
        record = scorefile.read(run_dir)
    except ValueError:
        return set()
    if record is None:
        return set()
    return {(r["latent"], r["task"], canonical_json(r["settings"])) for r in record["scores"]}


def is_done(job: Job, workdir: Path) -> bool:
    have = scored_keys(job.run_dir(workdir))
    return all(tuple(e) in have for inv in job.invocations for e in inv.expect)


def state(job: Job, workdir: Path) -> tuple[str, str]:
    """``(state, detail)``: done, claimed elsewhere (by a live process), incomplete (a
    checkpoint or some scores exist) or to run."""
    from repeval.sweep import claims

    run_dir = job.run_dir(workdir)
    expected = [tuple(e) for inv in job.invocations for e in inv.expect]
    have = scored_keys(run_dir)
    scored = sum(e in have for e in expected)
    if scored == len(expected):
        return DONE, f"{scored} task score set(s)"
    info = claims.read(run_dir / claims.FILENAME)
    if info is not None:
        live, why = claims.judge(info, run_dir / claims.FILENAME)
        if live:
            return CLAIMED, f"by {claims.describe(info)} ({why})"
    from repeval.checkpoint import Checkpoint

    if Checkpoint(run_dir).exists():
        step = _last_step(run_dir)
        steps = job.spec["budget"] // job.spec["batch_size"]
        if job.learned and step is not None and step < steps:
            return INCOMPLETE, f"checkpoint at step {step:,} of {steps:,}"
        return INCOMPLETE, f"trained; {scored} of {len(expected)} task(s) scored"
    return TO_RUN, ""


def _last_step(run_dir: Path) -> int | None:
    try:
        steps = json.loads((run_dir / "history.json").read_text()).get("step") or []
    except (OSError, ValueError):
        return None
    return int(steps[-1]) if steps else 0
