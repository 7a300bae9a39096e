"""Markdown tables of a study workdir: scores at one budget (mean ± std, 95 % t interval, n) and
each metric along training, per family; the paired ACAI − baseline difference per budget.

Usage: python benchmarks/study_tables.py --workdir runs/study [--dataset mnist] [--latent-dim 32]
Reads the workdir's repeval.db (as `repeval results` does); prints Markdown for RESULTS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repeval.compare import compare
from repeval.errors import UserError
from repeval.store import Store
from repeval.summary import summarise

METRICS = [("linear", "accuracy", "linear"), ("knn", "accuracy", "kNN"), ("kmeans", "accuracy", "k-means")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--kmeans-restarts", type=int, default=100)
    args = parser.parse_args()
    with Store.in_workdir(args.workdir) as store:
        rows = [r for r in store.scores() if r["dataset"] == args.dataset and r["latent_dim"] == args.latent_dim]
    rows = [r for r in rows if r["task"] != "kmeans" or r["settings"].get("restarts") == args.kmeans_restarts]
    groups = summarise(rows)
    cell = {(g["encoder"], g["budget"], g["task"], g["metric"]): g for g in groups}
    encoders = list(dict.fromkeys(g["encoder"] for g in groups))
    budgets = sorted({g["budget"] for g in groups})
    final = max(budgets)

    def fmt(g) -> str:
        if g is None:
            return ""
        ci = g["ci"]
        interval = f" [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]" if ci else ""
        return f"{100 * g['mean']:.2f} ± {100 * g['std']:.2f}{interval} (n={g['n']})"

    print(f"### Scores at {final:,} images ({args.dataset}, latent {args.latent_dim}; accuracy %, "
          "mean ± population std over training seeds, [95 % t interval], n)\n")
    print("| family | " + " | ".join(label for _, _, label in METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for enc in encoders:
        print(f"| {enc} | " + " | ".join(fmt(cell.get((enc, final, t, m))) for t, m, _ in METRICS) + " |")
    for task, metric, label in METRICS:
        print(f"\n### {label} accuracy % along training (mean ± std over seeds)\n")
        print("| family | " + " | ".join(f"{b:,}" for b in budgets) + " |")
        print("|---|" + "---:|" * len(budgets))
        for enc in encoders:
            line = []
            for b in budgets:
                g = cell.get((enc, b, task, metric))
                line.append(f"{100 * g['mean']:.2f} ± {100 * g['std']:.2f}" if g else "")
            print(f"| {enc} | " + " | ".join(line) + " |")
    if {"acai", "baseline"} <= set(encoders):
        print("\n### ACAI − baseline, paired over seeds (percentage points; 95 % t interval; p of ttest_rel)\n")
        print("| budget | " + " | ".join(label for _, _, label in METRICS) + " |")
        print("|---:|" + "---:|" * len(METRICS))
        for b in budgets:
            out = []
            for task, metric, _ in METRICS:
                sub = [r for r in rows if r["budget"] == b]
                try:
                    lines = compare(sub, "baseline", "acai", task=task, metric=metric)
                except UserError:  # nothing to pair at this budget (yet)
                    out.append("")
                    continue
                out.append(", ".join(_diff(x) for x in lines) or "")
            print(f"| {b:,} | " + " | ".join(out) + " |")


def _diff(line) -> str:
    d = line.diff
    return f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}], p={d.p:.3f}, n={d.n}"


if __name__ == "__main__":
    main()
