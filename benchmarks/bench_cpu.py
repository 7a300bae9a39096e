"""The CPU at its speed: precision and memory layout, threads on a shared machine, torch.compile.

Three parts, each a ratio against a peer measured in the same run:

- ``precision`` — repeval's trainer (``repeval.train.Trainer``, steady-state images/s as in
  ``bench_train.py``) on MNIST for every family at latent 32 and 256, one thread, in four
  configurations run interleaved: ``fp32`` in the default (contiguous) layout, the trainer's CPU
  configuration before channels-last; ``fp32 CL`` (channels-last, the default now); ``bf16 CL``
  (``--precision bf16``); and pythae 0.1.2 on the same module instances where it has the family
  (fp32, its own loop; run with the benchmark venv, see ``bench_train.py``).
- ``threads`` — the default thread policy (``repeval/threads.py``: the cores other processes leave
  free when the command starts) against fixed 1 and 2 threads, on an idle machine and with another
  process spinning (``python -c "while True: pass"``, started before the measured process); each
  configuration in its own child process (the thread pools are per process), interleaved.
- ``compile`` — ``torch.compile`` (inductor, CPU) of a family's training step against eager, a
  plain loop (forward, one backward per optimiser group, Adam), channels-last fp32, one thread:
  steady step rate after warm-up and the compile time.

``python benchmarks/bench_cpu.py [--parts precision,threads,compile] [--families ...]``; JSON
to ``$OUT/bench_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train as bt  # noqa: E402
import common  # noqa: E402
import torch  # noqa: E402

CONFIGS = {"fp32": ("fp32", False), "fp32 CL": ("fp32", True), "bf16 CL": ("bf16", True)}


def spec_for(family: str, latent: int, precision: str = "fp32"):
    from repeval.specs import PAPER_BUDGET, make_spec

    # the paper's budget spaces the online evaluations out; steady_rate takes the median step
    return make_spec(family, "mnist", latent_dim=latent, budget=PAPER_BUDGET, seed=0, precision=precision)


def run_trainer(family: str, latent: int, precision: str, channels_last: bool, dataset, steps: int):
    import encoders
    from repeval.train import Trainer

    spec = spec_for(family, latent, precision)
    stamps: list[float] = []
    cls = encoders.get(family)
    with tempfile.TemporaryDirectory() as work, \
            mock.patch.object(cls, "training_step", bt.stamped(cls.training_step, stamps)):
        start = time.perf_counter()
        Trainer(spec, dataset, "cpu", Path(work), progress=False, log=lambda *a, **k: None,
                checkpoint_every_s=1e9, channels_last=channels_last).run(max_steps=steps)
        total = time.perf_counter() - start
    return total, stamps


def interleave(contenders: dict[str, Callable[[], tuple[float, list[float]]]], reps: int) -> dict[str, float]:
    """Median steady-state images/s of each contender over ``reps`` interleaved runs."""
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            _, stamps = contenders[name]()
            rates[name].append(bt.steady_rate(stamps, 64))
    return {k: round(statistics.median(v), 1) for k, v in rates.items()}


def part_precision(args, dataset) -> dict[str, Any]:
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    have_pythae = bt.have_pythae()
    for latent in args.latents:
        for family in args.families:
            contenders = {name: (lambda p=p, cl=cl, f=family, z=latent:
                                 run_trainer(f, z, p, cl, dataset, args.steps))
                          for name, (p, cl) in CONFIGS.items()}
            if have_pythae and family in bt.PYTHAE_FAMILY:
                with mock.patch.object(bt, "make_spec", lambda f, z=latent: spec_for(f, z)):
                    data = bt.pythae_dataset(family, dataset, args.steps)

                def pythae(f=family, z=latent, d=data):
                    with mock.patch.object(bt, "make_spec", lambda name: spec_for(name, z)):
                        return bt.run_pythae(f, d, args.steps, "cpu")
                contenders["pythae fp32"] = pythae
            load = common.load_average()
            rates = interleave(contenders, args.reps)
            row = {"images_per_s": rates, "load": [load, common.load_average()],
                   "fp32 CL / fp32": round(rates["fp32 CL"] / rates["fp32"], 3),
                   "bf16 CL / fp32": round(rates["bf16 CL"] / rates["fp32"], 3)}
            if "pythae fp32" in rates:
                row["fp32 CL / pythae"] = round(rates["fp32 CL"] / rates["pythae fp32"], 3)
            out[f"{family}/{latent}"] = row
            print(f"{family:10s} latent {latent:4d}  " + "  ".join(f"{k}={v:,.0f}" for k, v in rates.items())
                  + "  " + "  ".join(f"{k}={v}" for k, v in row.items() if "/" in k)
                  + f"  (load {row['load'][0]}->{row['load'][1]})", flush=True)
    return out


# ----------------------------------------------------------------------------- threads
def child_rate(threads: str, family: str, steps: int, data_dir: str | None) -> dict[str, Any]:
    """In a child process: the CLI's thread set-up for ``threads`` ('auto' = the default
    policy), then the trainer's steady rate."""
    from repeval.cli import _setup_process

    _setup_process(None if threads == "auto" else int(threads))
    used = torch.get_num_threads()
    dataset = common.load_dataset("mnist", data_dir)
    _, stamps = run_trainer(family, 32, "fp32", True, dataset, steps)
    return {"threads": used, "images_per_s": round(bt.steady_rate(stamps, 64), 1)}


def part_threads(args) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "REPEVAL_THREADS")}

    def child(threads: str) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--child", threads, "--families", args.families[0], "--steps",
               str(args.thread_steps)] + (["--data-dir", args.data_dir] if args.data_dir else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    out: dict[str, Any] = {}
    for situation in ("idle", "one core busy"):
        spinner = None
        if situation != "idle":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            runs: dict[str, list[dict[str, Any]]] = {"auto": [], "1": [], "2": []}
            load = common.load_average()
            for rep in range(args.reps):
                for t in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
                    runs[t].append(child(t))
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        rates = {t: statistics.median(r["images_per_s"] for r in v) for t, v in runs.items()}
        used = {t: [r["threads"] for r in v] for t, v in runs.items()}
        out[situation] = {"images_per_s": rates, "threads_used": used,
                          "load": [load, common.load_average()],
                          "default / 1 thread": round(rates["auto"] / rates["1"], 3),
                          "2 threads / 1 thread": round(rates["2"] / rates["1"], 3)}
        print(f"threads, {situation}: " + json.dumps(out[situation]), flush=True)
    out["default busy / 1 thread idle"] = round(out["one core busy"]["images_per_s"]["auto"]
                                                / out["idle"]["images_per_s"]["1"], 3)
    return out


# ----------------------------------------------------------------------------- compile
def part_compile(args, dataset) -> dict[str, Any]:
    from encoders import build_model
    from repeval.data.base import to_float

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    for family in args.families[:2]:
        rates: dict[str, float] = {}
        for mode in ("eager", "compiled"):
            torch.manual_seed(0)
            model = build_model(spec_for(family, 32), 1).to(memory_format=torch.channels_last)
            groups = model.optimizer_groups(1e-4)
            opts = {g: torch.optim.Adam(p, lr=lr) for g, (p, lr) in groups.items()}
            step = torch.compile(model.training_step) if mode == "compiled" else model.training_step
            x_all = dataset.train.x
            times = []
            start = time.perf_counter()
            for i in range(args.steps + 3):
                t = time.perf_counter()
                x = to_float(x_all[i * 64:(i + 1) * 64]).contiguous(memory_format=torch.channels_last)
                losses = step(x).losses
                names = list(groups)
                for j, g in enumerate(names):
                    grads = torch.autograd.grad(losses[g], groups[g][0], retain_graph=j < len(names) - 1,
                                                allow_unused=True)
                    for p, gr in zip(groups[g][0], grads):
                        p.grad = gr
                for o in opts.values():
                    o.step()
                times.append(time.perf_counter() - t)
                if i == 0:
                    first = time.perf_counter() - start
            rates[mode] = round(64 / statistics.median(times[3:]), 1)
            rates[f"{mode} first step s"] = round(first, 1)
        out[family] = {**rates, "compiled / eager": round(rates["compiled"] / rates["eager"], 3)}
        print(f"compile {family}: {out[family]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    common.as_the_cli()  # train as `repeval train` does (common's docstring)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="precision,threads,compile")
    p.add_argument("--families", default=",".join(bt.FAMILIES))
    p.add_argument("--latents", default="32,256")
    p.add_argument("--steps", type=int, default=12, help="training steps per run (precision, compile)")
    p.add_argument("--thread-steps", type=int, default=40, help="training steps per child (threads)")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--data-dir")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out")
    args = p.parse_args(argv)
    args.families = args.families.split(",")
    args.latents = [int(z) for z in args.latents.split(",")]
    if args.child:
        print(json.dumps(child_rate(args.child, args.families[0], args.steps, args.data_dir)))
        return {}
    from repeval import precision

    report: dict[str, Any] = {"machine": common.machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "native_bf16": precision.cpu_bf16(), "pythae": bt.have_pythae()}
    print(f"# CPU speed, native bf16: {report['native_bf16']}, load {common.load_average()}", flush=True)
    dataset = common.load_dataset("mnist", args.data_dir)
    parts = args.parts.split(",")
    if "precision" in parts:
        report["precision"] = part_precision(args, dataset)
    if "threads" in parts:
        report["threads"] = part_threads(args)
    if "compile" in parts:
        report["compile"] = part_compile(args, dataset)
    common.write_results("bench_cpu", report, args.out)
    return report


if __name__ == "__main__":
    main()
