"""Plugins: encoders, probes and datasets from outside repeval, with no edit to repeval.

Two ways in, both loaded on the first lookup of a registry (:mod:`repeval.registry`):

- **Entry points** of an installed distribution, in the group of the registry they extend::

      # the plugin's pyproject.toml
      [project.entry-points."repeval.encoders"]
      myae = "mypkg.models:MyAE"       # an Autoencoder subclass
      [project.entry-points."repeval.probes"]
      mytask = "mypkg.probes:TASK"     # a repeval.probes.Task
      [project.entry-points."repeval.datasets"]
      mydata = "mypkg.data:ENTRY"      # a repeval.data.DatasetEntry

  The object is loaded and registered under its own ``name``; an entry point may also
  name a module, whose import registers what it defines (``@encoders.register`` ...).
- **``REPEVAL_PLUGINS=mod1,mod2``**: plain importable modules (on ``sys.path``, e.g. through
  ``PYTHONPATH``), imported once before the first lookup of any registry; they register
  their entries themselves.

A plugin that fails to import or to register is skipped: one paragraph on stderr names it
and its exception, the built-ins keep working, and an unknown-name error mentions it.
Nothing here imports a registry (registries call :func:`load`), so there is no cycle.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

ENV = "REPEVAL_PLUGINS"

_current: list[str] = []  # sources of the plugins being loaded, innermost last
_failures: dict[str, list[str]] = {}  # entry-point group (or ENV) -> one line per failed plugin
_env_loaded: set[str] = set()


@contextmanager
def _loading(source: str) -> Iterator[None]:
    _current.append(source)
    try:
        yield
    finally:
        _current.pop()


def current_source() -> str | None:
    """The plugin being loaded right now (entries registered now come from it), or None."""
    return _current[-1] if _current else None


def failures(group: str) -> list[str]:
    """One line per plugin of ``group`` (or of ``REPEVAL_PLUGINS``) that failed to load."""
    return [*_failures.get(group, []), *_failures.get(ENV, [])]


def _fail(group: str, source: str, fix: str, exc: BaseException) -> None:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    _failures.setdefault(group, []).append(f"{source} ({what})")
    print(f"repeval: {source} failed to load and is skipped ({what}). The built-in entries work without it; "
          f"{fix}", file=sys.stderr, flush=True)


def env_modules() -> list[str]:
    """The module names in ``REPEVAL_PLUGINS`` (comma-separated, blanks ignored)."""
    return [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]


def _load_env_modules() -> None:
    for module in env_modules():
        if module in _env_loaded:
            continue
        _env_loaded.add(module)
        source = f"plugin module {module} ({ENV})"
        try:
            with _loading(source):
                importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure of foreign code is reported, not raised
            _fail(ENV, source, f"fix the module, or remove it from {ENV} (it holds {os.environ.get(ENV)!r}).", exc)


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    out = []
    for ep in metadata.entry_points(group=group):  # a path listed twice shows a distribution twice
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            out.append(ep)
    return out


def load(registry: Any) -> None:
    """Import the ``REPEVAL_PLUGINS`` modules (once per process) and register the entry
    points of ``registry.group`` into ``registry``."""
    _load_env_modules()
    for ep in _entry_points(registry.group):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        source = f"plugin {dist} (entry point {ep.name} = {ep.value})"
        try:
            with _loading(source):
                obj = ep.load()
                if not isinstance(obj, types.ModuleType):
                    registry.register(obj)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the built-ins
            _fail(registry.group, source, f"fix the plugin, or uninstall it (pip uninstall {dist}).", exc)
