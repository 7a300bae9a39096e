"""Measured effect of glibc's allocator thresholds on the trainer (a process-wide setting,
which is why it is measured in child processes; the CLI applies it to its own process,
``repeval/cli.py::_tune_allocator``, while the library leaves its host's allocator alone).

``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` and ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` at process
start on Linux/glibc (or ``MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=1073741824`` in the environment),
so that the 1–4 MiB activation buffers of a training step are reused from the heap
instead of being ``mmap``-ed, page-faulted and unmapped every step. glibc's default mmap
threshold is dynamic (it rises after a large block is freed, up to 32 MiB), so whether a
process page-faults depends on its allocation history.

The setting is process-wide and irreversible, so each side runs in its own child process
(``--rounds`` children per side, alternating); inside a child, repeval's trainer runs
``--reps`` times per family (steady-state images/s, median; minor page faults counted
over the child's runs).

Run: ``python benchmarks/proposals.py`` (``--families acai,baseline``, ``--rounds 2``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train as bt  # noqa: E402
import common  # noqa: E402
import torch  # noqa: E402


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def trainer_rate(family: str, dataset, steps: int) -> float:
    """Steady-state images/s of ``repeval.train.Trainer`` for ``steps`` steps of ``family``."""
    import encoders
    from repeval.train import Trainer

    cls = encoders.get(family)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as work, \
            mock.patch.object(cls, "training_step", bt.stamped(cls.training_step, stamps)):
        Trainer(bt.make_spec(family), dataset, "cpu", Path(work), progress=False,
                log=lambda *a, **k: None).run(max_steps=steps)
    return bt.steady_rate(stamps, 64)


def malloc_child(families: list[str], steps: int, reps: int, tuned: bool, threads: int,
                 data_dir: str | None) -> dict[str, Any]:
    from repeval.cli import _tune_allocator  # the CLI's own setting (glibc only)

    applied = _tune_allocator() if tuned else False
    torch.set_num_threads(threads)
    dataset = common.load_dataset("mnist", data_dir)
    out: dict[str, Any] = {"mallopt": applied}
    for family in families:
        before = minor_faults()
        rates = [trainer_rate(family, dataset, steps) for _ in range(reps)]
        out[family] = {"images_per_s": round(statistics.median(rates), 1), "all": [round(r, 1) for r in rates],
                       "minor_page_faults": minor_faults() - before}
    return out


def malloc_tuning(families: list[str], steps: int, reps: int, rounds: int, threads: int,
                  data_dir: str | None) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"current": [], "mallopt": []}
    load = common.load_average()
    for r in range(rounds):
        for label in (("current", "mallopt") if r % 2 == 0 else ("mallopt", "current")):
            cmd = [sys.executable, __file__, "--malloc-child", "--families", ",".join(families),
                   "--steps", str(steps), "--reps", str(reps), "--threads", str(threads)]
            if label == "mallopt":
                cmd.append("--tuned")
            if data_dir:
                cmd += ["--data-dir", data_dir]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"runs": runs, "load_before": load, "load_after": common.load_average()}
    for family in families:
        med = {k: statistics.median(x[family]["images_per_s"] for x in v) for k, v in runs.items()}
        faults = {k: [x[family]["minor_page_faults"] for x in v] for k, v in runs.items()}
        out[family] = {"images_per_s": med, "minor_page_faults": faults,
                       "speedup": round(med["mallopt"] / med["current"], 3)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default="acai,baseline")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--reps", type=int, default=3, help="trainer runs per family in each child")
    p.add_argument("--rounds", type=int, default=1, help="child processes per side")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir")
    p.add_argument("--out")
    p.add_argument("--malloc-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    families = args.families.split(",")
    if args.malloc_child:
        print(json.dumps(malloc_child(families, args.steps, args.reps, args.tuned, args.threads, args.data_dir)))
        return {}
    r = malloc_tuning(families, args.steps, args.reps, args.rounds, args.threads, args.data_dir)
    report = {"machine": common.machine(), "threads": args.threads, "steps": args.steps, "reps": args.reps,
              "rounds": args.rounds, "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "malloc_tuning": r}
    print(f"# glibc mallopt (mmap threshold 32 MiB, trim threshold 1 GiB) vs default, trainer, "
          f"{args.steps} steps x {args.reps} reps x {args.rounds} round(s), {args.threads} thread(s)")
    for family in families:
        f = r[family]
        print(f"{family:10s} current={f['images_per_s']['current']:,.0f} img/s  "
              f"mallopt={f['images_per_s']['mallopt']:,.0f} img/s  speed-up={f['speedup']}  "
              f"minor faults {f['minor_page_faults']['current']} -> {f['minor_page_faults']['mallopt']}  "
              f"(load {r['load_before']}->{r['load_after']})", flush=True)
    common.write_results("proposals", report, args.out)
    return report


if __name__ == "__main__":
    main()
