"""k-means protocol: whitening, both backends, every point used, empty clusters."""

import faiss
import numpy as np
import pytest
import torch

from repeval.probes import Latents
from repeval.probes.kmeans import (
    KMeansSettings,
    _assign,
    _update,
    faiss_kmeans,
    initial_indices,
    nearest_centroid,
    run,
    torch_kmeans,
    whiten,
)
from repeval.probes.metrics import hungarian_accuracy


def blobs(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three tight, far-apart blobs in 5-D with correlated noise."""
    rng = np.random.default_rng(seed)
    centres = np.array([[10, 0, 0, 0, 0], [0, 10, 0, 0, 0], [0, 0, 10, 5, 0]], dtype=np.float64)
    y = np.repeat(np.arange(3), n_per_class)
    noise = rng.normal(size=(y.size, 5)) @ rng.normal(size=(5, 5)) * 0.1
    return (centres[y] + noise).astype(np.float32), y


def test_whitening_gives_identity_covariance_on_train():
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4)) + 3.0).astype(np.float32)
    train, test, s = whiten(z, z[:5])
    gram = train.T @ train  # the official whitening scales to unit norm, not unit variance
    np.testing.assert_allclose(gram, np.diag(s ** 2 / (s + 1e-5) ** 2), atol=1e-12)
    np.testing.assert_allclose(np.diag(gram), 1.0, atol=1e-4)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(test, train[:5], atol=1e-12)  # test uses the train statistics


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_blobs_are_recovered_exactly(backend):
    z_train, y_train = blobs(30, seed=0)
    z_test, y_test = blobs(10, seed=1)
    result = run(Latents(z_train, y_train, z_test, y_test, 3), KMeansSettings(restarts=10, backend=backend), "cpu")
    assert result.scores == {"accuracy": 1.0, "nmi": 1.0, "ari": 1.0}
    assert result.details["k"] == 3 and result.details["train_accuracy"] == 1.0
    if backend == "torch":
        assert result.details["restarts_converged"] == 10


def test_backends_agree_on_the_partition():
    z, _ = blobs(30, seed=3)
    settings = KMeansSettings(restarts=10)
    c_faiss, _ = faiss_kmeans(z, 3, settings)
    c_torch, _ = torch_kmeans(z, 3, settings, "cpu")
    p_faiss, inertia_faiss = nearest_centroid(z, c_faiss, "cpu")
    p_torch, inertia_torch = nearest_centroid(z, c_torch, "cpu")
    assert hungarian_accuracy(p_faiss, p_torch) == 1.0
    assert inertia_torch == pytest.approx(inertia_faiss, rel=1e-5)


def test_faiss_uses_every_point():
    # k=1: the centroid is the mean of the points faiss trains on. 600 points > faiss's
    # default cap of 256 per centroid, so a subsample would move it.
    z = np.random.default_rng(0).normal(size=(600, 3)).astype(np.float32)
    centroids, km = faiss_kmeans(z, 1, KMeansSettings(restarts=2, niter=5, seed=3))
    assert km.cp.max_points_per_centroid == 600
    assert (km.cp.nredo, km.cp.niter, km.cp.seed) == (2, 5, 3)
    assert km.cp.init_method == faiss.ClusteringInitMethod_RANDOM
    np.testing.assert_allclose(centroids[0], z.mean(0), atol=1e-6)
    default = faiss.Kmeans(3, 1, niter=5, seed=3)  # faiss's own cap: fits on 256 points
    default.train(z)
    assert np.abs(default.centroids[0] - z.mean(0)).max() > 1e-3


def test_empty_cluster_keeps_its_centroid():
    x = torch.tensor([[0.0], [2.0], [10.0]])
    labels = torch.tensor([[0, 0, 0]])
    centroids = torch.tensor([[[1.0], [5.0]]])
    assert _update(x, labels, centroids, chunk=2).tolist() == [[[4.0], [5.0]]]


def test_initial_centroids_are_distinct_and_seeded():
    a = initial_indices(10, 4, restarts=6, seed=0)
    assert a.shape == (6, 4) and all(len(set(row)) == 4 for row in a)
    assert np.array_equal(a, initial_indices(10, 4, restarts=6, seed=0))
    assert not np.array_equal(a, initial_indices(10, 4, restarts=6, seed=1))


def test_chunking_does_not_change_assignments_or_updates():
    x = torch.from_numpy(blobs(30, seed=4)[0])
    centroids = x[torch.from_numpy(initial_indices(90, 3, restarts=4, seed=0))]
    x_sq = (x * x).sum(1)
    labels, inertia = _assign(x, x_sq, centroids, chunk=90)
    chunked_labels, chunked_inertia = _assign(x, x_sq, centroids, chunk=7)
    assert torch.equal(chunked_labels, labels)
    torch.testing.assert_close(chunked_inertia, inertia, rtol=1e-6, atol=0)
    torch.testing.assert_close(_update(x, labels, centroids, chunk=7), _update(x, labels, centroids, chunk=90))
