"""The ``repeval`` command line.

Every command takes ``--workdir DIR`` (default ``./runs``, env ``REPEVAL_HOME``) and
``--data-dir DIR`` (env ``REPEVAL_DATA``). Heavy libraries are imported inside commands so
that ``repeval --help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from repeval import __version__
from repeval.errors import UserError


def common_options(f):
    """``--workdir``, ``--data-dir`` and ``--allow-unverified`` on every command."""
    options = [
        click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default="runs",
                  envvar="REPEVAL_HOME", show_default=True, show_envvar=True,
                  help="Where checkpoints, latents and the results store live."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  envvar="REPEVAL_DATA", show_envvar=True,
                  help="Local datasets in torchvision layout (MNIST/raw, cifar-10-batches-py, SVHN). "
                       "Without it, datasets download into the cache (~/.cache/repeval or REPEVAL_CACHE)."),
        click.option("--allow-unverified", is_flag=True, envvar="REPEVAL_ALLOW_UNVERIFIED", show_envvar=True,
                  help="Accept a local CIFAR-10 copy whose md5s differ from the official ones (e.g. a "
                       "rebuild); its scores are marked as coming from unverified data."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


precision_option = click.option(
    "--precision", default="auto", show_default=True, envvar="REPEVAL_PRECISION", show_envvar=True,
    help="Training precision: auto, fp32 or bf16. auto trains in bf16 where the device computes it natively "
         "(a GPU from Ampere on; a CPU with AMX-BF16 or AVX512-BF16, read from its flags) and in fp32 elsewhere. "
         "Part of the run's identity: a bf16 run and an fp32 run are different runs. bf16 on a device without "
         "native bf16 runs, several times slower, after a line saying so.")


def spec_options(f):
    """What identifies a run: encoder, dataset, latent size, budget, seed, device."""
    for option in reversed([
        click.option("--dataset", default="mnist", show_default=True,
                     help="A registered dataset (`repeval datasets` lists them: mnist, svhn, svhn-extra, "
                          "cifar10, lines, digits, and any from plugins), or npz:PATH for your own arrays."),
        click.option("--latent-dim", type=int, default=None,
                     help="Latent size: 32, 256 or 1024 on images (default 256), 64 or 256 on lines "
                          "(default 64); any number of components for pca."),
        click.option("--budget", type=int, default=None,
                     help="Training images (paper: 16,777,216 = 2^24, the default on a GPU; 16,384 on a CPU)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        precision_option,
        click.option("--threads", type=click.IntRange(min=1), default=None, envvar="REPEVAL_THREADS",
                     show_envvar=True,
                     help="CPU threads for torch and faiss. Default: the cores that other processes leave "
                          "free when the command starts (all of them on an idle machine), kept for the whole "
                          "command; OMP_NUM_THREADS is honoured too. Recorded in each run's provenance; a run "
                          "repeats bit for bit at the same count."),
        click.option("--hparam", "hparams", multiple=True, metavar="KEY=VALUE",
                     help="Override a family hyper-parameter, e.g. --hparam keep_prob=0.75 (repeatable; "
                          "`repeval encoders --json` lists them)."),
    ]):
        f = option(f)
    return f


def snapshot_options(f):
    """``--snapshots N,M`` and ``--no-snapshots``: which shorter runs a training writes on its way."""
    f = click.option("--no-snapshots", is_flag=True,
                     help="Write no snapshots (by default a run writes the complete run of every power of two "
                          "of images from 4,096 below its budget, so those budgets cost nothing later).")(f)
    return click.option("--snapshots", "snapshot_list", default=None, metavar="N,M,...",
                        help="Also snapshot at these image counts (multiples of the batch of 64, below the "
                             "budget), e.g. --snapshots 6144,12288.")(f)


def _parse_assignments(items: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what} {item!r} is not KEY=VALUE (e.g. {what} restarts=1000).")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _data_options(data_dir: Path | None, allow_unverified: bool):
    from repeval.data import DataOptions

    return DataOptions(data_dir=data_dir, allow_unverified=allow_unverified)


# ------------------------------------------------------------------------------ regularisers, outside encoders
# Their options are read from the click context (set by the decorators below), so the commands'
# own signatures stay as they are; _resolve and the helpers of `run` read them.
_REGULARISER = "repeval.regulariser"
_OUTSIDE = "repeval.outside"


def _context_meta() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def regulariser_option(f):
    """``--regularizer NAME`` (or ``--regulariser``): add a latent regulariser to every family named."""
    import functools

    @functools.wraps(f)
    def command(*args, regularizer=None, **kwargs):
        _context_meta()[_REGULARISER] = regularizer
        return f(*args, **kwargs)

    return click.option(
        "--regularizer", "--regulariser", "regularizer", default=None, metavar="NAME",
        help="Add a latent regulariser to the family: --encoder vae --regularizer acai trains vae+acai (the "
             "same as --encoder vae+acai; ACAI's critic and interpolation loss, hyper-parameters advweight, "
             "reg, advdepth settable with --hparam). `repeval encoders` lists the regularisers.")(command)


def outside_options(f):
    """``--weights``, ``--name``, ``--strip-prefix``, ``--add-prefix``: encoders from outside repeval."""
    import functools

    @functools.wraps(f)
    def command(*args, weights=None, name=None, strip_prefix=None, add_prefix=None, **kwargs):
        from repeval.external import OutsideOptions

        _context_meta()[_OUTSIDE] = OutsideOptions(weights, name, strip_prefix, add_prefix)
        return f(*args, **kwargs)

    for option in reversed([
        click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Weights of a python: encoder: a .safetensors file, or a .pt state dict (read with "
                          "torch.load(weights_only=True)); loaded strictly. TorchScript and pickled models are "
                          "refused: loading them runs code."),
        click.option("--name", default=None,
                     help="The name a latents: or python: encoder gets in tables and the report (default: the "
                          "file's stem; for python: with --weights, the weights file's)."),
        click.option("--strip-prefix", default=None, metavar="PREFIX",
                     help="Remove PREFIX from the --weights keys that start with it (e.g. module.)."),
        click.option("--add-prefix", default=None, metavar="PREFIX",
                     help="Put PREFIX before every --weights key (e.g. encoder.)."),
    ]):
        command = option(command)
    return command


def _given(parameter: str, value: Any) -> Any:
    """``value``, or None when the user left ``--parameter`` at its default (the layer below
    then chooses, e.g. the dataset a latents: file's meta names)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.get_parameter_source(parameter) is click.core.ParameterSource.DEFAULT:
        return None
    return value


def _outside_options():
    """The command's --weights, --name, --strip-prefix and --add-prefix (None without them)."""
    return _context_meta().get(_OUTSIDE)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="repeval")
def main():
    """How good is an encoder's latent space for downstream work?

    repeval trains the autoencoder families of the ACAI paper (Berthelot et al., 2018),
    freezes them, extracts their latents and probes them: a single-layer classifier,
    k-means clustering accuracy, kNN accuracy and the lines interpolation benchmark.
    Every score is stored with how it was made (`repeval results`), rendered into an
    HTML report (`repeval report`) and can gate CI (`repeval check`).

    \b
    Start here:
      repeval datasets                                  what data is available
      repeval run --encoder acai --task kmeans          train, extract, probe, store
      repeval report --out report.html                  compare everything stored
    """


# ------------------------------------------------------------------------------ datasets
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def datasets(as_json: bool, workdir: Path, data_dir: Path | None, allow_unverified: bool):
    """List the datasets, whether each is available locally, their split sizes and what an
    example is (images C×32×32 or 1-D signals C×L). ``interpolation`` in --json says whether the
    dataset offers the interpolation task (a factor bank: lines, shepard)."""
    from repeval import data

    options = _data_options(data_dir, allow_unverified)
    rows = []
    for entry in data.DATASETS.values():
        where = entry.locate(options)
        rows.append({"name": entry.name, "available": where is not None, "where": where,
                     "train": entry.train_size, "test": entry.test_size, "channels": entry.channels,
                     "example": entry.example.describe(), "interpolation": "factor_bank" in entry.features,
                     "classes": entry.num_classes, "latent_dims": list(entry.latent_dims),
                     "description": entry.summary})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'dataset':<11} {'available':<9} {'train':>8} {'test':>7}  {'example':<18} latent dims   "
               "description")
    for r in rows:
        dims = ",".join(map(str, r["latent_dims"]))
        click.echo(f"{r['name']:<11} {'yes' if r['available'] else 'no':<9} {r['train']:>8,} {r['test']:>7,}  "
                   f"{r['example']:<18} {dims:<13} {r['description']}")
    missing = [r["name"] for r in rows if not r["available"]]
    if missing:
        where = data_dir or "the cache (downloaded on first use when online)"
        click.echo(f"\nNot found in {where}: {', '.join(missing)}. Point --data-dir at a torchvision-layout "
                   "folder; npz:PATH loads your own arrays.")


# ------------------------------------------------------------------------------ encoders
@main.command("encoders")
@click.option("--dataset", default="mnist", show_default=True, help="Dataset whose shapes size the models.")
@click.option("--latent-dim", type=int, default=None, help="Latent size (default: the dataset's).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def encoders_cmd(dataset: str, latent_dim: int | None, as_json: bool, workdir: Path, data_dir: Path | None,
                 allow_unverified: bool):
    """List the encoder families with their latents, hyper-parameters and parameter counts."""
    import encoders
    from repeval import data
    from repeval.specs import make_spec

    entry = data.get(dataset)
    rows = []
    for name, family in encoders.REGISTRY.items():
        if entry.kind not in family.kinds:  # e.g. an image-only plugin family on signals
            continue
        try:
            spec = make_spec(name, dataset, latent_dim=latent_dim)
        except UserError:
            if family.learned:
                raise
            spec = make_spec(name, dataset)  # a reference encoder whose size is fixed (pixels)
        model = encoders.build_model(spec, entry.example)
        rows.append({"name": name, "source": encoders.REGISTRY.source(name), "learned": family.learned,
                     "summary": family.summary,
                     "latent_dim": spec.latent_dim, "latents": dict(family.latents),
                     "hparams": dict(family.hparams), "hparam_ranges": _hparam_ranges(family),
                     "parameters": model.parameter_counts(),
                     "regularisers": [r for r, reg in encoders.REGULARISERS.items()
                                      if name in encoders.REGISTRY.composable_with(reg)]})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"Families on {dataset} (depth {entry.depth}); parameter counts per part.")
    width = max(10, *(len(r["name"]) for r in rows))
    click.echo(f"{'encoder':<{width}} {'dim':>5} {'encoder':>10} {'decoder':>10} {'other':>24}  {'latents':<22} from")
    for r in rows:
        p = dict(r["parameters"])
        enc, dec = p.pop("encoder", 0), p.pop("decoder", 0)
        other = ", ".join(f"{k} {v:,}" for k, v in p.items()) or "-"
        click.echo(f"{r['name']:<{width}} {r['latent_dim']:>5} {enc:>10,} {dec:>10,} {other:>24}  "
                   f"{'/'.join(r['latents']):<22} {r['source']}")
    _echo_compositions()


def _hparam_ranges(family) -> dict[str, str]:
    """Each hyper-parameter's declared range, as the phrase a --hparam error would use."""
    from repeval.ranges import implied

    declared = getattr(family, "hparam_ranges", {}) or {}
    return {name: (declared.get(name) or implied(default)).describe() for name, default in family.hparams.items()}


def _echo_compositions() -> None:
    """`repeval encoders`, continued: the regularisers and the encoder forms from outside repeval."""
    import encoders

    for name, reg in encoders.REGULARISERS.items():
        hp = ", ".join(f"{k}={v}" for k, v in reg.hparams.items())
        able = encoders.REGISTRY.composable_with(reg)
        click.echo(f"\nRegulariser {name} [{encoders.REGULARISERS.source(name)}]: {reg.summary}; hyper-parameters "
                   f"{hp or 'none'}.\n  Add it as FAMILY+{name} or --regularizer {name}: "
                   f"{', '.join(f'{family}+{name}' for family in able) or 'no family composes with it'}.")
    forms = encoders.REGISTRY.prefix_usages()
    if forms:
        click.echo("\nEncoders from outside repeval (probed, not trained): " + "; ".join(forms) + ".")


# ------------------------------------------------------------------------------ tasks
@main.command("tasks")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tasks_cmd(as_json: bool):
    """List the probes with their metrics: direction, default check tolerance, what they need."""
    from dataclasses import asdict

    from repeval.data import DATASETS
    from repeval.probes import TASKS

    rows = [{"name": name, "source": TASKS.source(name), "summary": task.summary,
             "needs_model": task.needs_model, "requires": sorted(task.requires),
             "datasets": [e.name for e in DATASETS.values() if task.applies_to(e)] if task.requires else "all",
             "metrics": [{**asdict(m), "tolerance": asdict(m.tolerance)} for m in task.metrics],
             "settings": _setting_ranges(task.settings)}
            for name, task in TASKS.items()]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        where = "" if r["datasets"] == "all" else f" (datasets: {', '.join(r['datasets'])})"
        click.echo(f"{r['name']} [{r['source']}]: {r['summary']}{where}")
        width = max(16, *(len(m["name"]) for m in r["metrics"]))
        for m in r["metrics"]:
            tol = ", ".join(f"{k} {v:g}" for k, v in m["tolerance"].items() if v) or "exact"
            better = "no better direction (any change is checked)" if m["direction"] == "none" else \
                f"{m['direction']:<6} is better"
            click.echo(f"    {m['name']:<{width}} {better}; check tolerance {tol}")


def _setting_ranges(settings_cls) -> dict[str, str]:
    """Each --set setting of a task with its declared range (what `repeval tasks --json` lists)."""
    import dataclasses

    from repeval.ranges import declared_setting_ranges, implied

    defaults = {f.name: f.default for f in dataclasses.fields(settings_cls)}
    declared = declared_setting_ranges(settings_cls)
    return {name: (r or implied(defaults[name])).describe() for name, r in declared.items()}


# ------------------------------------------------------------------------------ train
MALLOC_MMAP_THRESHOLD = 32 << 20
MALLOC_TRIM_THRESHOLD = 1 << 30


def _tune_allocator() -> bool:
    """Let glibc keep freed memory for reuse, in this process only.

    A training step's activations are 1–4 MiB buffers, above glibc's default (dynamic) mmap
    threshold, so each is mapped, page-faulted and unmapped again every step; with an mmap
    threshold of 32 MiB and a trim threshold of 1 GiB they are reused from the heap (ACAI on
    the CPU 1.27–1.33× faster, ``benchmarks/RESULTS.md`` §2.2). Only where glibc is the
    allocator and the user has not set glibc's own ``MALLOC_*_THRESHOLD_`` variables;
    ``REPEVAL_MALLOC_TUNING=0`` turns it off. It changes no result, only speed and how much
    freed memory the process keeps (at most 1 GiB)."""
    import ctypes
    import os

    if (os.environ.get("REPEVAL_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux")
            or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, another allocator preloaded under its name)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD))


def _setup_process(threads: int | None) -> None:
    """Allocator and threads for a compute command (train, run, extract). Without --threads
    (or OMP_NUM_THREADS), the cores other processes leave free (repeval/threads.py)."""
    from repeval import threads as thread_policy

    _tune_allocator()
    if threads is None:
        if thread_policy.explicit() is not None:  # OMP_NUM_THREADS: torch and faiss read it themselves
            return
        threads, why = thread_policy.default_threads()
        if threads < len(thread_policy.available_cores()):
            click.echo(f"{why} (--threads N chooses).", err=True)
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def _stored_scores(workdir: Path, **filters) -> list[dict[str, Any]]:
    """The store's score rows; none (and no database created) when the workdir has no store."""
    from repeval.store import DB_FILENAME, Store

    if not (Path(workdir) / DB_FILENAME).is_file():
        return []
    with Store.in_workdir(workdir) as store:
        return store.scores(**filters)


def checkpoint_option(f):
    """``--checkpoint-every SECONDS`` (train, run, sweep): the trainer's checkpoint interval."""
    return click.option("--checkpoint-every", "checkpoint_every", type=click.FloatRange(min=0, max=1e9), default=None,
                        metavar="SECONDS", envvar="REPEVAL_CHECKPOINT_EVERY", show_envvar=True,
                        help="Save a training checkpoint at most this often (default 300 s; 0: at every "
                             "log point), so a crash or kill -9 loses at most that much training. Ctrl-C and "
                             "SIGTERM always checkpoint first.")(f)


@main.command()
@click.option("--encoder", required=True, help="The family to train (`repeval encoders` lists them).")
@regulariser_option
@spec_options
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation, batches and noise.")
@snapshot_options
@checkpoint_option
@common_options
def train(encoder, dataset, latent_dim, budget, device, precision, threads, hparams, seed, snapshot_list, no_snapshots,
          checkpoint_every, workdir, data_dir, allow_unverified):
    """Train one family (or resume it, or reuse a finished run) and print its checkpoint.

    The last line of output is the checkpoint directory. Ctrl-C saves a checkpoint; run
    the same command again to resume. On its way the run writes snapshots: the complete
    runs of 4,096, 8,192, ... images with the same spec and seed (see --snapshots).
    """
    from repeval import data, evaluation
    from repeval.train import snapshot_points
    from repeval.train import train as train_spec

    _setup_process(threads)
    spec, device = evaluation.resolve_spec(encoder, dataset, latent_dim=latent_dim, budget=budget, seed=seed,
                                           device=device, hparams=_parse_assignments(hparams, "--hparam"),
                                           precision=precision, regulariser=_context_meta().get(_REGULARISER))
    snapshots = evaluation.snapshot_list(snapshot_list, no_snapshots)
    if snapshots and spec.budget:
        snapshot_points(spec, snapshots)  # a bad value fails before the data loads
    evaluation.announce_budget([(spec, device)], budget, lambda message: click.echo(message, err=True))
    evaluation.writable(workdir)
    ds = data.load(spec.dataset, _data_options(data_dir, allow_unverified))
    every = {} if checkpoint_every is None else {"checkpoint_every_s": checkpoint_every}
    checkpoint = train_spec(spec, ds, device, workdir, snapshots=snapshots, **every)
    click.echo(str(checkpoint.path))


# ------------------------------------------------------------------------------ run
@main.command()
@click.option("--encoder", "encoder_names", required=True, multiple=True,
              help="Family to evaluate (repeatable, or all); `repeval encoders` lists them. Also FAMILY+REGULARISER "
                   "(vae+acai), latents:FILE.npz (your embeddings) or python:MODULE:FACTORY (your model, with "
                   "--weights).")
@regulariser_option
@outside_options
@click.option("--task", "tasks", required=True, multiple=True,
              help="Probe to run (repeatable, or all: every task that applies to the dataset); `repeval tasks` "
                   "lists them.")
@spec_options
@click.option("--seed", "seeds", type=int, multiple=True, default=(0,), show_default=True,
              help="Seed (repeatable: each seed is a separate run; the table shows mean ± std).")
@click.option("--latent", default=None,
              help="Which tensor is the latent, e.g. mean or sample for vae (default: the family's).")
@click.option("--set", "settings", multiple=True, metavar="TASK.KEY=VALUE",
              help="Override a probe setting, e.g. --set kmeans.restarts=1000 (repeatable); "
                   "TASK.probe_seeds=N sets one task's probe seeds.")
@click.option("--probe-seeds", type=int, default=1, show_default=True,
              help="Run each stochastic probe (k-means, label_efficiency: those with a seed) N times on the "
                   "cached latents of every trained model, with N probe seeds derived from the run's seed, no "
                   "retraining; stored as separate rows, averaged per model before the mean over --seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored score rows as JSON.")
@snapshot_options
@click.option("--pack/--no-pack", default=None,
              help="Train the seeds of one spec together, in one step (default: on CUDA, where it multiplies "
                   "the work per kernel; off on a CPU). Each seed is still its own run directory.")
@click.option("--along-training", is_flag=True,
              help="Also probe every snapshot of each run (4,096, 8,192, ... images, and --snapshots), each "
                   "stored as the scores of its own shorter run: quality along training, from one run.")
@checkpoint_option
@click.option("--no-store", is_flag=True,
              help="Write the scores only to each run directory's scores.json, not to repeval.db (what sweep jobs "
                   "on other hosts do; `repeval collect` indexes them later).")
@click.option("--job", "job_run_id", default=None, hidden=True, metavar="RUN_ID",
              help="Run as a sweep job: one encoder and seed whose run id must be RUN_ID; claims the run "
                   "directory, implies --no-store, stops when its parent process dies.")
@common_options
def run(encoder_names, tasks, dataset, latent_dim, budget, device, precision, threads, hparams, seeds, latent, settings,
        probe_seeds, as_json, snapshot_list, no_snapshots, pack, along_training, checkpoint_every, no_store,
        job_run_id, workdir, data_dir, allow_unverified):
    """Train (or reuse), extract latents, probe them and store the scores.

    Scores go into the run directory's scores.json and into repeval.db.

    \b
    Examples:
      repeval run --encoder acai --task kmeans
      repeval run --encoder all --task all --dataset digits --budget 4096
      repeval run --encoder vae --task linear --seed 0 --seed 1 --seed 2
      repeval run --encoder acai --task interpolation --dataset lines
      repeval run --encoder acai --task kmeans --budget 65536 --along-training
      repeval run --encoder vae+acai --encoder acai --task all --dataset digits
      repeval run --encoder latents:my_embeddings.npz --task linear --task knn --dataset digits
      repeval run --encoder python:my_model.py:build --weights my_model.safetensors --task all --dataset digits
    """
    from repeval import evaluation
    from repeval.results import format_results
    from repeval.summary import summarise

    if job_run_id is not None:  # a sweep job: stop with the process that started it
        from repeval.sweep.worker import die_with_parent

        die_with_parent()
        no_store = True
    _setup_process(threads)
    request = evaluation.Request(
        encoders=list(encoder_names), tasks=list(tasks), dataset=_given("dataset", dataset), seeds=list(seeds),
        latent_dim=latent_dim, budget=budget, device=device, precision=precision,
        hparams=_parse_assignments(hparams, "--hparam"), latent=latent, settings=_parse_assignments(settings, "--set"),
        probe_seeds=probe_seeds,
        regulariser=_context_meta().get(_REGULARISER), outside=_outside_options(),
        snapshots=evaluation.snapshot_list(snapshot_list, no_snapshots), pack=pack, along_training=along_training,
        checkpoint_every=checkpoint_every, store=not no_store, workdir=workdir, data_dir=data_dir,
        allow_unverified=allow_unverified)
    plan = evaluation.plan(request)  # every name and value checked before any work
    claim = _claim_job(job_run_id, plan.specs, workdir) if job_run_id is not None else None
    rows = evaluation.execute(plan, claim=claim, log=lambda message: click.echo(message, err=True))
    if as_json:
        click.echo(format_results(rows, "json"))
    else:
        click.echo(format_results(summarise(rows), "summary"))


def _claim_job(run_id: str, specs, workdir: Path):
    """``repeval run --job RUN_ID``: the one spec must be RUN_ID; claim its run directory."""
    from repeval.checkpoint import run_dir
    from repeval.sweep import claims

    if len(specs) != 1:
        raise UserError(f"--job {run_id} takes exactly one --encoder and one --seed (got {len(specs)} runs).")
    spec = specs[0][0]
    if spec.run_id != run_id:
        raise UserError(f"--job {run_id}: these options make run {spec.run_id}, not {run_id}. The repeval (or its "
                        "plugins) on this host differs from the sweep driver's; install the same version here.")
    # a retry may start while the attempt it replaces is still saving its checkpoint: wait a little
    claim = claims.acquire(run_dir(workdir, spec), log=lambda message: click.echo(message, err=True),
                           wait_s=claims.JOB_WAIT_S)
    claim.start_heartbeat()
    return claim


# ------------------------------------------------------------------------------ extract
@main.command()
@click.option("--encoder", required=True,
              help="The encoder: a family (`repeval encoders` lists them), FAMILY+REGULARISER, "
                   "python:MODULE:FACTORY with --weights (your model) or latents:FILE.npz.")
@regulariser_option
@outside_options
@spec_options
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the run.")
@click.option("--latent", default=None, help="Which tensor is the latent (default: the family's).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .npz with z_train, y_train, z_test, y_test and meta (RunSpec JSON).")
@common_options
def extract(encoder, dataset, latent_dim, budget, device, precision, threads, hparams, seed, latent, out, workdir,
            data_dir, allow_unverified):
    """Write an encoder's frozen latents to an .npz for your own analyses (trains a family if needed).

    \b
    Examples:
      repeval extract --encoder acai --dataset digits --budget 4096 --out acai.npz
      repeval extract --encoder python:my_model.py:build --weights my_model.safetensors --dataset digits --out mine.npz
    """
    import encoders
    from repeval import data, evaluation
    from repeval import extract as ex
    from repeval.external import OutsideOptions, check_options, prepare
    from repeval.train import train as train_spec

    _setup_process(threads)
    options = _outside_options() or OutsideOptions()
    name = evaluation.regularised(encoder, _context_meta().get(_REGULARISER))
    check_options([name], options)
    spec, device = evaluation.resolve_spec(name, dataset, latent_dim=latent_dim, budget=budget, seed=seed,
                                           device=device, hparams=_parse_assignments(hparams, "--hparam"),
                                           precision=precision, outside=options)
    family = encoders.get(spec.encoder) if not spec.external else encoders.get(name)
    if latent is not None and latent not in family.latents:
        raise UserError(f"--latent {latent}: {spec.encoder} has no latent {latent!r}; choose one of "
                        f"{', '.join(family.latents)}.")
    evaluation.announce_budget([(spec, device)], budget, lambda message: click.echo(message, err=True))
    evaluation.writable(workdir, out)
    ds = data.load(spec.dataset, _data_options(data_dir, allow_unverified))
    if spec.external:
        outside = prepare(spec, ds, device, workdir)
        latent, latents = outside.latent, outside.latents
    else:
        checkpoint = train_spec(spec, ds, device, workdir)
        model = checkpoint.load_model(device)
        latent = model.check_latent(latent)
        latents = ex.extract(checkpoint, ds, latent, device, model=model)
    ex.write_npz(out, latents, {"spec": spec.to_dict(), "latent": latent, "run_id": spec.run_id,
                                "dataset": spec.dataset, "encoder": spec.encoder})
    click.echo(f"wrote {out}: z_train {latents.z_train.shape}, z_test {latents.z_test.shape} ({latent} latent)")


# ------------------------------------------------------------------------------ results
@main.command()
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True)
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--encoder", default=None, help="Only this encoder.")
@click.option("--task", default=None, help="Only this task.")
@common_options
def results(fmt, dataset, encoder, task, workdir, data_dir, allow_unverified):
    """Print every stored score (one row per run, task and metric)."""
    from repeval.results import format_results

    filters = {k: v for k, v in {"dataset": dataset, "encoder": encoder, "task": task}.items() if v}
    rows = _stored_scores(workdir, **filters)
    if not rows and fmt == "table":
        click.echo(f"No scores in {workdir}. Run e.g. `repeval run --encoder acai --task kmeans` first.")
        return
    click.echo(format_results(rows, fmt))


# ------------------------------------------------------------------------------ export
@main.command("export")
@click.option("--to", "to", required=True, type=click.Choice(("mlflow", "wandb", "tensorboard")),
              help="The tracker to log the stored scores to.")
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--encoder", default=None, help="Only this encoder.")
@click.option("--task", default=None, help="Only this task.")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="mlflow: the tracking URI (default: MLflow's own, MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
@click.option("--experiment", default=None, metavar="NAME", help="mlflow: the experiment (created if new).")
@click.option("--run-name", default=None, metavar="NAME",
              help="Name of the tracker's run (tensorboard: a subfolder of --logdir).")
@click.option("--project", default=None, metavar="NAME",
              help="wandb: the project (runs offline, in ./wandb or WANDB_DIR, when WANDB_MODE=offline).")
@click.option("--logdir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="tensorboard: where the event files go (default: <workdir>/tensorboard).")
@click.option("--prefix", default="", metavar="TEXT", help="Put before every key and param, e.g. 'eval/'.")
@click.option("--per-seed", is_flag=True, help="Also log each training seed's own value (key part seed_S).")
@common_options
def export_cmd(to, dataset, encoder, task, tracking_uri, experiment, run_name, project, logdir, prefix, per_seed,
               workdir, data_dir, allow_unverified):
    """Log the stored scores to MLflow, Weights & Biases or TensorBoard, as one new run.

    Keys name dataset, encoder, task and metric (mnist/acai/kmeans/accuracy); a key's value
    is the mean over training seeds (probe seeds averaged first, as in `repeval results`),
    logged at step = the training budget, so several budgets make a curve. Latent sizes,
    latent tensors or settings that differ between rows of one key go into it
    (mnist/acai/latent_dim_32/kmeans/accuracy, mnist/acai/knn/k_5/accuracy). Probe settings
    go out as params (knn.k, ...); undefined (NaN) scores are listed, not logged.

    Each tracker is an extra: pip install "repeval[mlflow]" (or [wandb], [tensorboard]).

    \b
    Examples:
      repeval export --to mlflow --experiment acai --tracking-uri sqlite:///mlflow.db
      WANDB_MODE=offline repeval export --to wandb --project repeval --dataset mnist
      repeval export --to tensorboard --logdir runs/tensorboard && tensorboard --logdir runs/tensorboard
    """
    from repeval.trackers import export

    filters = {k: v for k, v in {"dataset": dataset, "encoder": encoder, "task": task}.items() if v}
    rows = _stored_scores(workdir, **filters)
    if not rows:
        which = f" matching {', '.join(f'--{k} {v}' for k, v in filters.items())}" if filters else ""
        raise UserError(f"No scores stored in {workdir}{which}, so there is nothing to export. Run e.g. "
                        "`repeval run --encoder acai --task kmeans` first, or check --workdir (`repeval results` "
                        "lists what is stored).")
    if to == "tensorboard" and logdir is None:
        logdir = Path(workdir) / "tensorboard"
    logged, where = export(rows, to, tracking_uri=tracking_uri, experiment=experiment, run_name=run_name,
                           project=project, logdir=logdir, prefix=prefix, per_seed=per_seed)
    steps = len({step for points in logged.history.values() for step in points})
    click.echo(f"Logged {len(logged)} metric{'s' * (len(logged) != 1)} at {steps} budget{'s' * (steps != 1)} "
               f"({logged.points} value{'s' * (logged.points != 1)}) and {len(logged.params)} "
               f"param{'s' * (len(logged.params) != 1)}, from {len(rows)} stored score{'s' * (len(rows) != 1)}, "
               f"to {where}.")
    for line in logged.skipped[:10]:
        click.echo(f"  skipped {line}")
    if len(logged.skipped) > 10:
        click.echo(f"  ... and {len(logged.skipped) - 10} more undefined scores, not logged")


# ------------------------------------------------------------------------------ compare
@main.command("compare")
@click.option("--encoder", "encoder_names", multiple=True, required=True,
              help="The two encoders, A then B (give --encoder twice); differences are B - A.")
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--task", default=None, help="Only this task (`repeval tasks` lists them).")
@click.option("--metric", default=None, help="Only this metric (e.g. accuracy).")
@common_options
def compare_cmd(encoder_names, dataset, task, metric, workdir, data_dir, allow_unverified):
    """Paired differences B - A of two encoders' stored scores.

    Per dataset, latent size, budget, task and metric: B - A paired over the training seeds
    both have (mean, 95% interval and p of a paired t-test, n seeds); learned encoders pair
    at the same training budget (snapshots along training pair budget by budget), or, where
    they share none, budget with budget as stored; with one shared seed,
    accuracies are compared on the same test examples (McNemar's test and a paired
    bootstrap interval). Probe seeds are averaged within each model first.

    \b
    Example:
      repeval compare --encoder baseline --encoder acai --dataset digits
    """
    from repeval.compare import compare, format_comparison

    if len(encoder_names) != 2:
        raise UserError(f"compare takes exactly two encoders (--encoder A --encoder B), got {len(encoder_names)}: "
                        f"{', '.join(encoder_names)}.")
    rows = _stored_scores(workdir)
    if not rows:
        raise UserError(f"No scores stored in {workdir}. Run e.g. `repeval run --encoder baseline --encoder acai "
                        "--task all --dataset digits --seed 0 --seed 1 --seed 2` first.")
    a, b = encoder_names
    lines = compare(rows, a, b, dataset=dataset, task=task, metric=metric)
    click.echo(format_comparison(lines, a, b))


# ------------------------------------------------------------------------------ report
@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output HTML file (default: <workdir>/report.html).")
@common_options
def report(out, workdir, data_dir, allow_unverified):
    """Render every stored score into one self-contained HTML report."""
    from repeval.report import build_report

    out = out or Path(workdir) / "report.html"
    build_report(workdir, out)
    click.echo(str(out))


# ------------------------------------------------------------------------------ check
@main.command()
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Committed baseline JSON to compare the stored scores against.")
@click.option("--write-baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a baseline from the stored scores (do this on purpose, then commit it).")
@common_options
def check(baseline, write_baseline, workdir, data_dir, allow_unverified):
    """Gate CI on probe scores: exit 1 on any regression beyond tolerance or missing score."""
    from repeval import check as chk

    if (baseline is None) == (write_baseline is None):
        raise UserError("Give exactly one of --baseline FILE (compare) or --write-baseline FILE (create).")
    rows = _stored_scores(workdir)
    if write_baseline is not None:
        n = chk.write_baseline(rows, write_baseline)
        click.echo(f"wrote {n} baseline rows to {write_baseline}")
        return
    result = chk.compare(chk.load_baseline(baseline), rows)
    click.echo(chk.format_check(result))
    if not result.ok:
        sys.exit(1)


# ------------------------------------------------------------------------------ sweep
def _axis_assignments(items: tuple[str, ...], what: str) -> dict[str, list[Any]]:
    """KEY=VALUE items grouped by key: a key given several times is an axis of the sweep."""
    out: dict[str, list[Any]] = {}
    for item in items:
        for key, value in _parse_assignments((item,), what).items():
            out.setdefault(key, []).append(value)
    return out


@main.command()
@click.option("--encoder", "encoder_names", multiple=True,
              help="Family (repeatable; all: every registered one, all-learned: every trained family).")
@click.option("--dataset", "dataset_names", multiple=True, help="Dataset (repeatable; default mnist).")
@click.option("--latent-dim", "latent_dims", type=int, multiple=True,
              help="Latent size (repeatable; default: each family's for the dataset).")
@click.option("--seed", "seeds", type=int, multiple=True, help="Seed (repeatable; default 0).")
@click.option("--budget", "budgets", type=int, multiple=True,
              help="Training images (repeatable; default 2^24 on a GPU, 2^14 on a CPU).")
@click.option("--task", "tasks", multiple=True, help="Probe every run gets (repeatable, or all).")
@click.option("--latent", "latents", multiple=True, help="Latent tensor (repeatable; default: each family's).")
@click.option("--set", "settings", multiple=True, metavar="TASK.KEY=VALUE",
              help="Probe setting; a key given several times is an axis (e.g. --set kmeans.restarts=20 "
                   "--set kmeans.restarts=1000).")
@click.option("--hparam", "hparams", multiple=True, metavar="KEY=VALUE",
              help="Family hyper-parameter, applied to the families that have it; a key given several times "
                   "is an axis.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A TOML grid: a value or list per key (encoder, dataset, latent_dim, seed, budget, latent, task, "
                   "[hparam], [set]) plus [[cell]] blocks of extra cells (README, 'Sweeps').")
@click.option("--preset", "preset_names", multiple=True,
              help="The paper's grid by name: paper-table1, paper-table2, paper-table3 or paper (docs/protocol.md "
                   "§10); options given beside it replace its values.")
@click.option("--launcher", default="local", show_default=True,
              help="Where jobs run: local (this machine), slurm (submitit), ray.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu or cuda: what every job computes on (local: auto finds the GPUs here).")
@precision_option
@click.option("--jobs", type=int, default=None,
              help="Jobs at once: local CPU workers (default 1; on GPUs one per GPU), the SLURM array "
                   "parallelism, or the CPUs of a local Ray (jobs x CPUs per job).")
@click.option("--threads", type=int, default=None,
              help="CPU threads per job (default: cores / jobs locally, CPUs per job on a cluster).")
@click.option("--jobs-per-gpu", type=int, default=None, help="local: jobs sharing each visible GPU (default 1).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Attempts after a failure (a retried job resumes from its last checkpoint).")
@checkpoint_option
@click.option("--gpus-per-job", type=int, default=None,
              help="slurm, ray: GPUs per job (default 1 with --device cuda, else 0).")
@click.option("--cpus-per-job", type=int, default=None, help="slurm, ray: CPUs per job (default: --threads or 1).")
@click.option("--mem-gb", type=float, default=None, help="slurm: memory per job in GB.")
@click.option("--partition", default=None, help="slurm: the partition.")
@click.option("--timeout-min", type=click.IntRange(min=1), default=24 * 60, show_default=True,
              help="slurm: time limit per job in minutes (a job that reaches it checkpoints and is requeued).")
@click.option("--array-parallelism", type=int, default=64, show_default=True,
              help="slurm: jobs of the array running at once (--jobs overrides it).")
@click.option("--slurm-param", "slurm_params", multiple=True, metavar="KEY=VALUE",
              help="slurm: any other submitit SLURM parameter, e.g. --slurm-param account=proj "
                   "--slurm-param qos=high.")
@click.option("--slurm-executor", type=click.Choice(("slurm", "local")), default="slurm", show_default=True,
              help="slurm: submit to SLURM, or run the same path through submitit's local executor here.")
@click.option("--ray-address", default=None, help="ray: address of a running cluster (default: a local Ray).")
@click.option("--dry-run", is_flag=True, help="Print the plan (each run's state and the totals) and stop.")
@common_options
def sweep(encoder_names, dataset_names, latent_dims, seeds, budgets, tasks, latents, settings, hparams, grid_file,
          preset_names, launcher, device, precision, jobs, threads, jobs_per_gpu, retries, checkpoint_every,
          gpus_per_job, cpus_per_job, mem_gb, partition, timeout_min, array_parallelism, slurm_params, slurm_executor,
          ray_address, dry_run, workdir, data_dir, allow_unverified):
    """Run a grid of runs as independent jobs, here, on SLURM or on Ray; resumable.

    The grid is the product of the repeatable options (each is `repeval run`'s), a TOML file
    (--grid) or a preset of the paper (--preset). Each run is one job, exactly `repeval run`
    of one spec, that writes only its run directory (scores.json beside the checkpoint); this
    command alone writes repeval.db. It prints the plan first (done / incomplete / to run /
    claimed elsewhere), then one progress line; a job's log is job.log in its run directory.
    Run it again after a crash or Ctrl-C: done runs are skipped, the others resume.

    \b
    Examples:
      repeval sweep --encoder all-learned --dataset mnist --latent-dim 32 --seed 0 --seed 1 \\
          --seed 2 --budget 65536 --task linear --task kmeans --task knn --jobs 2
      repeval sweep --preset paper --dry-run
      repeval sweep --preset paper --launcher slurm --gpus-per-job 1 --partition gpu
      repeval sweep --grid grid.toml --launcher ray --ray-address head:6379 --gpus-per-job 1
    """
    import sys as _sys

    from repeval.sweep import driver, presets
    from repeval.sweep.grid import Group, load_grid_file
    from repeval.sweep.registry import LaunchOptions

    base: list[Group] = []
    for name in preset_names:
        base += presets.PRESETS.get(name).build()
    if grid_file is not None:
        base += load_grid_file(grid_file)
    given = Group(axes={k: list(v) for k, v in {"encoder": encoder_names, "dataset": dataset_names,
                                                "latent_dim": latent_dims, "seed": seeds, "budget": budgets,
                                                "latent": latents}.items() if v},
                  tasks=list(tasks), hparams=_axis_assignments(hparams, "--hparam"),
                  settings=_axis_assignments(settings, "--set"))
    groups = [g.override(given) for g in base] if base else [given]
    options = LaunchOptions(
        workdir=workdir, sweep_dir=workdir, device=device, jobs=jobs, threads=threads, jobs_per_gpu=jobs_per_gpu,
        retries=retries, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job, mem_gb=mem_gb, partition=partition,
        timeout_min=timeout_min, array_parallelism=array_parallelism,
        slurm_params=_parse_assignments(slurm_params, "--slurm-param"), slurm_executor=slurm_executor,
        ray_address=ray_address)
    request = driver.SweepRequest(groups=groups, launcher=launcher, options=options, data_dir=data_dir,
                                  allow_unverified=allow_unverified,
                                  checkpoint_every=checkpoint_every, precision=precision,
                                  dry_run=dry_run)
    code = driver.run_sweep(request)
    if code:
        _sys.exit(code)


# ------------------------------------------------------------------------------ collect
@main.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@common_options
def collect(folders, workdir, data_dir, allow_unverified):
    """Index run directories' scores.json into the workdir's repeval.db.

    FOLDERS (default: the workdir) may be workdirs, folders of run directories (e.g. copied
    back from a cluster) or single run directories. Each run and its scores are upserted
    with the store's keys and the timestamps in scores.json, so collecting twice changes
    nothing; a deleted repeval.db is rebuilt completely, a damaged one is moved aside and
    rebuilt. Exits 1 if a run directory could not be read.
    """
    from repeval.sweep.collect import collect as collect_dirs

    result = collect_dirs(workdir, list(folders) or None, log=lambda m: click.echo(m, err=True))
    click.echo(f"collected {result.runs} run(s), {result.scores} score(s) into {Path(workdir) / 'repeval.db'}")
    for line in result.skipped:
        click.echo(f"skipped: {line}", err=True)
    if result.skipped:
        sys.exit(1)
