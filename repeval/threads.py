"""How many CPU threads a command uses when the user does not say.

OpenMP's threads wait for each other at the end of every parallel region, and GNU OpenMP's
waiting threads spin. When another process holds one of the cores, a thread that lost its
core holds up the sibling at every one of the thousands of small ops in a training step:
on two cores, two threads then train many times slower than one (``benchmarks/RESULTS.md``
§3 and §12). So the default is the number of cores *not busy with other processes* when the
command starts: all of them on an idle machine, fewer on a shared one.

The count is decided once per process and kept: CPU kernels reduce in an order that depends
on the thread count, so a run is reproducible bit for bit only at a fixed count (recorded in
its provenance). ``--threads N`` (or ``REPEVAL_THREADS``, or ``OMP_NUM_THREADS``) fixes it
and skips the measurement.

Measured from ``/proc/stat`` (Linux): the CPU time every core of this process's affinity set
spent busy (user, nice, system, interrupts, and time stolen by the hypervisor) over a short
window, minus this process's own. Elsewhere (no ``/proc/stat``) the default is every core.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

WINDOW_S = 0.25  # how long the other processes' use is measured at start
BUSY_SHARE = 0.5  # a core counts as taken when others use at least half of it


def available_cores() -> list[int]:
    """The CPU numbers this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _busy_ticks(cpus: set[int], stat: Path) -> tuple[int, int] | None:
    """(busy, total) clock ticks of ``cpus`` since boot, or ``None`` when unreadable."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    seen = False
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        values += [0] * (8 - len(values))
        busy += values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
        total += sum(values)
        seen = True
    return (busy, total) if seen else None


def others_busy(window_s: float = WINDOW_S, stat: Path = Path("/proc/stat")) -> float | None:
    """Cores' worth of CPU that *other* processes (and the hypervisor) used over ``window_s``
    on this process's cores, or ``None`` where it cannot be read."""
    cpus = set(available_cores())
    first = _busy_ticks(cpus, stat)
    if first is None:
        return None
    own = os.times()
    start = time.monotonic()
    time.sleep(window_s)
    second = _busy_ticks(cpus, stat)
    elapsed = time.monotonic() - start
    after = os.times()
    if second is None or elapsed <= 0:
        return None
    ticks = second[1] - first[1]
    if ticks <= 0:
        return None
    cores_busy = (second[0] - first[0]) / ticks * len(cpus)
    mine = (after.user - own.user + after.system - own.system) / elapsed
    return max(0.0, cores_busy - mine)


def default_threads(busy: float | None = None) -> tuple[int, str]:
    """``(threads, why)``: the cores of this process's affinity set that other processes
    leave free (at least one); ``busy`` (cores' worth used by others) is measured if not given."""
    cores = len(available_cores())
    if busy is None:
        busy = others_busy()
    if busy is None:
        return cores, f"{cores} core(s); their use by other processes could not be read"
    taken = min(cores - 1, int(busy + 1 - BUSY_SHARE))  # half a core or more counts as taken
    threads = max(1, cores - taken)
    if taken:
        return threads, (f"other processes are using {busy:.1f} of this machine's {cores} core(s): {threads} "
                         f"thread(s)")
    return threads, f"{cores} idle core(s): {threads} thread(s)"


def explicit() -> int | None:
    """The thread count the environment fixes (``OMP_NUM_THREADS``), if any."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
