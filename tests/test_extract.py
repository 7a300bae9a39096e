"""Frozen-latent extraction: batch-size invariance and the on-disk cache."""

import numpy as np
import pytest
import torch

from repeval import extract as ex
from repeval.data import load
from repeval.specs import make_spec
from repeval.train import train

pytestmark = pytest.mark.slow  # every test trains a VAE on digits first


def trained(tmp_path, encoder="vae"):
    data = load("digits")
    spec = make_spec(encoder, "digits", latent_dim=32, budget=128)
    return train(spec, data, "cpu", tmp_path, progress=False), data


def test_latents_do_not_depend_on_the_batch_size(tmp_path):
    checkpoint, data = trained(tmp_path)
    model = checkpoint.load_model()
    a = ex.encode(model, data.test.x, "mean", "cpu", batch_size=540)
    b = ex.encode(model, data.test.x, "mean", "cpu", batch_size=7)
    assert a.shape == (540, 32) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_second_extraction_comes_from_the_cache(tmp_path, monkeypatch):
    checkpoint, data = trained(tmp_path)
    first = ex.extract(checkpoint, data, "mean", "cpu")
    assert len(list((checkpoint.path / "latents").glob("mean-*.npz"))) == 1

    def no_forward(*args, **kwargs):
        raise AssertionError("the encoder ran although its latents are cached")

    monkeypatch.setattr(ex, "encode", no_forward)
    second = ex.extract(checkpoint, data, "mean", "cpu")
    assert np.array_equal(first.z_train, second.z_train) and np.array_equal(first.y_test, second.y_test)


def test_cache_is_keyed_by_latent_choice(tmp_path):
    checkpoint, data = trained(tmp_path)
    torch.manual_seed(0)
    mean = ex.extract(checkpoint, data, "mean", "cpu")
    sample = ex.extract(checkpoint, data, "sample", "cpu")
    assert not np.array_equal(mean.z_test, sample.z_test)
    assert {p.name.split("-")[0] for p in (checkpoint.path / "latents").glob("*.npz")} == {"mean", "sample"}
