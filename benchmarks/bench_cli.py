"""End-to-end wall time of one ``repeval`` command, as a user runs it, under thread and
allocator settings.

Default command: ``repeval train --encoder acai --dataset digits --budget 4096
--device cpu`` (64 steps of ACAI at batch 64 plus its 4 online evaluations, from
interpreter start to the printed checkpoint). Every run gets a fresh ``--workdir`` so
nothing is resumed or reused. Variants (``--variants``), each a change to the
environment of the child process:

- ``default`` — the library defaults: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
  ``REPEVAL_THREADS`` and ``OMP_WAIT_POLICY`` removed (torch then uses one thread per core);
- ``passive`` — default threads with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads
  sleep instead of spinning; see ``bench_threads.py``);
- ``omp1`` — ``OMP_NUM_THREADS=1``;
- ``omp1_mallopt`` — ``OMP_NUM_THREADS=1`` plus glibc's ``MALLOC_MMAP_THRESHOLD_=32 MiB``
  and ``MALLOC_TRIM_THRESHOLD_=1 GiB`` in the environment (the allocator setting of
  ``proposals.py``; the CLI now applies it itself, so this equals ``omp1`` since then);
- ``omp1_untuned`` — ``OMP_NUM_THREADS=1`` and ``REPEVAL_MALLOC_TUNING=0``: the CLI
  without its allocator setting.

Variants run interleaved (the order reversed every other round), ``--reps`` rounds; the
figure is the median wall time, with the children's user and system CPU time and minor
page faults. A run that exceeds ``--timeout`` seconds (quick: 120, the bar for this
command on a 2-core machine; full: 300) is killed and recorded as such.

``--before DIR`` adds, interleaved with the same variants, the repeval of another source
tree (``python -m repeval`` run in ``DIR``), e.g. an earlier commit exported with
``git archive COMMIT | tar -x -C DIR``: before/after figures under the same load.
"""

from __future__ import annotations

import argparse
import os
import resource
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

from repeval.cli import MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD  # noqa: E402

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "REPEVAL_THREADS", "OMP_WAIT_POLICY")
# the CLI's own setting, through glibc's environment variables
MALLOPT = {"MALLOC_MMAP_THRESHOLD_": str(MALLOC_MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(MALLOC_TRIM_THRESHOLD)}
VARIANTS: dict[str, dict[str, str]] = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
                                       "omp1": {"OMP_NUM_THREADS": "1"},
                                       "omp1_mallopt": {"OMP_NUM_THREADS": "1", **MALLOPT},
                                       "omp1_untuned": {"OMP_NUM_THREADS": "1", "REPEVAL_MALLOC_TUNING": "0"}}
DEFAULT_ARGS = "train --encoder acai --dataset digits --budget 4096 --device cpu"


def repeval_executable(tree: Path | None) -> list[str]:
    """``python -m repeval`` for ``tree``; else the ``repeval`` entry point next to this
    interpreter, or ``python -m repeval`` from the current directory."""
    script = Path(sys.executable).with_name("repeval")
    return [str(script)] if script.exists() and tree is None else [sys.executable, "-m", "repeval"]


def run_once(args: list[str], variant: str, timeout: float, tree: Path | None = None) -> dict[str, Any]:
    """One run of ``repeval ARGS --workdir <fresh>`` under ``variant``: wall, CPU, faults."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(VARIANTS[variant])
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    work = tempfile.mkdtemp(prefix="repeval-bench-cli-")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = common.load_average()
    start = time.perf_counter()
    try:
        done = subprocess.run([*repeval_executable(tree), *args, "--workdir", work], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=tree or common.ROOT)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        status = f"killed after {timeout:.0f} s"
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(work, ignore_errors=True)
    return {"status": status, "wall_s": round(wall, 2), "user_s": round(after.ru_utime - before.ru_utime, 2),
            "sys_s": round(after.ru_stime - before.ru_stime, 2),
            "minor_page_faults": after.ru_minflt - before.ru_minflt,
            "load_before": load, "load_after": common.load_average()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--args", default=DEFAULT_ARGS,
                   help=f"repeval arguments, without --workdir (default: {DEFAULT_ARGS!r})")
    p.add_argument("--variants",
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default: quick default,omp1; full all)")
    p.add_argument("--reps", type=int, help="interleaved rounds (default: quick 1, full 3)")
    p.add_argument("--timeout", type=float, help="seconds before a run is killed (default: quick 120, full 300)")
    p.add_argument("--before", type=Path, help="also time the repeval of this source tree (e.g. an earlier commit), "
                                               "same variants, interleaved")
    p.add_argument("--full", action="store_true")
    p.add_argument("--quick", action="store_true", help="the default")
    p.add_argument("--out")
    args = p.parse_args(argv)
    variants = (args.variants or (",".join(VARIANTS) if args.full else "default,omp1")).split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    reps = args.reps or (3 if args.full else 1)
    timeout = args.timeout or (300.0 if args.full else 120.0)
    trees: dict[str, Path | None] = {"": None}
    if args.before:
        trees = {"before:": args.before.resolve(), "after:": None}
    contenders = [(label + v, tree, v) for label, tree in trees.items() for v in variants]
    cli_args = args.args.split()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in contenders}
    load_before = common.load_average()
    print(f"# repeval {args.args}: wall time, {reps} round(s), load {load_before}"
          + (f"; before = {trees['before:']}" if args.before else ""), flush=True)
    for rep in range(reps):
        for name, tree, variant in (contenders if rep % 2 == 0 else contenders[::-1]):
            r = run_once(cli_args, variant, timeout, tree)
            runs[name].append(r)
            print(f"{name:20s} {r['wall_s']:7.1f} s wall  user {r['user_s']:.1f} s  sys {r['sys_s']:.1f} s  "
                  f"minor faults {r['minor_page_faults']:,}  {r['status']}  "
                  f"(load {r['load_before']}->{r['load_after']})",
                  flush=True)
    summary = {name: {"median_wall_s": round(statistics.median(r["wall_s"] for r in rs), 2),
                      "all_ok": all(r["status"] == "ok" for r in rs)} for name, rs in runs.items()}
    report = {"machine": common.machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "repeval_args": args.args,
              "trees": {(k or "after:").rstrip(":"): str(v or common.ROOT) for k, v in trees.items()},
              "variants": {v: VARIANTS[v] for v in variants}, "reps": reps, "timeout_s": timeout,
              "runs": runs, "summary": summary, "load_before": load_before, "load_after": common.load_average()}
    print("median wall: " + "  ".join(f"{name}={s['median_wall_s']} s" + ("" if s["all_ok"] else " (not all ok)")
                                      for name, s in summary.items()))
    common.write_results("bench_cli", report, args.out)
    return report


if __name__ == "__main__":
    main()
