"""The encoder contract every family implements.

A family is an :class:`Autoencoder` subclass registered under a short ``name``:

- ``encode(x, latent)`` → ``(B, D)``: the flattened latent the probes read. Which tensor
  *is* the latent is a named choice (``latents``: first = default) recorded with every
  score, e.g. the VAE's ``mean`` or ``sample``.
- ``decode(z, latent)`` → examples in the input's shape and scale: images ``(B, C, 32, 32)``
  in [-1, 1], signals ``(B, C, L)``, or token sequences as probabilities ``(B, V, L)`` (the
  softmax over the ``V`` symbols at each position; the input is their one-hot).
- ``training_step(x)`` → a :class:`Step`: one scalar loss per optimiser group, the detached
  input of the online single-layer classifier, and scalars to log. The trainer owns
  everything else (batches, devices, precision, optimisers, checkpoints): each group's
  loss is differentiated with respect to that group's parameters only, so a critic's loss
  never moves the autoencoder and vice versa, and all groups step simultaneously from one
  forward pass, as in the official code (``docs/protocol.md`` §3.8).
- ``optimizer_groups(lr)`` → ``{group: (parameters, learning rate)}``.
- ``training_pass(x)`` → ``(Step, DecoderInput)`` (optional): the same step plus the
  latent its decoder read, the reconstruction and a differentiable decode of that latent.
  A family that implements it composes with latent regularisers (``FAMILY+REGULARISER``,
  e.g. ``vae+acai``, :mod:`encoders.regularisers`); ``training_step`` then defaults to its
  ``Step``.
- ``parameter_counts()`` → ``{"encoder": n, "decoder": n, ...}`` (critic/discriminator too).

Reference encoders (``learned = False``: raw pixels, PCA) have no training step; the
trainer calls ``fit(x_train)`` once instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

IMAGE_SIZE = 32

# latent size -> (latent_width, latent channels): the paper's configurations (docs/protocol.md §2.1, §3.9)
LATENT_SHAPES: dict[int, tuple[int, int]] = {32: (4, 2), 64: (2, 16), 256: (4, 16), 1024: (4, 64)}
# signals: the latent map has SIGNAL_POSITIONS positions and latent_dim / SIGNAL_POSITIONS channels
# (1,024 samples -> 16 positions after 6 poolings; latent 64 = 4x16, 256 = 16x16)
SIGNAL_POSITIONS = 16


@dataclass(frozen=True)
class Arch:
    """The shape of one paper autoencoder, in the official code's terms (``docs/protocol.md`` §2.1).

    ``colors`` input channels; ``depth`` channels of the first conv; ``latent_width`` spatial
    size of the latent map (its side for images, its positions for signals);
    ``latent_channels`` its channels; ``spatial`` 2 for images (``size×size``), 1 for signals
    (``size`` samples) and token sequences (``tokens``: ``size`` positions over ``colors``
    symbols, read one-hot; the decoder's output are logits, trained by cross-entropy). The
    conv stacks keep the paper's cost per scale: on images the width doubles at every 2×2
    pooling (a quarter of the positions); on 1-D data a pooling halves the positions, so the
    width doubles at every second pooling (:func:`encoders.layers.stack_width`).
    """

    colors: int
    depth: int
    latent_width: int
    latent_channels: int
    spatial: int = 2
    size: int = IMAGE_SIZE
    tokens: bool = False

    @property
    def scales(self) -> int:
        return round(math.log2(self.size / self.latent_width))

    @property
    def latent_dim(self) -> int:
        return self.latent_channels * self.latent_width ** self.spatial

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent_channels,) + (self.latent_width,) * self.spatial

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (self.colors,) + (self.size,) * self.spatial

    @classmethod
    def for_latent_dim(cls, colors: int, depth: int, latent_dim: int, example: Any = None) -> "Arch":
        """The paper's map for ``latent_dim`` on images, or ``SIGNAL_POSITIONS`` positions of
        ``latent_dim / SIGNAL_POSITIONS`` channels on a signal or token-sequence ``example``
        (:class:`repeval.data.base.Example`); a ValueError names a size or length that does not fit."""
        if example is None or example.kind == "image":
            width, channels = LATENT_SHAPES[latent_dim]
            return cls(colors, depth, width, channels)
        length = int(example.size)
        if length < SIGNAL_POSITIONS or length % SIGNAL_POSITIONS or (length // SIGNAL_POSITIONS) & (
                length // SIGNAL_POSITIONS - 1):
            what = (f"token sequences of {length} positions" if example.kind == "tokens"
                    else f"signals of {length} samples")
            raise ValueError(f"{what}: the families pool them to {SIGNAL_POSITIONS} latent "
                             f"positions by halving, so the length must be {SIGNAL_POSITIONS} times a power of two "
                             "(16, 32, 64, ..., 1024, 2048, ...)")
        if latent_dim % SIGNAL_POSITIONS:
            raise ValueError(f"latent size {latent_dim} is not a multiple of the {SIGNAL_POSITIONS} latent positions "
                             "of a signal")
        return cls(colors, depth, SIGNAL_POSITIONS, latent_dim // SIGNAL_POSITIONS, spatial=1, size=length,
                   tokens=example.kind == "tokens")


@dataclass
class Step:
    """What one training step of a family returns to the trainer."""

    losses: dict[str, Tensor]  # optimiser group -> scalar loss minimised by that group
    features: Tensor  # detached input of the online classifier, (B, feature_dim)
    logs: dict[str, Tensor] = field(default_factory=dict)  # scalars to show and keep


@dataclass
class DecoderInput:
    """What a latent regulariser reads from one training step (:meth:`Autoencoder.training_pass`).

    ``z`` is the tensor the family's decoder read in that step (batch first, in the family's
    own shape: the conv map, the VAE's sample, the dropped-out latent, ...), still attached
    to the encoder's graph; ``x_hat`` the family's reconstruction in the pixel scale [-1, 1];
    ``decode`` maps a tensor shaped like ``z`` to pixel-scale images, differentiably, the way
    the decoder does in training.
    """

    z: Tensor
    x_hat: Tensor
    decode: Callable[[Tensor], Tensor]


class Autoencoder(nn.Module):
    """Base class of every encoder family; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    learned: ClassVar[bool] = True
    # hyper-parameter -> paper default; a RunSpec records the resolved values
    hparams: ClassVar[dict[str, Any]] = {}
    # hyper-parameter -> the values it accepts (repeval.ranges.Range), checked once when a run is
    # specified (--hparam); every hyper-parameter declares one (tests/encoders/test_encoder_contract.py)
    hparam_ranges: ClassVar[dict[str, Any]] = {}
    # latent choice -> what it is; the first is the default
    latents: ClassVar[dict[str, str]] = {"map": "the flattened encoder map (clean input)"}
    # dataset name -> default latent size, where the paper's default differs from the dataset's
    default_latent_dims: ClassVar[dict[str, int]] = {}
    # the kinds of example (repeval.data.base.Example.kind) the family builds a model for
    kinds: ClassVar[frozenset[str]] = frozenset({"image"})
    # set on composed families (FAMILY+REGULARISER, encoders.regularisers): the regulariser and the family
    regulariser: ClassVar[Any] = None
    base_family: ClassVar[Any] = None

    @classmethod
    def resolve_latent_dim(cls, dataset, requested: int | None) -> int:
        """The latent size for this family on ``dataset`` (a ``repeval.data.DatasetEntry``).

        Learned families use the paper's legal map sizes; reference encoders override this.
        A signal length its poolings cannot divide is a :class:`~repeval.errors.UserError`
        (the kind of example itself is checked by :func:`encoders.registry.check_kind`).
        """
        from repeval.errors import UserError

        example = getattr(dataset, "example", None)
        dim = requested or cls.default_latent_dims.get(dataset.name, dataset.default_latent_dim)
        if dim not in dataset.latent_dims:
            maps = ("the paper's 4x4xC or 2x2x16 latent maps" if example is None or example.kind == "image"
                    else f"{SIGNAL_POSITIONS} latent positions of C channels")
            raise UserError(f"--latent-dim {dim} is not a legal size for {cls.name!r} on {dataset.name!r}: "
                            f"choose one of {', '.join(map(str, sorted(dataset.latent_dims)))} ({maps}).")
        if example is not None and example.kind != "image" and cls.learned:
            try:
                Arch.for_latent_dim(example.channels, 1, dim, example)
            except ValueError as exc:
                raise UserError(f"{cls.name!r} cannot be built for {dataset.name!r}: {exc}.") from None
        return dim

    def __init__(self, arch: Arch, **hparams: Any):
        super().__init__()
        unknown = set(hparams) - set(self.hparams)
        if unknown:
            raise ValueError(f"{self.name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.hparams)}")
        self.arch = arch
        self.hp: dict[str, Any] = {**self.hparams, **hparams}

    @classmethod
    def build(cls, colors: int, depth: int, latent_dim: int, hparams: dict[str, Any], example: Any = None
              ) -> "Autoencoder":
        """The untrained module for examples of ``colors`` channels: the paper's conv stacks of
        first-layer width ``depth`` around the latent map of ``latent_dim`` values
        (:data:`LATENT_SHAPES`). ``example`` (a :class:`repeval.data.base.Example`; images when
        None) picks the 2-D or 1-D skeleton. Reference encoders override this (any size is theirs)."""
        return cls(Arch.for_latent_dim(colors, depth, latent_dim, example), **hparams)

    @classmethod
    def default_latent(cls) -> str:
        return next(iter(cls.latents))

    def check_latent(self, latent: str | None) -> str:
        latent = latent or self.default_latent()
        if latent not in self.latents:
            raise ValueError(f"{self.name} has no latent {latent!r}; choose one of {list(self.latents)}")
        return latent

    # --- the contract -------------------------------------------------------------
    def encode(self, x: Tensor, latent: str | None = None) -> Tensor:
        raise NotImplementedError

    def decode(self, z: Tensor, latent: str | None = None) -> Tensor:
        raise NotImplementedError

    def training_step(self, x: Tensor) -> Step:
        return self.training_pass(x)[0]

    def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
        """The training step and the latent its decoder read (see :class:`DecoderInput`).

        Families that implement it get ``training_step`` for free and compose with latent
        regularisers; a family that only overrides ``training_step`` does not compose."""
        raise NotImplementedError(f"{self.name}: implement training_step (or training_pass)")

    @classmethod
    def composable(cls) -> bool:
        """Whether a latent regulariser can be added to this family (it is trained and
        implements :meth:`training_pass`)."""
        return cls.learned and cls.training_pass is not Autoencoder.training_pass

    def optimizer_groups(self, lr: float) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"autoencoder": ([p for p in self.parameters()], lr)}

    def features(self, x: Tensor) -> Tensor:
        """The online classifier's input in eval mode (what ``Step.features`` is in training).

        The paper's classifier reads the encoder map for most families (``docs/protocol.md`` §5.1).
        """
        return self.encode(x, self.default_latent())

    @property
    def feature_dim(self) -> int:
        """Size of the online classifier's input (``Step.features``)."""
        return self.arch.latent_dim

    def parameter_counts(self) -> dict[str, int]:
        raise NotImplementedError

    def fit(self, x_train: Tensor) -> None:
        """Closed-form fit of a reference encoder on float train images (``learned=False``)."""
        raise NotImplementedError

    def latent_dim(self, latent: str | None = None) -> int:
        """Size of ``encode(x, latent)`` for one example."""
        with torch.no_grad():
            probe = torch.zeros(1, *self.arch.example_shape, device=self._device())
            was_training = self.training
            self.eval()
            dim = self.encode(probe, latent).shape[1]
            self.train(was_training)
        return int(dim)

    def _device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
