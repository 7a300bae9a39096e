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


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``hashlib`` algorithm name), read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    A failure to write (a read-only or full disk, a missing permission) is a
    :class:`~repeval.errors.UserError` naming the file; the old file, if any, is untouched."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise cannot_write(path, exc) from None
    except BaseException:  # Ctrl-C mid-write: no temporary file left behind
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def cannot_write(path: Path, exc: OSError):
    """The :class:`~repeval.errors.UserError` for a file or folder that cannot be written."""
    from repeval.errors import UserError

    reason = exc.strerror or str(exc)
    return UserError(f"Cannot write {path}: {reason}. Choose a writable location (for the workdir: --workdir DIR or "
                     "REPEVAL_HOME), or fix the permissions or free disk space; nothing was changed there.")


def writable_dir(path: Path, what: str) -> Path:
    """``path`` as a folder this process can write into (created when missing), checked before
    any work; a :class:`~repeval.errors.UserError` naming ``what`` (``--workdir``) otherwise."""
    import tempfile

    from repeval.errors import UserError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder. Give a folder (it is created when missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".repeval-write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({exc.strerror or exc}). Choose a folder you can write to, "
                        "or fix its permissions; nothing was written.") from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
