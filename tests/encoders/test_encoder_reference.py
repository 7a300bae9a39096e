"""Reference encoders: raw pixels and PCA."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import encoders
from encoders.base import Arch
from repeval.data.base import Example
from repeval.errors import UserError

MNIST = SimpleNamespace(name="mnist", channels=1, latent_dims=(256, 32, 1024), default_latent_dim=256,
                        example=Example("image", 1))
CIFAR = SimpleNamespace(name="cifar10", channels=3, latent_dims=(256, 1024, 32), default_latent_dim=256,
                        example=Example("image", 3))


def pca(k: int, colors: int = 1):
    return encoders.get("pca")(Arch(colors, 16, 1, k))  # a 1×1×k "map": any k


def test_pixels_round_trip_is_exact(images):
    model = encoders.get("pixels")(Arch(1, 16, 4, 16))
    assert model.fit(images) is None and model.state_dict() == {}
    z = model.encode(images)
    assert z.shape == (64, 1024) and torch.equal(z[3], images[3].flatten())
    assert torch.equal(model.decode(z), images)
    assert model.latent_dim() == 1024 and model.parameter_counts() == {"encoder": 0, "decoder": 0}
    mid = model.decode(0.5 * z[:1] + 0.5 * z[1:2])  # interpolation = cross-fade
    assert torch.equal(mid, 0.5 * images[:1] + 0.5 * images[1:2])


def test_pixels_latent_size_is_the_image_size():
    pixels = encoders.get("pixels")
    assert pixels.resolve_latent_dim(CIFAR, None) == 3072
    assert pixels.resolve_latent_dim(CIFAR, 3072) == 3072
    with pytest.raises(UserError, match="--latent-dim 256 does not apply"):
        pixels.resolve_latent_dim(CIFAR, 256)


def two_direction_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """12 images: mean 0.25 everywhere, ±3 along pixel 5, ±1 along pixel 9 (all sign pairs)."""
    e5, e9 = torch.eye(1024)[5], torch.eye(1024)[9]
    signs = torch.tensor([[a, b] for a in (1.0, -1.0) for b in (1.0, -1.0)] * 3)
    flat = 0.25 + 3 * signs[:, :1] * e5 + signs[:, 1:] * e9
    return flat.reshape(12, 1, 32, 32), e5, e9


def test_pca_finds_the_principal_directions_with_a_fixed_sign():
    x, e5, e9 = two_direction_data()
    model = pca(2)
    model.fit(x)
    assert torch.allclose(model.mean, torch.full((1024,), 0.25))
    assert torch.allclose(model.components, torch.stack([e5, e9]), atol=1e-6)
    z = model.encode(x)
    assert torch.allclose(z, torch.stack([3 * torch.sign(x.flatten(1)[:, 5] - 0.25),
                                          torch.sign(x.flatten(1)[:, 9] - 0.25)], 1), atol=1e-5)


def test_pca_reconstructs_in_span_data_and_inverts_on_components():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(1024, 4, generator=gen)).Q.T  # 4 orthonormal directions
    flat = 0.1 + torch.randn(50, 4, generator=gen) @ basis
    x = flat.reshape(50, 1, 32, 32)
    model = pca(4)
    model.fit(x)
    assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-5)
    z = torch.randn(7, 4, generator=gen)
    assert torch.allclose(model.encode(model.decode(z)), z, atol=1e-5)
    assert torch.allclose(model.components @ model.components.T, torch.eye(4), atol=1e-6)
    assert model.parameter_counts() == {"encoder": 4 * 1024 + 1024, "decoder": 0}


def test_pca_state_dict_round_trip(tmp_path, images):
    model = pca(8)
    model.fit(images)
    torch.save(model.state_dict(), tmp_path / "pca.pt")
    fresh = pca(8)
    fresh.load_state_dict(torch.load(tmp_path / "pca.pt", weights_only=True))
    assert torch.equal(fresh.encode(images), model.encode(images))


def test_pca_refuses_more_components_than_pixels_and_unfitted_use(images):
    with pytest.raises(ValueError, match="only 1024 pixel values"):
        pca(1025)
    model = pca(3)
    with pytest.raises(RuntimeError, match="call fit"):
        model.encode(images)
    with pytest.raises(ValueError, match="3072 values"):
        model.fit(torch.zeros(4, 3, 32, 32))
    with pytest.raises(ValueError, match="float images"):
        model.fit(torch.zeros(4, 1, 32, 32, dtype=torch.uint8))


def test_pca_latent_size_defaults_to_the_dataset_and_is_bounded_by_the_pixels():
    family = encoders.get("pca")
    assert family.resolve_latent_dim(MNIST, None) == 256
    assert family.resolve_latent_dim(MNIST, 10) == 10
    with pytest.raises(UserError, match="between 1 and 1024"):
        family.resolve_latent_dim(MNIST, 2000)
