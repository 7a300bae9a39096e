"""The linear probe on linearly separable latents."""

import numpy as np
import pytest
import torch

from repeval.errors import UserError
from repeval.probes import Latents
from repeval.probes.linear import LinearSettings, run, train_linear


def separable(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in 3-D, separated by margins; a constant fourth column (std 0)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    y = np.repeat(np.arange(3), n_per_class)
    z = centres[y] + rng.uniform(-1, 1, (y.size, 3))
    return np.hstack([z, np.full((y.size, 1), 7.0)]).astype(np.float32), y


def test_separable_latents_are_classified_perfectly():
    z_train, y_train = separable(40, seed=0)
    z_test, y_test = separable(10, seed=1)
    settings = LinearSettings(epochs=30, batch_size=16)
    result = run(Latents(z_train, y_train, z_test, y_test, 3), settings, "cpu")
    assert result.scores == {"accuracy": 1.0}
    assert result.details == {"train_accuracy": 1.0, "steps": 30 * 8}  # ceil(120 / 16) = 8 steps per epoch


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_latent_scale_does_not_matter(scale):
    z_train, y_train = separable(40, seed=0)
    z_test, y_test = separable(10, seed=1)
    latents = Latents(z_train * scale, y_train, z_test * scale, y_test, 3)
    assert run(latents, LinearSettings(epochs=30, batch_size=16), "cpu").scores == {"accuracy": 1.0}


def test_training_is_seeded():
    z, y = separable(20, seed=2)
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    a = train_linear(zt, yt, 3, LinearSettings(epochs=3, batch_size=8, seed=5))
    b = train_linear(zt, yt, 3, LinearSettings(epochs=3, batch_size=8, seed=5))
    c = train_linear(zt, yt, 3, LinearSettings(epochs=3, batch_size=8, seed=6))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError):
        LinearSettings(epochs=0)
    with pytest.raises(UserError):
        LinearSettings(lr=-1.0)
