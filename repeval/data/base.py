"""The in-memory dataset every other stage reads.

A dataset is a pair of splits held whole in memory: images as ``uint8`` tensors
``N×C×32×32`` (or ``float32`` already in [-1, 1] for generated data such as ``lines``) and
``int64`` labels. Conversion to float in [-1, 1] (``x·2/255 − 1``, the paper's scaling,
``docs/protocol.md`` §2.8) happens per batch on the device, so a GPU holds the uint8 copy only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IMAGE_SIZE = 32


@dataclass(frozen=True)
class Split:
    """One split: images ``x`` (N×C×32×32) and labels ``y`` (N,), as torch tensors."""

    x: Any
    y: Any

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    """A named dataset: train and test splits plus what is known about their origin.

    ``info`` is recorded as provenance with every run: where the data came from, whether
    it was verified against official checksums, and the rule that brought it to 32×32.
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)
    features: frozenset[str] = frozenset()  # set from its registry entry when loaded

    @property
    def channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of both splits' images and labels."""
        if "fingerprint" not in self.info:
            self.info["fingerprint"] = fingerprint_arrays(
                [s.cpu().numpy() for s in (self.train.x, self.train.y, self.test.x, self.test.y)]
            )
        return self.info["fingerprint"]

    def to(self, device) -> "Dataset":
        return Dataset(self.name, self.train.to(device), self.test.to(device), self.num_classes, self.info,
                       self.features)


def check_dataset(ds: Dataset, where: str) -> None:
    """What every probe and the trainer rely on, checked once when a dataset is loaded (a
    built-in, a plugin's loader, ``npz:``): images N×C×32×32 with C = 1 or 3 in both splits,
    uint8 or finite floats; one integer label per image in 0..num_classes−1; at least two
    classes in train and every test class among them. A :class:`~repeval.errors.UserError`
    naming the dataset (``where``) and what its loader must return otherwise."""
    import torch

    from repeval.errors import UserError

    def fail(problem: str) -> UserError:
        return UserError(f"Dataset {where}: {problem}. Its loader must return uint8 (or finite float) images "
                         "N×C×32×32 with C = 1 or 3 and one label in 0..num_classes-1 per image "
                         "(repeval.data.base.make_dataset); `repeval datasets` says where it came from.")

    if ds.num_classes < 2:
        raise fail(f"num_classes is {ds.num_classes}; the probes need at least two classes")
    for name, split in (("train", ds.train), ("test", ds.test)):
        x, y = split.x, split.y
        if x.ndim != 4 or tuple(x.shape[2:]) != (IMAGE_SIZE, IMAGE_SIZE) or x.shape[1] not in (1, 3) or not len(x):
            raise fail(f"the {name} images have shape {tuple(x.shape)}")
        if x.dtype != torch.uint8 and not (x.dtype.is_floating_point and bool(torch.isfinite(x).all())):
            raise fail(f"the {name} images are {x.dtype}" + (" with NaN or infinite values"
                                                             if x.dtype.is_floating_point else ""))
        if y.ndim != 1 or len(y) != len(x) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise fail(f"the {name} labels have shape {tuple(y.shape)} and dtype {y.dtype} for {len(x)} images")
        if int(y.min()) < 0 or int(y.max()) >= ds.num_classes:
            raise fail(f"the {name} labels run from {int(y.min())} to {int(y.max())}, outside 0..{ds.num_classes - 1}")
    if ds.train.x.shape[1] != ds.test.x.shape[1]:
        raise fail(f"train images have {ds.train.x.shape[1]} channels, test images {ds.test.x.shape[1]}")
    present = torch.unique(ds.train.y)
    if len(present) < 2:
        raise fail(f"every train label is {int(present[0])}; the probes need at least two classes")
    unseen = sorted(set(torch.unique(ds.test.y).tolist()) - set(present.tolist()))
    if unseen:
        raise fail(f"the test labels hold class(es) {', '.join(map(str, unseen[:8]))} that no train image has")


def fingerprint_arrays(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()[:16]


def to_float(x):
    """Images to float32 in [-1, 1]: uint8 as ``x·2/255 − 1`` (paper), float unchanged."""
    import torch

    if x.dtype == torch.uint8:
        return x.float().mul_(2.0 / 255.0).sub_(1.0)
    return x.float()


def make_dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, num_classes: int, info: dict[str, Any],
                 features: frozenset[str] = frozenset()) -> Dataset:
    """Wrap numpy arrays (N×C×32×32, N) as a :class:`Dataset` of torch tensors (no copy)."""
    import torch

    for which, x in (("train", x_train), ("test", x_test)):
        assert x.ndim == 4 and x.shape[2:] == (IMAGE_SIZE, IMAGE_SIZE), (name, which, x.shape)
    return Dataset(
        name=name,
        train=Split(torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train.astype(np.int64))),
        test=Split(torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test.astype(np.int64))),
        num_classes=num_classes,
        info=info,
        features=frozenset(features),
    )
