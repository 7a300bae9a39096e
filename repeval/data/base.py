"""The in-memory dataset every other stage reads.

A dataset is a pair of splits held whole in memory: examples as ``uint8`` tensors (or
``float32`` already in [-1, 1] for generated data such as ``lines`` and ``shepard``, or
``bool`` one-hot for token sequences) and ``int64`` labels. What an example *is* is declared by
its :class:`Example`: an image ``C×32×32`` (every photo dataset, ``lines``), a 1-D signal
``C×L`` (``shepard``, a user's ``npz:`` signals) or a token sequence of ``L`` positions over a
vocabulary of ``V`` symbols (``clock``, a user's ``npz:`` tokens), held one-hot as ``V×L`` —
the encoder reads the one-hot, the decoder emits ``V`` logits per position. The families build
the matching conv skeleton from that declaration (:mod:`encoders.layers`); probes read latents
and never see the shape. Conversion to float in
[-1, 1] (``x·2/255 − 1``, the paper's scaling, ``docs/protocol.md`` §2.8) happens per batch on
the device, so a GPU holds the uint8 copy only.

A dataset that offers the interpolation benchmark carries a :class:`FactorBank`: its exact
bank of true examples with their circular factor, and the true factor of every test example.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

IMAGE_SIZE = 32
KINDS = ("image", "signal", "tokens")


@dataclass(frozen=True)
class Example:
    """What one example of a dataset is: ``kind`` "image" (``channels×size×size``, size 32),
    "signal" (``channels×size`` samples) or "tokens" (``size`` positions over a vocabulary of
    ``channels`` symbols, held one-hot as ``channels×size``)."""

    kind: str = "image"
    channels: int = 1
    size: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind

    @property
    def dims(self) -> tuple[int, ...]:
        """The shape of one example."""
        return (self.channels,) + (self.size,) * self.spatial

    @property
    def spatial(self) -> int:
        """Spatial axes: 2 for images, 1 for signals and token sequences."""
        return 2 if self.kind == "image" else 1

    @property
    def values(self) -> int:
        return math.prod(self.dims)

    def describe(self) -> str:
        """E.g. "1×32×32 images", "1×1024 signals" or "64 tokens over 22 symbols"."""
        if self.kind == "tokens":
            return f"{self.size} tokens over {self.channels} symbols"
        return "×".join(map(str, self.dims)) + f" {self.kind}s"

    def to_state(self) -> dict[str, Any]:
        """The entries a checkpoint's state records (plain values; ``colors`` for readers from
        before signals), read back by :meth:`from_state`."""
        return {"colors": self.channels, "example": [self.kind, self.channels, self.size]}

    @classmethod
    def from_state(cls, state: dict) -> "Example":
        """The example a checkpoint's state was trained on (images of ``colors`` channels in a
        checkpoint from before signals)."""
        if "example" in state:
            kind, channels, size = state["example"]
            return cls(str(kind), int(channels), int(size))
        return cls("image", int(state["colors"]))

    @classmethod
    def of(cls, x) -> "Example":
        """The example of an array or tensor shaped N×C×S×S (images), N×C×L (signals) or
        ``bool`` N×V×L (one-hot token sequences)."""
        if x.ndim == 3 and str(x.dtype).endswith("bool"):
            return cls("tokens", int(x.shape[1]), int(x.shape[2]))
        if x.ndim == 3:
            return cls("signal", int(x.shape[1]), int(x.shape[2]))
        return cls("image", int(x.shape[1]), int(x.shape[-1]))


@dataclass(frozen=True)
class FactorBank:
    """What the interpolation benchmark measures against (:mod:`repeval.probes.interpolation`).

    ``load()`` returns the bank: true examples flattened to float64 ``(M, D)`` and their
    circular factor ``(M,)`` in radians; ``test_factors`` is the true factor of every test
    example. A bank too large to compare densely (``clock``'s 43,200 strings) supplies its own
    exact ``search(examples)`` → ``(distances, factors, details)``: per decoded example (in the
    example's shape) its distance to the nearest bank example and that example's factor, and
    the bank's extra metrics as means (``load`` then returns the bank in its compact form)."""

    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    test_factors: np.ndarray
    search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, dict[str, float]]] | None = None
    # token sequences: the nearest bank string of each decoded example (M, V, L) as token ids (M, L)
    nearest_tokens: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class Split:
    """One split: examples ``x`` (N×C×32×32 images, N×C×L signals or one-hot N×V×L tokens) and
    labels ``y`` (N,), as torch tensors."""

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
    bank: FactorBank | None = None  # the interpolation benchmark's bank, where the dataset offers one
    symbols: tuple[str, ...] | None = None  # token sequences: the text of each symbol (index = token id)

    @property
    def channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def example(self) -> Example:
        return Example.of(self.train.x)

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
                       self.features, self.bank, self.symbols)


def check_dataset(ds: Dataset, where: str) -> None:
    """What every probe and the trainer rely on, checked once when a dataset is loaded (a
    built-in, a plugin's loader, ``npz:``): images N×C×32×32 with C = 1 or 3, signals N×C×L, or
    token sequences one-hot as ``bool`` N×V×L (exactly one symbol per position, ``V`` symbols
    named by ``Dataset.symbols``), the same example shape in both splits, uint8 or finite
    floats; one integer label per example in 0..num_classes−1; at least two classes in train and
    every test class among them. A :class:`~repeval.errors.UserError` naming the dataset
    (``where``) and what its loader must return otherwise."""
    import torch

    from repeval.errors import UserError

    def fail(problem: str) -> UserError:
        return UserError(f"Dataset {where}: {problem}. Its loader must return uint8 (or finite float) images "
                         "N×C×32×32 with C = 1 or 3, signals N×C×L or one-hot bool tokens N×V×L, and one label in "
                         "0..num_classes-1 per example (repeval.data.base.make_dataset); `repeval datasets` says "
                         "where it came from.")

    if ds.num_classes < 2:
        raise fail(f"num_classes is {ds.num_classes}; the probes need at least two classes")
    for name, split in (("train", ds.train), ("test", ds.test)):
        x, y = split.x, split.y
        image = x.ndim == 4 and tuple(x.shape[2:]) == (IMAGE_SIZE, IMAGE_SIZE) and x.shape[1] in (1, 3)
        signal = x.ndim == 3 and x.shape[1] >= 1 and x.shape[2] >= 2
        if not (image or signal) or not len(x):
            raise fail(f"the {name} examples have shape {tuple(x.shape)}")
        if x.dtype == torch.bool:
            if x.ndim != 3 or not bool((x.sum(dim=1) == 1).all()):
                raise fail(f"the {name} token sequences are not one-hot (exactly one symbol per position)")
            if ds.symbols is None or len(ds.symbols) != x.shape[1]:
                raise fail(f"the {name} token sequences have {x.shape[1]} symbols but the dataset names "
                           f"{'none' if ds.symbols is None else len(ds.symbols)}")
        elif x.dtype != torch.uint8 and not (x.dtype.is_floating_point and bool(torch.isfinite(x).all())):
            raise fail(f"the {name} images are {x.dtype}" + (" with NaN or infinite values"
                                                             if x.dtype.is_floating_point else ""))
        if y.ndim != 1 or len(y) != len(x) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise fail(f"the {name} labels have shape {tuple(y.shape)} and dtype {y.dtype} for {len(x)} images")
        if int(y.min()) < 0 or int(y.max()) >= ds.num_classes:
            raise fail(f"the {name} labels run from {int(y.min())} to {int(y.max())}, outside 0..{ds.num_classes - 1}")
    if ds.train.x.shape[1:] != ds.test.x.shape[1:]:
        raise fail(f"train examples are {Example.of(ds.train.x).describe()}, test examples "
                   f"{Example.of(ds.test.x).describe()}")
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
    """Examples to float32: uint8 images as ``x·2/255 − 1`` (paper; [-1, 1]), one-hot bool
    tokens as 0/1, float unchanged."""
    import torch

    if x.dtype == torch.uint8:
        return x.float().mul_(2.0 / 255.0).sub_(1.0)
    return x.float()


def make_dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, num_classes: int, info: dict[str, Any],
                 features: frozenset[str] = frozenset(), bank: FactorBank | None = None,
                 symbols: tuple[str, ...] | None = None) -> Dataset:
    """Wrap numpy arrays (N×C×32×32 images, N×C×L signals or one-hot bool N×V×L tokens with
    their ``symbols``, and N labels) as a :class:`Dataset` of torch tensors (no copy)."""
    import torch

    for which, x in (("train", x_train), ("test", x_test)):
        assert (x.ndim == 4 and x.shape[2:] == (IMAGE_SIZE, IMAGE_SIZE)) or x.ndim == 3, (name, which, x.shape)
    return Dataset(
        name=name,
        train=Split(torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train.astype(np.int64))),
        test=Split(torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test.astype(np.int64))),
        num_classes=num_classes,
        info=info,
        features=frozenset(features),
        bank=bank,
        symbols=tuple(symbols) if symbols is not None else None,
    )
