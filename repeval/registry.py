"""Registries: the one place where a name users type is defined.

Encoders (``encoders.registry``), probes (``repeval.probes.registry``) and datasets
(``repeval.data.registry``) each keep one :class:`Registry`. The command line, the check,
the report and the tests read them; nothing else lists names.

An entry is registered by the module that defines it (the built-ins when their package is
imported) or by a plugin (:mod:`repeval.plugins`): an installed distribution with an
entry point in the registry's group (``repeval.encoders``, ``repeval.probes``,
``repeval.datasets``), or a plain module named in ``REPEVAL_PLUGINS``. Plugins load on the
first lookup, so importing repeval stays cheap and a broken plugin never stops the
built-ins. A registry may also resolve *prefixed* names that no one registers ahead of
time, such as ``npz:PATH`` for a dataset in a user's file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from repeval import plugins
from repeval.errors import UserError

T = TypeVar("T")

BUILT_IN = "built-in"
_PROJECT_PACKAGES = ("repeval.", "encoders.")


def _origin(entry: Any) -> str:
    if plugins.current_source() is not None:
        return plugins.current_source()
    module = getattr(entry, "__module__", None)
    for attribute in ("run", "loader"):  # a Task or a DatasetEntry: where its function lives
        if module in (None, __name__, "repeval.probes.base", "repeval.data.registry"):
            module = getattr(getattr(entry, attribute, None), "__module__", module)
    if module and module.startswith(_PROJECT_PACKAGES):
        return BUILT_IN
    return f"module {module}" if module else "unknown"


class Registry(Generic[T]):
    """Names → entries of one kind, in registration order, with where each came from.

    ``kind`` is the singular noun users read in errors (``"encoder"``); ``group`` the
    entry-point group of its plugins; ``hint`` one sentence on how to list the entries.
    Mapping-style access (``in``, iteration, ``[name]``, ``items()``) loads plugins first,
    like :meth:`get`.
    """

    def __init__(self, kind: str, group: str, hint: str = ""):
        self.kind, self.group, self.hint = kind, group, hint
        self._entries: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._prefixes: dict[str, tuple[Callable[[str], T], str]] = {}
        self._plugins_loaded = False

    # ----------------------------------------------------------------- registration
    def register(self, entry: T, name: str | None = None) -> T:
        """Add ``entry`` under ``name`` (default: its ``name`` attribute); returns it, so it
        also serves as a class decorator. A name may be registered once; registering the
        same object again is a no-op."""
        name = name or getattr(entry, "name", None)
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty string `name`, got {name!r} for {entry!r}")
        if ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must not contain ':' (it separates a prefix)")
        if name in self._entries:
            if self._entries[name] is entry:
                return entry
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._sources[name]})")
        self._entries[name] = entry
        self._sources[name] = _origin(entry)
        return entry

    def add_prefix(self, prefix: str, resolve: Callable[[str], T], usage: str) -> None:
        """Names ``prefix:REST`` resolve to ``resolve(REST)``; ``usage`` shows the form in
        errors, e.g. ``"npz:PATH for your own arrays"``."""
        self._prefixes[prefix] = (resolve, usage)

    # ----------------------------------------------------------------- lookup
    def get(self, name: str) -> T:
        """The entry called ``name`` (or resolved from its prefix); a :class:`UserError`
        listing the known names otherwise."""
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._prefixes:
            return self._prefixes[prefix][0](rest)
        self._load_plugins()
        if name not in self._entries:
            raise UserError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        forms = "".join(f", or {usage}" for _, usage in self._prefixes.values())
        broken = plugins.failures(self.group)
        note = (f" Plugin(s) that failed to load: {'; '.join(broken)}." if broken else "")
        hint = f" {self.hint}" if self.hint else ""
        return (f"Unknown {self.kind} {name!r}. Known {self.kind}s: {', '.join(self.names()) or 'none'}"
                f"{forms}.{hint}{note}")

    def prefix_usages(self) -> list[str]:
        """How each prefixed form reads (the ``usage`` given to :meth:`add_prefix`), in order."""
        return [usage for _, usage in self._prefixes.values()]

    def source(self, name: str) -> str:
        """Where ``name`` came from: ``built-in``, ``plugin DIST (entry point ...)``,
        ``module M`` (registered by an imported module) or, for a prefixed name, the prefix."""
        prefix, sep, _ = name.partition(":")
        if sep and prefix in self._prefixes:
            return f"{prefix}: prefix"
        self._load_plugins()
        return self._sources[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load_plugins()
        return list(self._entries.items())

    def values(self) -> list[T]:
        return [entry for _, entry in self.items()]

    def index(self, name: str) -> int:
        """Registration order of ``name`` (built-ins first, in their documented order);
        names not registered sort after all of them."""
        names = self.names()
        return names.index(name) if name in names else len(names)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    # ----------------------------------------------------------------- plugins
    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # first: a plugin that looks names up while loading must not recurse
        plugins.load(self)
