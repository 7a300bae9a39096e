"""Training precision: what ``--precision auto|fp32|bf16`` means on each device.

A leaf module (no torch at import): the CLI, the API, the sweep planner and the trainer ask
here. The resolved precision (``fp32`` or ``bf16``) is part of a run's :class:`RunSpec`, so
a bf16 run and an fp32 run of the same family, data and seed are two runs, each
reproducible within its precision.

``auto`` means bf16 where the hardware computes it natively and fp32 elsewhere:

- on CUDA: bf16 when ``torch.cuda.is_bf16_supported()`` (Ampere and later), else fp32;
- on a CPU: bf16 when the processor has AMX-BF16 or AVX512-BF16 (Intel Sapphire Rapids
  and later, AMD Zen 4 and later; Arm's BF16 extension), read from the kernel's CPU flags
  (``/proc/cpuinfo``) or, where there is none, from torch's own CPU probe; else fp32.

Without native bf16 a CPU computes bf16 convolutions by conversion, several times slower
than float32 (``benchmarks/RESULTS.md`` §12), so ``--precision bf16`` there runs after one
line saying so. A user overrides the detection by naming the precision (``--precision
fp32`` or ``bf16``, or ``REPEVAL_PRECISION``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from repeval.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16")
CPU_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16", "bf16": "Arm BF16"}


def check(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; else a one-paragraph error."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}. auto (the default) "
                        "trains in bf16 where the device computes it natively (a GPU from Ampere on; a CPU with "
                        "AMX-BF16 or AVX512-BF16) and in fp32 elsewhere; fp32 and bf16 force one.")
    return precision


@functools.cache
def cpu_bf16() -> str | None:
    """The CPU's native bf16 instructions, by name (``AMX-BF16``, ``AVX512-BF16``, ``Arm
    BF16``), or ``None`` when it has none (:func:`detect_cpu_bf16`, once per process)."""
    return detect_cpu_bf16()


def detect_cpu_bf16() -> str | None:
    """Read from ``/proc/cpuinfo``'s flags; on a system without it, from torch's CPU probe
    (x86 only)."""
    flags = _cpuinfo_flags()
    if flags is not None:
        found = [name for flag, name in CPU_BF16_FLAGS.items() if flag in flags]
        return ", ".join(found) or None
    try:
        import torch

        if torch.cpu._is_amx_tile_supported():  # AMX tiles come with AMX-BF16 on every processor that has them
            return "AMX-BF16"
        if torch.cpu._is_avx512_bf16_supported():
            return "AVX512-BF16"
    except AttributeError:  # a torch without the private probes
        pass
    return None


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            return set(value.split())
    return None


def native(device: str) -> bool:
    """Whether ``device`` (``cpu``, ``cuda``, ``cuda:N``) computes bf16 natively."""
    if str(device).startswith("cuda"):
        import torch

        return bool(torch.cuda.is_bf16_supported())
    return cpu_bf16() is not None


def resolve(precision: str, device: str) -> str:
    """``fp32`` or ``bf16`` for the resolved ``device``: ``auto`` by :func:`native`."""
    check(precision)
    if precision == "auto":
        return "bf16" if native(device) else "fp32"
    return precision


def describe(precision: str, device: str) -> str:
    """For provenance: the precision and the kernels behind it on this device."""
    if precision != "bf16":
        return "fp32"
    if str(device).startswith("cuda"):
        return "bf16 autocast"
    found = cpu_bf16()
    return f"bf16 autocast (CPU with native {found})" if found else "bf16 autocast (CPU without native bf16: emulated)"


def warning(precision: str, device: str) -> str | None:
    """The one line said before a bf16 run on a device without native bf16, else ``None``."""
    if precision != "bf16" or native(device):
        return None
    if str(device).startswith("cuda"):
        return ("--precision bf16: this GPU has no native bf16 (it needs Ampere or later); training emulates it, "
                "slowly. --precision auto picks fp32 here.")
    return ("--precision bf16: this CPU has no native bf16 (no AMX-BF16 or AVX512-BF16 in its flags), so its bf16 "
            "convolutions are emulated, several times slower than fp32. --precision auto picks fp32 here.")
