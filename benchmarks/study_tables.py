"""Markdown tables of a study workdir: scores at the final budget (mean ± std, 95 % t interval, n)
and each metric along training, per family; paired differences B − A per budget.

Usage: python benchmarks/study_tables.py --workdir runs/study [--dataset mnist] [--latent-dim 32]
           [--metrics linear:accuracy,knn:accuracy,kmeans:accuracy] [--pair baseline,acai ...]
Accuracies print as percentages (differences in points), other metrics as stored. Reads the
workdir's repeval.db (as `repeval results` does); prints Markdown for RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from repeval.compare import compare
from repeval.errors import UserError
from repeval.stats import SIGN_FLIP
from repeval.store import Store
from repeval.summary import summarise

LABELS = {("linear", "accuracy"): "linear", ("knn", "accuracy"): "kNN", ("kmeans", "accuracy"): "k-means"}
PROBES = "linear:accuracy,knn:accuracy,kmeans:accuracy"


def scale(metric: str) -> float:
    return 100.0 if metric == "accuracy" else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--kmeans-restarts", type=int, default=100)
    parser.add_argument("--metrics", default=PROBES,
                        help="comma-separated TASK:METRIC (default: the probes' accuracies)")
    parser.add_argument("--pair", action="append", default=None,
                        help="A,B: print B − A paired over seeds per budget (repeatable; default baseline,acai)")
    args = parser.parse_args()
    metrics = [(t, m, LABELS.get((t, m), m)) for t, m in (x.split(":") for x in args.metrics.split(","))]
    pairs = [tuple(p.split(",")) for p in (args.pair or ["baseline,acai"])]
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
        k = scale(g["metric"])
        ci = g["ci"]
        interval = f" [{k * ci['low']:.3g}, {k * ci['high']:.3g}]" if ci else ""
        return f"{k * g['mean']:.3g} ± {k * g['std']:.2g}{interval} (n={g['n']})"

    print(f"### Scores at {final:,} ({args.dataset}, latent {args.latent_dim}; accuracies in %; "
          "mean ± population std over training seeds, [95 % t interval], n)\n")
    print("| family | " + " | ".join(label for _, _, label in metrics) + " |")
    print("|---|" + "---:|" * len(metrics))
    for enc in encoders:
        print(f"| {enc} | " + " | ".join(fmt(cell.get((enc, final, t, m))) for t, m, _ in metrics) + " |")
    for task, metric, label in metrics:
        k = scale(metric)
        print(f"\n### {label} along training (mean ± std over seeds)\n")
        print("| family | " + " | ".join(f"{b:,}" for b in budgets) + " |")
        print("|---|" + "---:|" * len(budgets))
        for enc in encoders:
            line = []
            for b in budgets:
                g = cell.get((enc, b, task, metric))
                undefined = g is not None and math.isnan(g["mean"])  # e.g. smoothness with no defined path
                line.append("undefined" if undefined else f"{k * g['mean']:.3g} ± {k * g['std']:.2g}" if g else "")
            print(f"| {enc} | " + " | ".join(line) + " |")
    for a, b_ in pairs:
        if not {a, b_} <= set(encoders):
            continue
        print(f"\n### {b_} − {a}, paired over seeds (accuracies in points; 95 % t interval; p of ttest_rel)\n")
        print("| budget | " + " | ".join(label for _, _, label in metrics) + " |")
        print("|---:|" + "---:|" * len(metrics))
        for b in budgets:
            out = []
            for task, metric, _ in metrics:
                sub = [r for r in rows if r["budget"] == b]
                try:
                    lines = compare(sub, a, b_, task=task, metric=metric)
                except UserError:  # nothing to pair at this budget (yet)
                    out.append("")
                    continue
                out.append(", ".join(_diff(x, scale(metric)) for x in lines) or "")
            print(f"| {b:,} | " + " | ".join(out) + " |")


def _diff(line, k: float) -> str:
    d = line.diff
    if math.isnan(d.mean):  # a seed's score is undefined (e.g. smoothness where no path is defined)
        return f"undefined on some seed, n={d.n}"
    if d.test == SIGN_FLIP:  # every seed differs by the same amount: the sign-flip test, no interval
        return f"{k * d.mean:+.3g} (same on every seed), p={d.p:.3f} sign-flip, n={d.n}"
    if math.isnan(d.low):
        return f"{k * d.mean:+.3g} (no interval), n={d.n}"
    return f"{k * d.mean:+.3g} [{k * d.low:+.3g}, {k * d.high:+.3g}], p={d.p:.3f}, n={d.n}"


if __name__ == "__main__":
    main()
