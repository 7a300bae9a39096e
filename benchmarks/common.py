"""Shared helpers of the benchmarks: machine facts, interleaved timing, data, result files.

Timing protocol (every benchmark): the contenders run *interleaved in one process*
(A B A B …, the order alternating per repetition), each repetition timed with
``time.perf_counter``; a contender's figure is the median over repetitions and a
comparison is the ratio of medians, stated as "repeval / peer". The 1-minute load
average is read before and after every measurement and stored with it, since the
development machine is shared.

Process set-up: the training benchmarks run under the allocator setting the CLI gives its own
process (:func:`as_the_cli`, glibc's mmap and trim thresholds), so they measure what ``repeval
train`` and ``repeval run`` do; ``REPEVAL_MALLOC_TUNING=0`` measures glibc's defaults instead
(what the library gets inside someone else's process). :func:`machine` records which.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` from a checkout
    sys.path.insert(0, str(ROOT))


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def cpu_model() -> str:
    """``Model name`` from ``lscpu`` (falls back to ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    """Versions of the libraries the figures depend on (absent ones are skipped)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "scikit-learn", "faiss-cpu", "faiss-gpu", "scipy", "pythae", "repeval"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "repeval" not in out:  # running from a checkout that is not installed
        import repeval

        out["repeval"] = repeval.__version__
    return out


def as_the_cli() -> bool:
    """This process's allocator as the CLI sets its own (``repeval/cli.py::_tune_allocator``:
    glibc keeps freed activation buffers for reuse instead of mapping, faulting and unmapping
    them every step). Returns whether it was applied (not with ``REPEVAL_MALLOC_TUNING=0``, the
    user's own ``MALLOC_*_THRESHOLD_`` variables, or another allocator)."""
    from repeval.cli import _tune_allocator

    global _ALLOCATOR
    applied = _tune_allocator()
    _ALLOCATOR = "the CLI's glibc thresholds" if applied else "left alone (glibc's own MALLOC_* variables: env)"
    return applied


_ALLOCATOR = "left alone (glibc's own MALLOC_* variables: env)"


def machine() -> dict[str, Any]:
    """Where and when the figures were taken: CPU, cores, load, threads, GPU, versions."""
    import torch

    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_1min": load_average(),
        "torch_threads": torch.get_num_threads(),
        "allocator": _ALLOCATOR,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "MKL_", "MALLOC_"))},
        "versions": versions(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@dataclass
class Timing:
    """Per-contender wall times of an interleaved measurement."""

    times: dict[str, list[float]] = field(default_factory=dict)
    load_before: float = 0.0
    load_after: float = 0.0

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, a: str, b: str) -> float:
        """median(a) / median(b): above 1 means ``a`` takes longer."""
        return self.median(a) / self.median(b)

    def summary(self) -> dict[str, Any]:
        return {"median_s": {k: round(self.median(k), 5) for k in self.times},
                "all_s": {k: [round(t, 5) for t in v] for k, v in self.times.items()},
                "load_before": self.load_before, "load_after": self.load_after}


def interleaved(contenders: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> Timing:
    """Run every contender ``warmup`` untimed times, then ``reps`` timed rounds, interleaved
    (the order is reversed on every other round so neither side always runs first)."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    timing = Timing({name: [] for name in names}, load_before=load_average())
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            contenders[name]()
            timing.times[name].append(time.perf_counter() - start)
    timing.load_after = load_average()
    return timing


def set_threads(n: int):
    """The same thread count for torch, faiss (OpenMP) and the BLAS pools; returns the limiter."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    return threadpool_limits(limits=n)


def data_options(data_dir: str | None):
    """``DataOptions`` for ``data_dir`` (default: ``$REPEVAL_DATA``, then ``/work/dataroot``)."""
    from repeval.data import DataOptions

    path = data_dir or os.environ.get("REPEVAL_DATA") or "/work/dataroot"
    return DataOptions(Path(path), allow_unverified=True)


def load_dataset(name: str, data_dir: str | None):
    """A repeval dataset by name (``mnist``, ``digits`` …) from ``data_dir``."""
    from repeval.data import load

    return load(name, data_options(data_dir))


def write_results(name: str, payload: dict[str, Any], out_dir: str | None) -> Path | None:
    """Write ``payload`` as ``<out_dir>/<name>.json`` (``out_dir`` default ``$OUT``); print its path."""
    out_dir = out_dir or os.environ.get("OUT")
    if not out_dir:
        return None
    path = Path(out_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    print(f"wrote {path}")
    return path
