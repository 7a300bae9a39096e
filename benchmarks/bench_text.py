"""Text (``clock``): the nearest-string search against a plain numpy float64 search, the
interpolation task end to end, and training cost per example on ``clock`` against ``shepard``.

Parts (``--parts``, default all):

- ``search`` — the nearest valid string of 4,096 decoded examples (256 pairs × 16 steps) among
  the 43,200 clock strings: repeval's exact structured search (:func:`repeval.data.clock.nearest`,
  hour + minute + second parts on probabilities rounded to 2^-40, and :func:`~repeval.data.clock.search`,
  which adds the argmax details and the edit distance) against numpy float64 (one matmul of the
  flattened probabilities with the one-hot bank, in chunks of 512 queries, argmax), for softmax
  queries (soft) and their argmax one-hot (argmax). Checks that both find the same strings
  where numpy's float64 sums have no ties to break differently (softmax queries of random
  logits: none), and the same score.
- ``task`` — ``repeval.probes.interpolation.run`` end to end on ``clock`` (encode 512 strings,
  decode 4,096 interpolants, search, metrics) with a freshly built baseline at latent 64,
  against :func:`repeval.data.clock.search` alone on 4,096 softmax queries.
- ``train`` — every family (``--families``) at latent 64 and 256 (``--latents``), trained by
  ``repeval.train.Trainer`` for ``--steps`` batches of 64 on ``clock`` (22×64 one-hot, the 1-D
  stack, cross-entropy) and on ``shepard`` (1×1024 signals), interleaved, ``--reps`` rounds.
  Figure: steady-state examples/s and the ratio clock / shepard per family and latent size.

One thread (``--threads``, default 1). Prints a JSON document; ``--out`` saves it.

    python benchmarks/bench_text.py --out benchmarks/results/cpu-DATE/bench_text.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_signals import FAMILIES, compare_rates, train_rate  # noqa: E402

QUERIES = 4096
CHUNK = 512


def softmax_queries(seed: int = 0):
    """4,096 decoded-like examples: softmax of 3 × normal logits around real strings."""
    import numpy as np

    from repeval.data import clock

    rng = np.random.default_rng(seed)
    ids = clock.tokens(rng.integers(0, clock.UNIVERSE, QUERIES))
    logits = 3 * rng.standard_normal((QUERIES, clock.VOCAB, clock.LENGTH))
    logits += 6 * clock.one_hot(ids)  # near a valid string, as a trained decoder's output
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def numpy_nearest(queries):
    """Dense float64 search: flattened queries times the one-hot bank, argmax per query."""
    import numpy as np

    from repeval.data import clock

    bank = clock.one_hot(clock.reference_bank()[0]).reshape(clock.UNIVERSE, -1).astype(np.float64)
    flat = queries.reshape(len(queries), -1)
    best, score = [], []
    for start in range(0, len(flat), CHUNK):
        sim = flat[start:start + CHUNK] @ bank.T
        index = sim.argmax(axis=1)
        best.append(index)
        score.append(sim[np.arange(len(index)), index])
    return np.concatenate(best), np.concatenate(score)


def part_search(reps: int) -> dict[str, Any]:
    import numpy as np

    from repeval.data import clock

    soft = softmax_queries()
    hard = np.eye(clock.VOCAB)[soft.argmax(axis=1)].transpose(0, 2, 1)
    out: dict[str, Any] = {"queries": QUERIES, "bank": clock.UNIVERSE}
    for name, queries in (("soft", soft), ("argmax", hard)):
        ours, theirs = clock.nearest(queries), numpy_nearest(queries)
        timing = common.interleaved({"repeval_nearest": lambda q=queries: clock.nearest(q),
                                     "repeval_search": lambda q=queries: clock.search(q),
                                     "numpy_float64": lambda q=queries: numpy_nearest(q)}, reps)
        med = {k: statistics.median(v) for k, v in timing.times.items()}
        out[name] = {"same_strings": float(np.mean(ours[0] == theirs[0])),
                     "max_score_difference": float(np.abs(ours[1] - theirs[1]).max()),
                     "seconds": {k: round(v, 3) for k, v in med.items()},
                     "seconds_all": {k: [round(t, 3) for t in v] for k, v in timing.times.items()},
                     "ratio_search_over_numpy": round(med["repeval_search"] / med["numpy_float64"], 3),
                     "load_before": timing.load_before, "load_after": timing.load_after}
        print(f"search {name}: {out[name]['seconds']}", file=sys.stderr)
    return out


def part_task(reps: int) -> dict[str, Any]:
    import torch

    from encoders import build_model
    from repeval import data
    from repeval.data import clock
    from repeval.probes.interpolation import InterpolationSettings, run
    from repeval.specs import make_spec

    dataset = data.load("clock")
    torch.manual_seed(0)
    model = build_model(make_spec("baseline", "clock", latent_dim=64, budget=4096), dataset.example).eval()
    queries = softmax_queries(1)
    timing = common.interleaved({
        "task": lambda: run(model, dataset, InterpolationSettings(), "cpu"),
        "search_only": lambda: clock.search(queries)}, reps)
    med = {k: statistics.median(v) for k, v in timing.times.items()}
    return {"seconds": {k: round(v, 3) for k, v in med.items()},
            "task_minus_search_s": round(med["task"] - med["search_only"], 3),
            "load_before": timing.load_before, "load_after": timing.load_after}


def part_train(families: list[str], latents: list[int], steps: int, reps: int) -> dict[str, Any]:
    from repeval import data

    sets = {name: data.load(name) for name in ("shepard", "clock")}
    return compare_rates(families, latents, reps,
                         {name: (lambda f, d, ds=ds: train_rate(f, ds, d, steps)) for name, ds in sets.items()},
                         "examples", ("clock", "shepard"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    common.as_the_cli()  # train as `repeval train` does (common's docstring)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="search,task,train")
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
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
