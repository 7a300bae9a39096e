"""1 vs 2 torch/OpenMP threads, with OpenMP's default and its passive wait policy.

On a small shared CPU, an OpenMP thread that finishes its share of a parallel region
spins (GNU OpenMP's default wait policy) waiting for a sibling that the OS has
descheduled; with many tiny ops per step (a depth-16 conv autoencoder at batch 64, a
256→10 linear probe) this can make two threads an order of magnitude slower than one.
``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep instead. The policy is read once
when the OpenMP runtime starts, so each policy runs in its own child process (the
children alternate, ``--rounds`` times each); inside a child, 1 and 2 threads alternate
(interleaved, medians). Each round's figures and load are kept.

Workloads (all on CPU, real MNIST where data is needed):

- ``train_baseline`` / ``train_acai`` — repeval's trainer, steady-state images/s;
- ``kmeans_faiss`` — ``faiss.Kmeans`` 1 restart × 10 iterations on 60,000×256 latents (s);
- ``linear_fit`` — repeval's linear probe on 60,000×256 latents, 20 L-BFGS iterations (s);
- ``extract`` — ``repeval.extract.encode`` of 2,048 images at batch 256 (images/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

POLICIES = {"default": None, "passive": "PASSIVE"}


def child(steps: int, reps: int, data_dir: str | None) -> dict[str, Any]:
    import bench_train as bt
    import faiss
    import numpy as np
    import torch

    from repeval.extract import encode
    from repeval.probes import TASKS, resolve_settings
    from repeval.probes.base import Latents

    dataset = common.load_dataset("mnist", data_dir)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((60_000, 256)).astype(np.float32)
    latents = Latents(z, dataset.train.y.numpy(), z[:10_000], dataset.test.y.numpy(), 10)
    encoder = bt.build("baseline").eval()
    x_extract = dataset.test.x[:2048]

    def kmeans() -> float:
        start = time.perf_counter()
        faiss.Kmeans(256, 10, niter=10, nredo=1, seed=0, max_points_per_centroid=6000).train(z)
        return time.perf_counter() - start

    def linear_fit() -> float:
        settings = resolve_settings("linear", "cpu")
        if "max_iter" in {f.name for f in dataclasses.fields(settings)}:
            settings = dataclasses.replace(settings, max_iter=20)
        start = time.perf_counter()
        TASKS["linear"].run(latents, settings, "cpu")
        return time.perf_counter() - start

    def extract() -> float:
        start = time.perf_counter()
        encode(encoder, x_extract, "map", "cpu", 256)
        return len(x_extract) / (time.perf_counter() - start)

    def trainer(family: str) -> Callable[[], float]:
        return lambda: bt.steady_rate(bt.run_repeval(family, dataset, steps, "cpu")[1], 64)

    work: dict[str, tuple[Callable[[], float], str]] = {
        "train_baseline": (trainer("baseline"), "img/s"), "train_acai": (trainer("acai"), "img/s"),
        "kmeans_faiss": (kmeans, "s"), "linear_fit": (linear_fit, "s"), "extract": (extract, "img/s")}
    out: dict[str, Any] = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                           "load_before": common.load_average()}
    for name, (fn, unit) in work.items():
        values: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(reps):
            for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
                torch.set_num_threads(n)
                faiss.omp_set_num_threads(n)
                values[n].append(fn())
        med = {n: statistics.median(v) for n, v in values.items()}
        speedup = med[2] / med[1] if unit == "img/s" else med[1] / med[2]
        out[name] = {"unit": unit, "1_thread": round(med[1], 3), "2_threads": round(med[2], 3),
                     "all": {f"{n}": [round(x, 3) for x in v] for n, v in values.items()},
                     "speedup_2_over_1": round(speedup, 3), "load": common.load_average()}
    out["load_after"] = common.load_average()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4, help="trainer steps per run")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="child processes per policy, alternating")
    p.add_argument("--data-dir")
    p.add_argument("--out")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps, args.reps, args.data_dir)))
        return {}
    report: dict[str, Any] = {"machine": common.machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "policies": {}}
    print("# threads x OpenMP wait policy (speed-up = 2 threads over 1; >1 means 2 threads help)")
    labels = list(POLICIES)
    for round_ in range(args.rounds):
        for label in (labels if round_ % 2 == 0 else labels[::-1]):
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if POLICIES[label]:
                env["OMP_WAIT_POLICY"] = POLICIES[label]
            cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--reps", str(args.reps)]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            report["policies"].setdefault(label, []).append(r)
            for name, v in r.items():
                if isinstance(v, dict):
                    print(f"{label:8s} {name:15s} 1 thread {v['1_thread']:>9} {v['unit']:5s}  2 threads "
                          f"{v['2_threads']:>9} {v['unit']:5s}  speed-up {v['speedup_2_over_1']:.2f}  "
                          f"(load {v['load']})", flush=True)
    common.write_results("bench_threads", report, args.out)
    return report


if __name__ == "__main__":
    main()
