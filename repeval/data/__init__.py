"""Named datasets: ``mnist``, ``svhn``, ``svhn-extra``, ``cifar10``, ``lines``, ``digits``,
``npz:PATH``.

Each entry knows its paper configuration (first-layer width, legal latent sizes) and how
to load itself as a :class:`~repeval.data.base.Dataset`. Adding a dataset = adding an
entry to :data:`DATASETS` (or calling :func:`register`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from repeval.data.base import Dataset, Split, to_float  # noqa: F401  (public API)
from repeval.errors import UserError


@dataclass(frozen=True)
class DataOptions:
    """How to find data: ``data_dir`` (torchvision layout, read-only) or download into the
    cache when ``None``; ``allow_unverified`` accepts a local copy whose checksums differ
    from the official ones (recorded in provenance)."""

    data_dir: Path | None = None
    allow_unverified: bool = False


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset and its paper configuration (``acai.md`` §3.9, §6)."""

    name: str
    summary: str
    channels: int
    num_classes: int
    train_size: int
    test_size: int
    depth: int  # first-layer width of the paper's conv stacks for this dataset
    latent_dims: tuple[int, ...]  # legal latent sizes; the first is the default
    loader: Callable[[DataOptions], Dataset]
    locate: Callable[[DataOptions], str | None]  # where it is found locally, or None
    generated: bool = False  # needs no files at all

    @property
    def default_latent_dim(self) -> int:
        return self.latent_dims[0]

    def load(self, options: DataOptions) -> Dataset:
        return self.loader(options)


DATASETS: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset to the registry (its name must be new)."""
    if entry.name in DATASETS:
        raise ValueError(f"dataset {entry.name!r} is already registered")
    DATASETS[entry.name] = entry
    return entry


def get(name: str) -> DatasetEntry:
    """The entry for ``name``; ``npz:PATH`` builds one for a user's arrays."""
    if name.startswith("npz:"):
        from repeval.data.npz import npz_entry

        return npz_entry(name[len("npz:"):])
    if name not in DATASETS:
        raise UserError(
            f"Unknown dataset {name!r}. Known datasets: {', '.join(DATASETS)}, or npz:PATH for "
            "your own arrays (x_train, y_train, x_test, y_test). `repeval datasets` lists them."
        )
    return DATASETS[name]


def load(name: str, options: DataOptions | None = None) -> Dataset:
    """Load dataset ``name`` (see :func:`get`) with ``options``."""
    return get(name).load(options or DataOptions())


def _register_builtins() -> None:
    from repeval.data import digits, lines, torchvision_sets

    for entry in (*torchvision_sets.ENTRIES, lines.ENTRY, digits.ENTRY):
        register(entry)


_register_builtins()
