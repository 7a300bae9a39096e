"""What repeval's Python API costs against the command line and against its own parts.

Three parts (``--parts``, default all):

- ``import`` — wall time of ``python -c "import repeval"`` in fresh processes (``--import-runs``,
  min and median), beside a bare ``python -c pass`` interleaved with it, and which heavy
  modules (torch, sklearn, faiss, pandas, numpy) the import loads: the API is re-exported
  lazily, so none should be.
- ``probe`` — ``repeval.probe`` on N × D float32 latents (default 60,000 + 10,000 × 256, ten
  classes: Gaussian class centres plus unit noise) against ``repeval run --encoder
  latents:FILE`` on the same arrays, the same tasks (``linear``, ``knn``, ``kmeans`` with
  ``--restarts``) and the same settings. Both run in fresh processes, one thread each,
  interleaved (the order reversed every other round, one untimed warm-up round): the CLI as
  the console script with a fresh ``--workdir`` (as a user runs it: it stores the rows), the
  API through ``python -c`` that loads the same ``.npz`` with NumPy and calls
  ``repeval.probe`` (``workdir=None``: it writes nothing). The figure is the ratio of median
  wall times, probe / run; the scores of both must be equal. In-process, the fixed costs of
  each input path are timed too: the arrays' checks and digest (``ArraysSource``) and the
  file's sha256, read and checks (``read_latents``).
- ``prober`` — :class:`repeval.Prober` on ``--prober-examples`` train + test inputs (random
  1×32×32 images with class templates, a small conv encoder, tasks ``knn`` and ``linear``),
  one call, against its parts timed alone: one encoding pass of both splits
  (``repeval.extract.encode_inputs``) and ``repeval.probe`` on the latents it produces;
  interleaved in this process, one thread. The figure is prober / (encode + probe).

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/bench_api.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HEAVY = ("torch", "sklearn", "faiss", "pandas", "numpy", "scipy")
PARTS = ("import", "probe", "prober")
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "REPEVAL_THREADS": "1"}

# the API's side of part "probe": load the npz as a user would, probe, print the scores
PROBE_CODE = """
import json, sys, time
import numpy as np
import repeval
path, restarts, tasks = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
with np.load(path) as f:
    arrays = [f[k] for k in ("z_train", "y_train", "z_test", "y_test")]
start = time.perf_counter()
rows = repeval.probe(*arrays, tasks=tasks, settings={"kmeans": {"restarts": restarts}}, name="bench",
                     dataset="synthetic")
print(json.dumps({"probe_s": time.perf_counter() - start,
                  "scores": [[r["task"], r["metric"], r["value"]] for r in rows]}))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY",)}
    env.update(CHILD_ENV)
    return env


def timed(cmd: list[str], timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=timeout, cwd=common.ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, done


def repeval_command() -> list[str]:
    script = Path(sys.executable).with_name("repeval")
    return [str(script)] if script.exists() else [sys.executable, "-m", "repeval"]


# ------------------------------------------------------------------------------ (a) import
def part_import(runs: int) -> dict[str, Any]:
    contenders = {"python -c pass": [sys.executable, "-c", "pass"],
                  "python -c 'import repeval'": [sys.executable, "-c", "import repeval"]}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    timed(contenders["python -c 'import repeval'"])  # warm the file cache
    load_before = common.load_average()
    for rep in range(runs):
        for name in (list(contenders) if rep % 2 == 0 else list(contenders)[::-1]):
            times[name].append(timed(contenders[name])[0])
    probe = ("import json, sys; before = set(sys.modules); import repeval; "
             f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}); "
             "print(json.dumps({'heavy': heavy, 'new_modules': len(set(sys.modules) - before)}))")
    loaded = json.loads(timed([sys.executable, "-c", probe])[1].stdout)
    out = {"runs": runs, "all_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
           "min_s": {k: round(min(v), 4) for k, v in times.items()},
           "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
           "heavy_modules_loaded": loaded["heavy"], "modules_imported": loaded["new_modules"],
           "load_before": load_before, "load_after": common.load_average()}
    for name in contenders:
        print(f"{name:28s} min {out['min_s'][name]:.3f} s  median {out['median_s'][name]:.3f} s  ({runs} runs)")
    print(f"import repeval loads {loaded['new_modules']} modules; heavy ones: {loaded['heavy'] or 'none'}  "
          f"(load {out['load_before']}->{out['load_after']})", flush=True)
    return out


# ------------------------------------------------------------------------------ (b) probe vs run
def synthetic_latents(n_train: int, n_test: int, dim: int, classes: int = 10, seed: int = 0):
    """Ten Gaussian class centres (scale 0.2 per dimension) plus unit noise, float32; int64 labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = (0.2 * rng.standard_normal((classes, dim))).astype(np.float32)

    def draw(n: int):
        y = rng.integers(0, classes, n)
        return (centres[y] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32), y.astype(np.int64)

    z_train, y_train = draw(n_train)
    z_test, y_test = draw(n_test)
    return {"z_train": z_train, "y_train": y_train, "z_test": z_test, "y_test": y_test}


def fixed_costs(arrays: dict[str, Any], path: Path, reps: int = 3) -> dict[str, float]:
    """In-process medians of each input path's own work: the arrays' checks and digest, the
    file's sha256, and the file's read and checks."""
    from repeval.external import ArraysSource, _array_digest, _read_latents, check_arrays
    from repeval.paths import file_digest

    work = {
        "ArraysSource (checks + digest of the arrays)": lambda: ArraysSource(*arrays.values(), name="bench"),
        "check_arrays alone": lambda: check_arrays(dict(arrays), "bench"),
        "_array_digest alone (sha256 of the arrays' bytes)": lambda: _array_digest(arrays, {"split": None}),
        "file_digest (sha256 of the .npz)": lambda: file_digest(path),
        "_read_latents (np.load + checks)": lambda: _read_latents(path, ""),
    }
    timing = common.interleaved(work, reps=reps, warmup=1)
    return {k: round(v, 4) for k, v in timing.summary()["median_s"].items()}


def part_probe(n_train: int, n_test: int, dim: int, restarts: int, reps: int, tasks: list[str]) -> dict[str, Any]:
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix="repeval-bench-api-"))
    try:
        arrays = synthetic_latents(n_train, n_test, dim)
        path = tmp / "latents.npz"
        np.savez(path, **arrays)
        size_mb = path.stat().st_size / 2**20
        print(f"# {n_train:,} + {n_test:,} x {dim} float32 latents ({size_mb:.0f} MiB npz), tasks {','.join(tasks)}, "
              f"kmeans.restarts={restarts}; {reps} interleaved rounds after one warm-up", flush=True)

        def run_cli(i: int):
            work = tmp / f"work-{i}"
            cmd = [*repeval_command(), "run", "--encoder", f"latents:{path}", "--dataset", "synthetic", "--name",
                   "bench", *[a for t in tasks for a in ("--task", t)], "--set", f"kmeans.restarts={restarts}",
                   "--device", "cpu", "--workdir", str(work), "--json"]
            wall, done = timed(cmd)
            shutil.rmtree(work, ignore_errors=True)
            scores = sorted((r["task"], r["metric"], r["value"]) for r in json.loads(done.stdout))
            return wall, scores, None

        def run_api(i: int):
            wall, done = timed([sys.executable, "-c", PROBE_CODE, str(path), str(restarts), ",".join(tasks)])
            out = json.loads(done.stdout.strip().splitlines()[-1])
            return wall, sorted(tuple(s) for s in out["scores"]), out["probe_s"]

        contenders = {"repeval run --encoder latents:FILE": run_cli, "repeval.probe (python -c)": run_api}
        walls: dict[str, list[float]] = {k: [] for k in contenders}
        inner: list[float] = []
        scores: dict[str, Any] = {}
        load_before = common.load_average()
        for rep in range(reps + 1):  # round 0 is the warm-up
            for name in (list(contenders) if rep % 2 == 0 else list(contenders)[::-1]):
                wall, got, probe_s = contenders[name](rep)
                scores.setdefault(name, got)
                if scores[name] != got:
                    raise RuntimeError(f"{name}: scores changed between rounds: {scores[name]} vs {got}")
                print(f"  round {rep}{' (warm-up)' if rep == 0 else ''}: {name:36s} {wall:7.2f} s"
                      + (f"  (repeval.probe call {probe_s:.2f} s)" if probe_s else ""), flush=True)
                if rep > 0:
                    walls[name].append(wall)
                    if probe_s:
                        inner.append(probe_s)
        load_after = common.load_average()
        cli, api = contenders
        medians = {k: statistics.median(v) for k, v in walls.items()}
        ratio = medians[api] / medians[cli]
        same = scores[cli] == scores[api]
        print(f"median wall: run {medians[cli]:.2f} s, probe {medians[api]:.2f} s; probe / run = {ratio:.3f}; "
              f"scores equal: {same}  (load {load_before}->{load_after})", flush=True)
        costs = fixed_costs(arrays, path)
        for k, v in costs.items():
            print(f"  in-process: {k:52s} {v:.3f} s")
        return {"n_train": n_train, "n_test": n_test, "dim": dim, "tasks": tasks, "restarts": restarts, "reps": reps,
                "npz_mib": round(size_mb, 1), "all_wall_s": {k: [round(t, 3) for t in v] for k, v in walls.items()},
                "median_wall_s": {k: round(v, 3) for k, v in medians.items()},
                "probe_call_s": [round(t, 3) for t in inner], "ratio_probe_over_run": round(ratio, 4),
                "scores_equal": same, "scores": scores[api], "fixed_costs_s": costs,
                "load_before": load_before, "load_after": load_after}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ (c) Prober vs its parts
def part_prober(n: int, reps: int, tasks: list[str]) -> dict[str, Any]:
    import torch
    from torch import nn

    import repeval
    from repeval.extract import encode_inputs

    generator = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 1, 32, 32, generator=generator) * 2 - 1

    def draw(count: int):
        y = torch.randint(0, 10, (count,), generator=generator)
        x = (0.5 * templates[y] + 0.5 * torch.randn(count, 1, 32, 32, generator=generator)).clamp(-1, 1)
        return x, y

    train, test = draw(n), draw(n)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 8 * 8, 64))
    start = time.perf_counter()
    prober = repeval.Prober(train, test, tasks=tasks, max_examples=n)
    setup_s = time.perf_counter() - start
    latents: dict[str, Any] = {}

    def encode():
        latents["train"] = encode_inputs(model, train[0])
        latents["test"] = encode_inputs(model, test[0])

    encode()

    def probe_only():
        return repeval.probe(latents["train"], train[1], latents["test"], test[1], tasks=tasks, name="prober")

    step = iter(range(10**6))
    work = {"Prober call": lambda: prober(model, next(step)), "encode_inputs, train + test": encode,
            "repeval.probe on those latents": probe_only}
    timing = common.interleaved(work, reps=reps, warmup=1)
    medians = timing.summary()["median_s"]
    parts = medians["encode_inputs, train + test"] + medians["repeval.probe on those latents"]
    ratio = medians["Prober call"] / parts
    same = prober.history[-1] == {"step": prober.history[-1]["step"],
                                  **{f"{r['task']}/{r['metric']}": float(r["value"]) for r in probe_only()}}
    own = own_work(prober, model, reps)
    print(f"# Prober: {n:,} + {n:,} inputs 1x32x32, conv encoder -> 64, tasks {','.join(tasks)}, {reps} rounds")
    for k, v in medians.items():
        print(f"  {k:34s} {v:.3f} s")
    print(f"  Prober(...) construction (draw)  {setup_s:.3f} s")
    print(f"  a Prober call's own work (outside encode_inputs and probe), median of {reps} calls: "
          f"{own * 1e3:.3f} ms")
    print(f"prober / (encode + probe) = {ratio:.3f}; values equal: {same}  "
          f"(load {timing.load_before}->{timing.load_after})", flush=True)
    return {"examples": n, "tasks": tasks, "reps": reps, **timing.summary(), "setup_s": round(setup_s, 4),
            "own_work_s": round(own, 6), "ratio_prober_over_parts": round(ratio, 4), "values_equal": same,
            "history": prober.history[-1]}


def own_work(prober, model, calls: int) -> float:
    """Median seconds of a Prober call spent outside ``encode_inputs`` and ``repeval.probe``
    (both wrapped with timers for the measurement, then restored)."""
    import repeval.api as api
    import repeval.extract as extract

    spent = {"inner": 0.0}
    originals = extract.encode_inputs, api.probe

    def wrap(fn):
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent["inner"] += time.perf_counter() - start
        return timed_call

    extract.encode_inputs, api.probe = wrap(originals[0]), wrap(originals[1])
    rest = []
    try:
        for i in range(calls):
            spent["inner"] = 0.0
            start = time.perf_counter()
            prober(model, -1 - i)
            rest.append(time.perf_counter() - start - spent["inner"])
    finally:
        extract.encode_inputs, api.probe = originals
    return statistics.median(rest)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--import-runs", type=int, default=10)
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--restarts", type=int, default=10, help="k-means restarts, the same for run and probe")
    p.add_argument("--tasks", default="linear,knn,kmeans")
    p.add_argument("--reps", type=int, default=3, help="timed rounds of probe vs run (after one warm-up)")
    p.add_argument("--prober-examples", type=int, default=10_000)
    p.add_argument("--prober-tasks", default="knn,linear")
    p.add_argument("--prober-reps", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    common.set_threads(1)  # this process (the prober part); children get OMP_NUM_THREADS=1
    report: dict[str, Any] = {"machine": common.machine(), "command": " ".join([Path(sys.executable).name,
                                                                                *sys.argv])}
    if "import" in parts:
        report["import"] = part_import(args.import_runs)
    if "probe" in parts:
        report["probe"] = part_probe(args.n_train, args.n_test, args.dim, args.restarts, args.reps,
                                     args.tasks.split(","))
    if "prober" in parts:
        report["prober"] = part_prober(args.prober_examples, args.prober_reps, args.prober_tasks.split(","))
    common.write_results("bench_api", report, args.out)
    return report


if __name__ == "__main__":
    main()
