"""1-D signals: training cost per example on ``shepard`` against ``lines``, and the
interpolation task's nearest-bank search against a plain numpy float64 search.

Parts (``--parts``, default all):

- ``train`` — every family (``--families``) at latent 64 and 256 (``--latents``), trained by
  ``repeval.train.Trainer`` for ``--steps`` batches of 64 on ``lines`` (1×32×32 images, the
  2-D stack, channels-last) and on ``shepard`` (1×1024 signals, the 1-D stack), interleaved
  (``common.interleaved`` order), ``--reps`` rounds. Figure: steady-state images/s (of the
  median step, the first left out: ``bench_train.steady_rate``) and the ratio shepard / lines
  per family and latent size.
- ``pool`` — the 1-D stack's pooling: each family trained on ``shepard`` as built (the pair mean
  of ``encoders.layers.PairMean``) and with ``torch.nn.AvgPool1d(2)`` in its place (the same
  numbers; both in the plain (B, C, L) layout ``AvgPool1d`` needs), interleaved. Figure: images/s
  and the ratio pair mean / ``AvgPool1d``.
- ``layout`` — the 1-D stacks' layout: each family trained on ``shepard`` as built ((B, C, 1, L)
  channels-last tensors through ``encoders.layers.SignalConv``) and as plain (B, C, L) ``conv1d``
  stacks (``encoders.layers.SIGNALS_CHANNELS_LAST`` off; the same function, other roundings),
  interleaved. Figure: images/s and the ratio channels-last / conv1d.
- ``search`` — the nearest-bank search of the interpolation metric for 4,096 decoded signals
  (256 pairs × 16 steps) against the 10,000-tone bank: repeval's
  ``repeval.probes.interpolation.nearest_in_bank`` (torch float64 matmul on normalised
  vectors, chunks of 1,024) against numpy float64 (normalise, one matmul, argmax).
- ``task`` — ``repeval.probes.interpolation.run`` end to end (encode 512 tones, decode 4,096
  interpolants, search, metrics) with a freshly built baseline at latent 64, against the search
  alone: the task's overhead beyond the search is the encoding and decoding.

One thread (``--threads``, default 1) for everything, and the allocator setting the CLI gives
its own process (``common.as_the_cli``; ``REPEVAL_MALLOC_TUNING=0`` measures glibc's defaults).
Prints a JSON document; ``--out`` saves it.

    python benchmarks/bench_signals.py --out benchmarks/results/cpu-DATE/bench_signals.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_train import stamped, steady_rate  # noqa: E402

FAMILIES = ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai")


def train_rate(family: str, dataset, latent_dim: int, steps: int) -> float:
    import encoders
    from repeval.specs import PAPER_BUDGET, make_spec
    from repeval.train import Trainer

    # the paper's budget spaces the online evaluations out (the first at 1,024 images, step 16:
    # steady_rate takes the median step, so an evaluation inside the run does not count)
    spec = make_spec(family, dataset.name, latent_dim=latent_dim, budget=PAPER_BUDGET, seed=0)
    cls = encoders.get(family)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as work, \
            mock.patch.object(cls, "training_step", stamped(cls.training_step, stamps)):
        Trainer(spec, dataset, "cpu", Path(work), progress=False, log=lambda *a, **k: None,
                checkpoint_every_s=1e9).run(max_steps=steps)
    return steady_rate(stamps, spec.batch_size)


def compare_rates(families: list[str], latents: list[int], reps: int,
                  contenders: dict[str, Callable[[str, int], float]], unit: str,
                  ratio: tuple[str, str]) -> dict[str, Any]:
    """Training rates of each family and latent size under every contender (a function of family and
    latent size giving a rate), interleaved in alternating order for ``reps`` rounds; medians, every
    figure, the ratio ``ratio[0] / ratio[1]`` and the load around each comparison."""
    out: dict[str, Any] = {}
    for family in families:
        for dim in latents:
            rates: dict[str, list[float]] = {name: [] for name in contenders}
            load_before = common.load_average()
            for rep in range(reps):
                for name in (list(contenders) if rep % 2 == 0 else list(contenders)[::-1]):
                    rates[name].append(contenders[name](family, dim))
            med = {k: statistics.median(v) for k, v in rates.items()}
            key, label = f"{family}@{dim}", f"{ratio[0]}/{ratio[1]}"
            out[key] = {f"{unit}_per_s": {k: round(v, 1) for k, v in med.items()},
                        f"{unit}_per_s_all": {k: [round(r, 1) for r in v] for k, v in rates.items()},
                        f"ratio_{ratio[0]}_over_{ratio[1]}": round(med[ratio[0]] / med[ratio[1]], 3),
                        "load_before": load_before, "load_after": common.load_average()}
            print(f"{key}: {out[key][f'{unit}_per_s']} {label} {out[key][f'ratio_{ratio[0]}_over_{ratio[1]}']}",
                  file=sys.stderr)
    return out


def part_train(families: list[str], latents: list[int], steps: int, reps: int) -> dict[str, Any]:
    from repeval import data

    sets = {name: data.load(name) for name in ("lines", "shepard")}
    return compare_rates(families, latents, reps,
                         {name: (lambda f, d, ds=ds: train_rate(f, ds, d, steps)) for name, ds in sets.items()},
                         "images", ("shepard", "lines"))


def part_pool(families: list[str], latents: list[int], steps: int, reps: int) -> dict[str, Any]:
    import torch

    import encoders.layers
    from repeval import data

    shepard = data.load("shepard")

    def with_avg_pool1d(family: str, dim: int) -> float:  # AvgPool1d takes (B, C, L): the plain 1-D layout
        with mock.patch.object(encoders.layers, "PairMean", torch.nn.AvgPool1d), \
                mock.patch.object(encoders.layers, "SIGNALS_CHANNELS_LAST", False):
            return train_rate(family, shepard, dim, steps)

    return compare_rates(families, latents, reps,
                         {"pair_mean": lambda f, d: train_rate(f, shepard, d, steps), "avg_pool1d": with_avg_pool1d},
                         "images", ("pair_mean", "avg_pool1d"))


def part_layout(families: list[str], latents: list[int], steps: int, reps: int) -> dict[str, Any]:
    import encoders.layers
    from repeval import data

    shepard = data.load("shepard")

    def plain(family: str, dim: int) -> float:
        with mock.patch.object(encoders.layers, "SIGNALS_CHANNELS_LAST", False):
            return train_rate(family, shepard, dim, steps)

    return compare_rates(families, latents, reps,
                         {"channels_last": lambda f, d: train_rate(f, shepard, d, steps), "conv1d": plain},
                         "images", ("channels_last", "conv1d"))


def numpy_search(queries, bank, factors):
    import numpy as np

    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sim = q @ b.T
    best = sim.argmax(axis=1)
    return 1.0 - sim[np.arange(len(q)), best], factors[best]


def part_search(reps: int) -> dict[str, Any]:
    import numpy as np

    from repeval.data import shepard
    from repeval.probes.interpolation import nearest_in_bank

    bank, factors = shepard.reference_bank()
    rng = np.random.default_rng(0)
    chroma = rng.uniform(size=4096)
    queries = shepard.tones(chroma) + 0.05 * rng.standard_normal((4096, shepard.LENGTH))  # decoded-like tones
    ours = nearest_in_bank(queries, bank, factors)
    theirs = numpy_search(queries, bank, factors)
    agree = bool((ours[1] == theirs[1]).all()) and float(np.abs(ours[0] - theirs[0]).max()) < 1e-12
    timing = common.interleaved({"repeval": lambda: nearest_in_bank(queries, bank, factors),
                                 "numpy_float64": lambda: numpy_search(queries, bank, factors)}, reps)
    med = {k: statistics.median(v) for k, v in timing.times.items()}
    return {"queries": 4096, "bank": len(factors), "same_nearest_and_distances": agree,
            "seconds": {k: round(v, 3) for k, v in med.items()},
            "seconds_all": {k: [round(t, 3) for t in v] for k, v in timing.times.items()},
            "ratio_repeval_over_numpy": round(med["repeval"] / med["numpy_float64"], 3),
            "load_before": timing.load_before, "load_after": timing.load_after}


def part_task(reps: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from encoders import build_model
    from repeval import data
    from repeval.probes.interpolation import InterpolationSettings, nearest_in_bank, run
    from repeval.specs import make_spec

    dataset = data.load("shepard")
    torch.manual_seed(0)
    model = build_model(make_spec("baseline", "shepard", latent_dim=64, budget=4096), dataset.example).eval()
    bank, factors = dataset.bank.load()
    queries = np.random.default_rng(1).standard_normal((4096, 1024))
    timing = common.interleaved({
        "task": lambda: run(model, dataset, InterpolationSettings(), "cpu"),
        "search_only": lambda: nearest_in_bank(queries, bank, factors)}, reps)
    med = {k: statistics.median(v) for k, v in timing.times.items()}
    return {"seconds": {k: round(v, 3) for k, v in med.items()},
            "task_minus_search_s": round(med["task"] - med["search_only"], 3),
            "load_before": timing.load_before, "load_after": timing.load_after}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    common.as_the_cli()  # train as `repeval train` does (common's docstring)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="train,search,task", help="any of train,layout,pool,search,task")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--latents", default="64,256")
    p.add_argument("--steps", type=int, default=24, help="training steps per run")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    limiter = common.set_threads(args.threads)
    parts = args.parts.split(",")
    result: dict[str, Any] = {"machine": common.machine(), "threads": args.threads, "date": time.strftime("%Y-%m-%d")}
    with limiter:
        if "search" in parts:
            result["search"] = part_search(args.reps)
        if "task" in parts:
            result["task"] = part_task(args.reps)
        if "train" in parts:
            result["train"] = part_train(args.families.split(","), [int(d) for d in args.latents.split(",")],
                                         args.steps, args.reps)
        if "layout" in parts:
            result["layout"] = part_layout(args.families.split(","), [int(d) for d in args.latents.split(",")],
                                           args.steps, args.reps)
        if "pool" in parts:
            result["pool"] = part_pool(args.families.split(","), [int(d) for d in args.latents.split(",")],
                                       args.steps, args.reps)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
