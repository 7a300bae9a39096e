"""The linear probe: separable data, scale invariance, and scikit-learn's optimum."""

import numpy as np
import pytest
import torch

from repeval.errors import UserError
from repeval.probes import Latents
from repeval.probes.linear import LinearSettings, fit_logistic, run, scale


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
    result = run(Latents(z_train, y_train, z_test, y_test, 3), LinearSettings(), "cpu")
    assert result.scores == {"accuracy": 1.0} and result.details["train_accuracy"] == 1.0


@pytest.mark.parametrize("factor", [1e-3, 1e3])
def test_latent_scale_does_not_matter(factor):
    z_train, y_train = separable(40, seed=0)
    z_test, y_test = separable(10, seed=1)
    base = run(Latents(z_train, y_train, z_test, y_test, 3), LinearSettings(), "cpu")
    scaled = run(Latents(z_train * factor, y_train, z_test * factor, y_test, 3), LinearSettings(), "cpu")
    assert scaled.scores == base.scores


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_optimum_equals_scikit_learn_logistic_regression(C):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))  # correlated components
    y = (z @ rng.normal(size=(6, 4)) + rng.normal(scale=2.0, size=(300, 4))).argmax(1)
    zs, _ = scale(torch.from_numpy(z), torch.from_numpy(z), "standard")
    weight, bias, _ = fit_logistic(zs, torch.from_numpy(y), 4, LinearSettings(C=C, tol=1e-10))
    reference = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(zs.numpy(), y)
    np.testing.assert_allclose(weight.numpy().T, reference.coef_, atol=2e-5)
    np.testing.assert_allclose(bias.numpy(), reference.intercept_, atol=2e-5)


def test_constant_components_get_no_weight():
    z_train, y_train = separable(40, seed=0)
    zs, _ = scale(torch.from_numpy(z_train).double(), torch.from_numpy(z_train).double(), "standard")
    weight, _, _ = fit_logistic(zs, torch.from_numpy(y_train), 3, LinearSettings())
    assert torch.all(weight[3].abs() < 1e-12)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="C must be a finite number > 0"):
        LinearSettings(C=0.0)
    with pytest.raises(UserError, match="scaling=minmax is not allowed: scaling must be one of standard, global"):
        LinearSettings(scaling="minmax")
