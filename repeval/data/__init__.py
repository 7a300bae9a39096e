"""Named datasets: ``mnist``, ``svhn``, ``svhn-extra``, ``cifar10``, ``lines``, ``shepard``
(1-D signals), ``clock`` (text, token sequences), ``digits``, and ``npz:PATH`` for a user's own
arrays (images, signals or token sequences).

The registry and its entry type live in :mod:`repeval.data.registry`; importing this
package registers the built-ins (in this order, which listings and reports follow).
Adding a dataset = :func:`register` of a :class:`DatasetEntry`, from your own module or
a plugin (entry-point group ``repeval.datasets``).
"""

from __future__ import annotations

from repeval.data import clock, digits, lines, npz, shepard, torchvision_sets
from repeval.data.base import Dataset, Example, FactorBank, Split, to_float  # noqa: F401  (public API)
from repeval.data.registry import DATASETS, DataOptions, DatasetEntry, get, load, register  # noqa: F401

for _entry in (*torchvision_sets.ENTRIES, lines.ENTRY, shepard.ENTRY, clock.ENTRY, digits.ENTRY):
    register(_entry)
DATASETS.add_prefix("npz", npz.npz_entry,
                    "npz:PATH for your own arrays (x_train, y_train, x_test, y_test)")
