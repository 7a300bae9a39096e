"""The text study's budget check: how many of a model's reconstructions of test strings are valid.

For every finished `clock` run in a workdir (one line per family, seed and budget): encode and
decode the first ``--n`` test strings, take the argmax per position, and count the decoded strings
that are in the bank of 43,200 (exactly right or another valid time) and the characters that differ
from the input. Prints a Markdown table, mean over seeds per family and budget.

    python benchmarks/study_clock_reconstructions.py --workdir runs/clock [--budgets 1048576,2097152]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def reconstruction_scores(model, x, batch: int = 500) -> tuple[float, float, float]:
    """(valid fraction, exact fraction, character error rate) of ``model``'s argmax reconstructions of
    the one-hot strings ``x`` (N, V, L)."""
    import numpy as np
    import torch

    from repeval.data import clock

    x = x.float()
    ids, truth = [], x.argmax(dim=1).numpy()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            ids.append(model.decode(model.encode(xb)).argmax(dim=1).numpy())
    got = np.concatenate(ids)
    _, matches = clock.nearest(clock.one_hot(got))
    return (float(np.mean(matches == clock.LENGTH)), float(np.mean((got == truth).all(axis=1))),
            float(np.mean(got != truth)))


def main() -> None:
    import torch

    from repeval import data
    from repeval.checkpoint import Checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--budgets", default="1048576,2097152", help="comma-separated budgets to check")
    p.add_argument("--n", type=int, default=2000, help="test strings per model")
    args = p.parse_args()
    torch.set_num_threads(1)
    budgets = {int(b) for b in args.budgets.split(",")}
    x = data.load("clock").test.x[:args.n]
    found: dict[tuple[str, int], list[tuple[int, tuple[float, float, float]]]] = {}
    for run in sorted((args.workdir / "checkpoints").iterdir()):
        ckpt = Checkpoint(run)
        if ckpt.manifest is None or not ckpt.manifest["complete"]:
            continue
        spec = ckpt.spec
        if spec.dataset != "clock" or spec.budget not in budgets:
            continue
        scores = reconstruction_scores(ckpt.load_model(), x)
        found.setdefault((spec.encoder, spec.budget), []).append((spec.seed, scores))
    print(f"First {args.n} test strings; valid %: mean (per seed)\n")
    print("| family | budget | seeds | valid % | exact % | characters wrong % |")
    print("|---|---:|---:|---:|---:|---:|")
    for (family, budget), seeded in sorted(found.items()):
        scores = [s for _, s in sorted(seeded)]
        cols = [statistics.fmean(s[i] for s in scores) for i in range(3)]
        per_seed = ", ".join(f"s{seed} {100 * s[0]:.1f}" for seed, s in sorted(seeded))
        print(f"| {family} | {budget:,} | {len(scores)} | {100 * cols[0]:.1f} ({per_seed}) | {100 * cols[1]:.1f} "
              f"| {100 * cols[2]:.2f} |")


if __name__ == "__main__":
    main()
