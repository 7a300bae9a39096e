"""How a number was made: library versions, code revision, device, data origin."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import repeval

LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "faiss-cpu", "faiss-gpu",
             "pandas", "pillow", "safetensors")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "repeval": repeval.__version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_revision() -> str:
    """The repeval source revision (``<sha>`` or ``<sha>+dirty``), or ``unknown`` outside git."""
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def collect(device: str, dataset=None) -> dict[str, Any]:
    """Provenance of a run on ``device`` with ``dataset`` (a ``repeval.data.Dataset``)."""
    record: dict[str, Any] = {
        "versions": library_versions(),
        "git": git_revision(),
        "device": device_description(device),
        "host": platform.node(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if dataset is not None:
        record["data"] = {"name": dataset.name, "fingerprint": dataset.fingerprint,
                          **{k: v for k, v in dataset.info.items() if k != "fingerprint"}}
    return record
