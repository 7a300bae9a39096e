"""Where repeval keeps things: the workdir (runs, store) and the shared cache (datasets)."""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path


def cache_dir() -> Path:
    """Shared cache for downloaded datasets and their compact arrays.

    ``$REPEVAL_CACHE``, else ``$XDG_CACHE_HOME/repeval``, else ``~/.cache/repeval``.
    """
    if os.environ.get("REPEVAL_CACHE"):
        return Path(os.environ["REPEVAL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "repeval"


def host_name() -> str:
    """This machine's short host name, safe in a file name (claims and temporary files use it)."""
    name = socket.gethostname().split(".")[0] or "host"
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40]


def temp_name(path: Path) -> Path:
    """A temporary name beside ``path`` that no other writer can pick: the host, the pid and a
    random token. The pid alone is not enough on a filesystem that several hosts share (two
    machines can run processes with the same pid), nor for two threads of one process."""
    return path.with_name(f".{path.name}.{host_name()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
