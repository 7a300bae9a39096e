"""bf16 against fp32 training, paired over seeds: probe scores and final losses.

Reads a workdir where the same runs were trained with ``--precision fp32`` and ``--precision
bf16`` (e.g. ``repeval run --encoder baseline --encoder acai --seed 0 --seed 1 --seed 2 ...
--precision fp32`` and the same with ``bf16``) and prints, per (dataset, encoder, task,
metric), the fp32 and bf16 means over seeds and the paired difference bf16 − fp32 with its
95 % Student-t interval and ``scipy.stats.ttest_rel``'s p; then the same for the last point
of each loss curve (``history.json``).

    python benchmarks/study_precision.py --workdir runs/precision
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats


def paired(a: dict[int, float], b: dict[int, float]) -> str:
    seeds = sorted(set(a) & set(b))
    x = np.array([a[s] for s in seeds])
    y = np.array([b[s] for s in seeds])
    if len(seeds) < 2 or not np.isfinite(x).all() or not np.isfinite(y).all():
        mx, my = (float(v.mean()) if len(v) else float("nan") for v in (x, y))
        return f"| {mx:.4f} | {my:.4f} | | | {len(seeds)} |"
    d = y - x
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if d.std(ddof=1) > 0 else 0.0
    p = stats.ttest_rel(y, x).pvalue if d.std(ddof=1) > 0 else float("nan")
    return (f"| {x.mean():.4f} | {y.mean():.4f} | {d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}] "
            f"| {p:.2f} | {len(seeds)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    args = p.parse_args()
    from repeval.store import Store

    with Store.in_workdir(Path(args.workdir)) as store:
        runs = {r["run_id"]: r for r in store.runs()}
        rows = store.scores()
    table: dict[tuple, dict[str, dict[int, float]]] = {}
    for row in rows:
        spec = runs[row["run_id"]]["spec"]
        if not spec.get("budget"):
            continue
        key = (row["dataset"], row["encoder"], row["budget"], row["task"], row["metric"])
        table.setdefault(key, {}).setdefault(spec.get("precision", "fp32"), {})[row["seed"]] = row["value"]
    print("| dataset | encoder | budget | task | metric | fp32 | bf16 | bf16 − fp32 [95 % t] | p | seeds |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    for key in sorted(table):
        by = table[key]
        if "fp32" in by and "bf16" in by:
            print(f"| {' | '.join(map(str, key))} " + paired(by["fp32"], by["bf16"]))
    losses: dict[tuple, dict[str, dict[int, float]]] = {}
    for run_id, run in runs.items():
        spec = run["spec"]
        history = Path(args.workdir) / "checkpoints" / run_id / "history.json"
        if not spec.get("budget") or not history.is_file():
            continue
        h = json.loads(history.read_text())
        for name, values in h.items():
            if name in ("images", "online_images", "online_accuracy") or not isinstance(values, list) or not values:
                continue
            key = (spec["dataset"], spec["encoder"], spec["budget"], "final loss", name)
            losses.setdefault(key, {}).setdefault(spec.get("precision", "fp32"), {})[spec["seed"]] = float(values[-1])
    print()
    print("| dataset | encoder | budget | | loss (last history point) | fp32 | bf16 | bf16 − fp32 [95 % t] | p "
          "| seeds |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    for key in sorted(losses):
        by = losses[key]
        if "fp32" in by and "bf16" in by:
            print(f"| {' | '.join(map(str, key))} " + paired(by["fp32"], by["bf16"]))


if __name__ == "__main__":
    main()
