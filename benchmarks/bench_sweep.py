"""`repeval sweep`: what a launcher costs per job, and how to split a CPU between jobs.

Parts (``--parts``, default all that can run here):

- ``overhead`` — for each launcher (``local``, ``slurm`` through submitit's local executor,
  ``slurm`` on a real SLURM when ``sbatch`` works, ``ray`` when installed), one job of a tiny
  grid (baseline on digits, ``--checkpoint-every 0`` so the first training step writes a
  checkpoint, whose ``history.json`` the benchmark watches for): seconds from the driver
  starting the job (its ``events.log``) to that first checkpoint, and from the command's
  start to it. The peer is ``repeval run`` of the same
  spec started directly: command start to its first checkpoint. Launchers interleave per
  repetition; medians.
- ``throughput`` — the same small grid (``--grid-runs`` runs, each ``--budget`` digits
  images) swept with 1 job x 2 threads and with 2 jobs x 1 thread, interleaved: wall time
  and aggregate training images/s (training images of the grid / wall).
- ``concurrency`` — N = 1, 2, 4 training processes on one device at once, as
  ``--jobs-per-gpu N`` would run them: each process warms up its trainer (CUDA graph
  captured), waits at a barrier, then trains ``--steps`` steps; aggregate images/s = all
  images / the slowest process's time. Meant for a GPU (``benchmarks/gpu_check.py`` part
  ``sweep_concurrency`` calls it); ``--device cpu`` runs it small as a dry run.

    python benchmarks/bench_sweep.py --parts overhead,throughput --reps 3 --out benchmarks/results/cpu
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
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
TINY = ("--encoder", "baseline", "--dataset", "digits", "--budget", "1024", "--seed", "0", "--task", "knn")


def _env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = str(threads or 1)
    return env


def _first_file(path: Path, proc: subprocess.Popen, timeout: float = 600) -> float | None:
    """time.time() when ``path`` first exists (polled every 2 ms), or None if ``proc`` ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return time.time()
        if proc.poll() is not None:
            return time.time() if path.exists() else None
        time.sleep(0.002)
    return None


def _started_at(workdir: Path) -> float:
    """time.time() of the first job start in the sweep's events.log."""
    for log in workdir.glob("sweeps/*/events.log"):
        for line in log.read_text().splitlines():
            stamp, _, message = line.partition(" ")
            if message.startswith("started"):
                return datetime.fromisoformat(stamp).timestamp()
    raise RuntimeError(f"no job start in {workdir}/sweeps/*/events.log")


def _one_sweep(launcher_args: list[str], cache: Path) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    argv = [sys.executable, "-m", "repeval", "sweep", *TINY, "--workdir", str(work), "--checkpoint-every", "0",
            *launcher_args]
    t_cmd = time.time()
    proc = subprocess.Popen(argv, env={**_env(), "REPEVAL_CACHE": str(cache)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    run_dirs = work / "checkpoints"
    state = None
    while state is None and proc.poll() is None:
        found = [p for p in run_dirs.glob("baseline-*")] if run_dirs.exists() else []
        if found:
            state = found[0] / "history.json"  # written with every checkpoint
        time.sleep(0.002)
    t_first = _first_file(state, proc) if state is not None else None
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0 or t_first is None:
        raise RuntimeError(f"sweep {' '.join(launcher_args)} failed ({proc.returncode}):\n{out[-3000:]}")
    t_start = _started_at(work)
    t_end = time.time()
    shutil.rmtree(work, ignore_errors=True)
    return {"launch_to_first_step_s": t_first - t_start, "command_to_first_step_s": t_first - t_cmd,
            "command_s": t_end - t_cmd}


def _direct_run(cache: Path) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    argv = [sys.executable, "-m", "repeval", "run", *TINY, "--workdir", str(work), "--checkpoint-every", "0",
            "--threads", "1", "--device", "cpu", "--no-store"]
    t_cmd = time.time()
    proc = subprocess.Popen(argv, env={**_env(), "REPEVAL_CACHE": str(cache)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    state = None
    while state is None and proc.poll() is None:
        found = list((work / "checkpoints").glob("baseline-*")) if (work / "checkpoints").exists() else []
        state = found[0] / "history.json" if found else None
        time.sleep(0.002)
    t_first = _first_file(state, proc) if state is not None else None
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0 or t_first is None:
        raise RuntimeError(f"repeval run failed ({proc.returncode}):\n{out[-3000:]}")
    t_end = time.time()
    shutil.rmtree(work, ignore_errors=True)
    return {"launch_to_first_step_s": t_first - t_cmd, "command_to_first_step_s": t_first - t_cmd,
            "command_s": t_end - t_cmd}


def launchers_here() -> dict[str, list[str] | None]:
    """The launcher configurations that can run on this machine (None: why not, below)."""
    out: dict[str, list[str] | None] = {"local": ["--launcher", "local", "--jobs", "1", "--threads", "1"]}
    try:
        import submitit  # noqa: F401
        out["slurm (submitit local executor)"] = ["--launcher", "slurm", "--slurm-executor", "local",
                                                  "--cpus-per-job", "1", "--timeout-min", "30"]
        ok = shutil.which("sinfo") and subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                                      timeout=20).stdout.split()
        out["slurm (SLURM on localhost)"] = (["--launcher", "slurm", "--cpus-per-job", "1", "--mem-gb", "2",
                                              "--timeout-min", "30"] if ok else None)
    except ImportError:
        out["slurm (submitit local executor)"] = None
    try:
        import ray  # noqa: F401
        out["ray (local Ray, 2 CPUs)"] = ["--launcher", "ray", "--jobs", "2", "--cpus-per-job", "1"]
    except ImportError:
        out["ray (local Ray, 2 CPUs)"] = None
    return out


def overhead(reps: int, cache: Path) -> dict[str, Any]:
    configs = {"repeval run (direct, the peer)": "direct", **launchers_here()}
    runnable = {k: v for k, v in configs.items() if v is not None}
    times: dict[str, list[dict[str, float]]] = {k: [] for k in runnable}
    load_before = common.load_average()
    _direct_run(cache)  # warm the page cache and the dataset cache, untimed
    names = list(runnable)
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            r = _direct_run(cache) if runnable[name] == "direct" else _one_sweep(runnable[name], cache)
            print(f"  {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), flush=True)
            times[name].append(r)
    peer = statistics.median(t["launch_to_first_step_s"] for t in times["repeval run (direct, the peer)"])
    result: dict[str, Any] = {"grid": " ".join(TINY), "reps": reps, "load_before": load_before,
                              "load_after": common.load_average(), "launchers": {},
                              "not_here": [k for k, v in configs.items() if v is None]}
    for name, rows in times.items():
        med = {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}
        result["launchers"][name] = {"median": med, "all": rows, "args": runnable[name],
                                     "launch_to_first_step_vs_direct": round(med["launch_to_first_step_s"] / peer, 2)}
    return result


def throughput(reps: int, cache: Path, runs: int, budget: int) -> dict[str, Any]:
    seeds = [str(s) for s in range(runs)]
    grid = ["--encoder", "baseline", "--dataset", "digits", "--budget", str(budget), "--task", "knn"]
    for s in seeds:
        grid += ["--seed", s]
    variants = {"1 job x 2 threads": ["--jobs", "1", "--threads", "2"],
                "2 jobs x 1 thread": ["--jobs", "2", "--threads", "1"]}
    walls: dict[str, list[float]] = {k: [] for k in variants}
    load_before = common.load_average()
    names = list(variants)
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            work = Path(tempfile.mkdtemp(prefix="bench-sweep-tp-"))
            argv = [sys.executable, "-m", "repeval", "sweep", *grid, "--workdir", str(work), *variants[name]]
            t0 = time.perf_counter()
            proc = subprocess.run(argv, env={**_env(), "REPEVAL_CACHE": str(cache)}, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"sweep {name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            walls[name].append(wall)
            print(f"  {name}: {wall:.1f} s", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    images = runs * budget
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {"grid": " ".join(grid), "runs": runs, "training_images": images, "reps": reps,
            "load_before": load_before, "load_after": common.load_average(),
            "wall_s": {k: [round(x, 2) for x in v] for k, v in walls.items()},
            "median_wall_s": {k: round(v, 2) for k, v in med.items()},
            "aggregate_train_images_per_s": {k: round(images / v, 1) for k, v in med.items()},
            "ratio_2x1_over_1x2_wall": round(med["2 jobs x 1 thread"] / med["1 job x 2 threads"], 3)}


# ------------------------------------------------------------------------------ concurrency
def concurrency_worker(args) -> None:
    """One process of the concurrency part: warm up, report ready, wait for go, train, report."""
    import torch

    from repeval.data import DataOptions, load
    from repeval.specs import make_spec
    from repeval.train import Trainer

    torch.set_num_threads(1)
    options = DataOptions(Path(args.data_dir) if args.data_dir else None, allow_unverified=True)
    dataset = load(args.dataset, options)
    work = Path(tempfile.mkdtemp(prefix="bench-conc-"))
    spec = make_spec(args.family, args.dataset, latent_dim=None, budget=64 * (args.warmup + args.steps + 10), seed=0)
    Trainer(spec, dataset, args.device, work, progress=False).run(max_steps=args.warmup)  # capture, autotune
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    Path(args.ready).touch()
    while not Path(args.go).exists():
        time.sleep(0.001)
    t0 = time.perf_counter()
    Trainer(spec, dataset, args.device, work, progress=False).run(max_steps=args.steps)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "images": 64 * args.steps}), flush=True)
    shutil.rmtree(work, ignore_errors=True)


def concurrency(device: str, family: str, counts=(1, 2, 4), steps: int = 2000, warmup: int = 50,
                dataset: str = "digits", data_dir: str | None = None, timeout: float = 300) -> dict[str, Any]:
    """Aggregate training images/s of ``n`` processes sharing ``device``, for each n in ``counts``."""
    out: dict[str, Any] = {"device": device, "family": family, "steps": steps, "warmup": warmup, "dataset": dataset}
    for n in counts:
        sync_dir = Path(tempfile.mkdtemp(prefix="bench-conc-sync-"))
        go = sync_dir / "go"
        procs = []
        for i in range(n):
            argv = [sys.executable, __file__, "concurrency-worker", "--device", device, "--family", family,
                    "--steps", str(steps), "--warmup", str(warmup), "--dataset", dataset,
                    "--ready", str(sync_dir / f"ready-{i}"), "--go", str(go)]
            argv += ["--data-dir", data_dir] if data_dir else []
            procs.append(subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        end = time.monotonic() + timeout
        while len(list(sync_dir.glob("ready-*"))) < n:
            if time.monotonic() > end or any(p.poll() is not None for p in procs):
                for p in procs:
                    p.kill()
                errors = [p.communicate()[1][-1500:] for p in procs]
                raise RuntimeError(f"{n} concurrent workers did not all get ready: {errors}")
            time.sleep(0.01)
        go.touch()
        reports = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"worker failed: {stderr[-1500:]}")
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
        slowest = max(r["seconds"] for r in reports)
        total = sum(r["images"] for r in reports)
        out[f"{n}"] = {"per_job_images_per_s": [round(r["images"] / r["seconds"], 1) for r in reports],
                       "aggregate_images_per_s": round(total / slowest, 1), "slowest_s": round(slowest, 2)}
        shutil.rmtree(sync_dir, ignore_errors=True)
        print(f"  {family} x{n} on {device}: aggregate {out[str(n)]['aggregate_images_per_s']:,.0f} img/s", flush=True)
    base = out[str(counts[0])]["aggregate_images_per_s"]
    out["aggregate_vs_1"] = {str(n): round(out[str(n)]["aggregate_images_per_s"] / base, 2) for n in counts}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "concurrency-worker":
        p = argparse.ArgumentParser()
        for flag in ("--device", "--family", "--dataset", "--ready", "--go", "--data-dir"):
            p.add_argument(flag)
        p.add_argument("--steps", type=int)
        p.add_argument("--warmup", type=int)
        concurrency_worker(p.parse_args(argv[1:]))
        return {}
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="overhead,throughput", help="overhead, throughput, concurrency")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--grid-runs", type=int, default=4, help="throughput: runs in the grid")
    p.add_argument("--budget", type=int, default=4096, help="throughput: training images per run")
    p.add_argument("--device", default="cpu", help="concurrency: cpu (a dry run) or cuda")
    p.add_argument("--family", default="baseline", help="concurrency: the family trained")
    p.add_argument("--steps", type=int, default=None, help="concurrency: timed steps per process")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    cache = Path(tempfile.mkdtemp(prefix="bench-sweep-cache-"))
    results: dict[str, Any] = {"machine": common.machine(), "command": " ".join([sys.executable, *sys.argv])}
    for part in args.parts.split(","):
        print(f"--- {part}", flush=True)
        if part == "overhead":
            results["overhead"] = overhead(args.reps, cache)
        elif part == "throughput":
            results["throughput"] = throughput(args.reps, cache, args.grid_runs, args.budget)
        elif part == "concurrency":
            cuda = args.device.startswith("cuda")
            results["concurrency"] = concurrency(args.device, args.family, steps=args.steps or (2000 if cuda else 20),
                                                 warmup=50 if cuda else 3)
        else:
            raise SystemExit(f"unknown part {part!r}")
    common.write_results("bench_sweep", results, args.out)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1, default=str)[:6000])
    return results


if __name__ == "__main__":
    main()
