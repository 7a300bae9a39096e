"""Where repeval keeps things: the workdir (runs, store) and the shared cache (datasets)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Shared cache for downloaded datasets and their compact arrays.

    ``$REPEVAL_CACHE``, else ``$XDG_CACHE_HOME/repeval``, else ``~/.cache/repeval``.
    """
    if os.environ.get("REPEVAL_CACHE"):
        return Path(os.environ["REPEVAL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "repeval"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
