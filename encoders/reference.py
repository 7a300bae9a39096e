"""Reference (non-learned) encoders: raw pixels and PCA, the floor every table compares with.

Neither is trained: the trainer calls ``fit(x_train)`` once on float train examples.
Their latent size is not one of the paper's conv-map sizes, so both override
:meth:`~encoders.base.Autoencoder.resolve_latent_dim`; the model is built from an
:class:`~encoders.base.Arch` whose ``colors``, ``spatial`` and ``size`` give the example's
shape (pixels ignores the rest; PCA keeps ``arch.latent_dim`` components, e.g.
``Arch(colors, depth, 1, k)`` for a size that is not a paper map). Both keep their names on
every kind of data: on signals ``pixels`` is the raw samples (its interpolation is the
sample-space cross-fade) and ``pca`` their principal components; on token sequences
``pixels`` is the one-hot example (its interpolation the one-hot cross-fade) and ``pca`` the
one-hot's principal components.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from encoders.base import Arch, Autoencoder
from encoders.layers import full_precision

FIT_CHUNK = 4096  # train examples per float64 covariance update


def pixel_count(arch: Arch) -> int:
    """Values of one example (pixels of an image, samples of a signal)."""
    return math.prod(arch.example_shape)


class Reference(Autoencoder):
    """What the reference encoders share: fitted, not trained, and sized by their latent alone."""

    learned = False
    kinds = frozenset({"image", "signal", "tokens"})

    @classmethod
    def build(cls, colors: int, depth: int, latent_dim: int, hparams: dict, example=None) -> "Reference":
        """A reference encoder needs no conv map: ``Arch(colors, depth, 1, latent_dim, ...)`` carries
        the example's shape and the latent size (any size, not only the paper's maps)."""
        shape = {} if example is None else {"spatial": example.spatial, "size": example.size,
                                            "tokens": example.kind == "tokens"}
        return cls(Arch(colors, depth, 1, latent_dim, **shape), **hparams)


class Pixels(Reference):
    """The example itself: encode = flatten (C·32·32 pixels, or C·L samples), decode = reshape.

    Interpolating two latents is a pixel-space cross-fade. ``fit`` does nothing.
    """

    name = "pixels"
    summary = "raw pixels, flattened (no training)"
    hparams = {}
    latents = {"pixels": "the flattened example: C*32*32 pixels in [-1, 1], or C*L samples"}

    @classmethod
    def resolve_latent_dim(cls, dataset, requested: int | None) -> int:
        from repeval.errors import UserError

        dim = dataset.example.values
        if requested not in (None, dim):
            raise UserError(f"--latent-dim {requested} does not apply to 'pixels' on {dataset.name!r}: its latent "
                            f"is the example itself ({dim} values). Leave --latent-dim out.")
        return dim

    def encode(self, x: Tensor, latent: str | None = None) -> Tensor:
        self.check_latent(latent)
        return x.flatten(1).float()

    def decode(self, z: Tensor, latent: str | None = None) -> Tensor:
        self.check_latent(latent)
        return z.reshape(z.shape[0], *self.arch.example_shape).float()

    def fit(self, x_train: Tensor) -> None:
        """Nothing to fit: the latent is the image."""

    @property
    def feature_dim(self) -> int:
        return pixel_count(self.arch)

    def parameter_counts(self) -> dict[str, int]:
        return {"encoder": 0, "decoder": 0}


class PCA(Reference):
    """Principal components of the centred, flattened train images.

    ``fit`` computes the train mean μ and the covariance Σ (x − μ)(x − μ)ᵀ in float64,
    then its top k = ``arch.latent_dim`` eigenvectors (``torch.linalg.eigh``: the right
    singular vectors of the centred data, which an SVD would give, without holding it in
    float64), ordered by decreasing variance, each signed so its largest-magnitude entry
    is positive (deterministic). encode(x) = (x − μ)·Wᵀ, decode(z) = z·W + μ. μ and W are
    buffers, so ``state_dict`` round-trips them; ``parameter_counts`` reports the stored
    values (k·P components + P mean) as ``encoder``, the decoder reuses them.
    """

    name = "pca"
    summary = "top principal components of the train images (no training)"
    hparams = {}
    latents = {"components": "projections on the top-k principal components of the train images"}

    def __init__(self, arch: Arch, **hparams):
        super().__init__(arch, **hparams)
        pixels = pixel_count(arch)
        if arch.latent_dim > pixels:
            raise ValueError(f"pca: {arch.latent_dim} components requested but the images have only {pixels} "
                             f"pixel values; choose at most {pixels}.")
        self.register_buffer("mean", torch.zeros(pixels))
        self.register_buffer("components", torch.zeros(arch.latent_dim, pixels))
        self.register_buffer("fitted", torch.tensor(False))

    @classmethod
    def resolve_latent_dim(cls, dataset, requested: int | None) -> int:
        from repeval.errors import UserError

        pixels = dataset.example.values
        dim = requested or min(dataset.default_latent_dim, pixels)
        if not 1 <= dim <= pixels:
            raise UserError(f"--latent-dim {dim} is not a legal number of principal components on "
                            f"{dataset.name!r}: choose between 1 and {pixels} (the values of one example).")
        return dim

    def fit(self, x_train: Tensor) -> None:
        pixels = self.mean.numel()
        k = self.arch.latent_dim
        if not x_train.is_floating_point():
            raise ValueError(f"pca: fit expects float images in [-1, 1], got {x_train.dtype} "
                             "(convert with repeval.data.to_float).")
        if x_train[0].numel() != pixels:
            raise ValueError(f"pca: train examples have {x_train[0].numel()} values, the model expects {pixels} "
                             f"({'×'.join(map(str, self.arch.example_shape))}).")
        flat = x_train.reshape(x_train.shape[0], pixels)
        with torch.no_grad(), full_precision(flat.device):
            mean = flat.double().mean(0)
            cov = torch.zeros(pixels, pixels, dtype=torch.float64, device=flat.device)
            for chunk in flat.split(FIT_CHUNK):
                centred = chunk.double() - mean
                cov += centred.T @ centred
            _, vectors = torch.linalg.eigh(cov)
            top = vectors[:, -k:].flip(1).T  # (k, P), decreasing variance
            peak = top.abs().argmax(1, keepdim=True)
            top = top * torch.sign(top.gather(1, peak))
            self.mean.copy_(mean)
            self.components.copy_(top)
            self.fitted.fill_(True)

    def _check_fitted(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("pca: call fit(x_train) (or load a fitted state_dict) before encoding or decoding.")

    def encode(self, x: Tensor, latent: str | None = None) -> Tensor:
        self.check_latent(latent)
        self._check_fitted()
        with full_precision(x.device):
            return (x.flatten(1).float() - self.mean) @ self.components.T

    def decode(self, z: Tensor, latent: str | None = None) -> Tensor:
        self.check_latent(latent)
        self._check_fitted()
        with full_precision(z.device):
            flat = z.float() @ self.components + self.mean
        return flat.reshape(z.shape[0], *self.arch.example_shape)

    def parameter_counts(self) -> dict[str, int]:
        return {"encoder": self.components.numel() + self.mean.numel(), "decoder": 0}
