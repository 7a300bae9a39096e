"""The dataset registry: :class:`DatasetEntry` per name, :class:`DataOptions` for finding files.

Each entry knows its paper configuration (first-layer width, legal latent sizes), the
features probes may need (``features``, e.g. the lines' ground-truth angles) and how to
load itself as a :class:`~repeval.data.base.Dataset`. Built-ins register when
:mod:`repeval.data` is imported; ``npz:PATH`` resolves to an entry for a user's file;
plugins use the entry-point group ``repeval.datasets`` (:mod:`repeval.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from repeval.data.base import Dataset, Example
from repeval.registry import Registry


@dataclass(frozen=True)
class DataOptions:
    """How to find data: ``data_dir`` (torchvision layout, read-only) or download into the
    cache when ``None``; ``allow_unverified`` accepts a local copy whose checksums differ
    from the official ones (recorded in provenance)."""

    data_dir: Path | None = None
    allow_unverified: bool = False


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset and its paper configuration (``docs/protocol.md`` §3.9, §6).

    ``features`` names what the data offers beyond examples and class labels, for probes
    that need it (a probe's ``Task.requires``): ``"factor_bank"`` for a dataset that offers the
    interpolation benchmark (its loader sets :attr:`~repeval.data.base.Dataset.bank`).
    ``kind`` and ``size`` declare what one example is (:class:`~repeval.data.base.Example`):
    images ``channels×32×32``, signals ``channels×size`` or tokens (``size`` positions over
    ``channels`` symbols).
    """

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
    features: frozenset[str] = frozenset()
    kind: str = "image"
    size: int = 32

    @property
    def example(self) -> Example:
        return Example(self.kind, self.channels, self.size)

    @property
    def default_latent_dim(self) -> int:
        return self.latent_dims[0]

    def load(self, options: DataOptions) -> Dataset:
        """The loaded dataset, checked (:func:`repeval.data.base.check_dataset`)."""
        from repeval.data.base import check_dataset

        dataset = self.loader(options)
        check_dataset(dataset, repr(self.name))
        dataset.features = self.features
        return dataset


DATASETS: Registry[DatasetEntry] = Registry("dataset", "repeval.datasets", "`repeval datasets` lists them.")


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset to the registry (its name must be new)."""
    return DATASETS.register(entry)


def get(name: str) -> DatasetEntry:
    """The entry for ``name`` (``npz:PATH`` builds one for a user's arrays)."""
    return DATASETS.get(name)


def load(name: str, options: DataOptions | None = None) -> Dataset:
    """Load dataset ``name`` (see :func:`get`) with ``options``."""
    return get(name).load(options or DataOptions())
