"""k-means protocol: whitening, both backends, every point used, empty clusters."""

import faiss
import numpy as np
import pytest
from sklearn.cluster import KMeans

from repeval.probes import Latents
from repeval.probes.kmeans import (
    KMeansSettings,
    batched_lloyd,
    faiss_kmeans,
    initial_indices,
    nearest_centroid,
    run,
    tolerance,
    torch_kmeans,
    whiten,
)
from repeval.probes.metrics import hungarian_accuracy
from repeval.stats import unpack_bits


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


def overlapping(n: int, seed: int) -> np.ndarray:
    """Ten overlapping Gaussian clusters in 12-D, whitened: a hard, many-iteration problem."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 12)) * 1.2
    z = centres[rng.integers(0, 10, n)] + rng.normal(size=(n, 12))
    return whiten(z, z[:1])[0].astype(np.float32)


def sklearn_lloyd(x, centroids, max_iter=1000, tol=1e-4):
    return KMeans(len(centroids), init=centroids, n_init=1, max_iter=max_iter, tol=tol,
                  algorithm="lloyd").fit(x)


@pytest.mark.parametrize("lanes", [1, 3])  # the assignment step in one lane, or split over three threads
def test_batched_lloyd_follows_sklearn_from_identical_centroids(lanes):
    x = overlapping(1500, seed=0)
    init = initial_indices(len(x), 10, restarts=12, seed=3)
    found = batched_lloyd(x, init, max_iter=1000, tol=tolerance(x, 1e-4), device="cpu", lanes=lanes,
                          chunk_elements=lanes * 100 * 10 * 12)  # 15 chunks of 100 points
    assert found.gemm.endswith("3 lanes") == (lanes == 3)
    iterations = []
    for r in range(12):
        ref = sklearn_lloyd(x, x[init[r]])
        iterations.append(ref.n_iter_)
        assert found.n_iter[r] == ref.n_iter_, r
        assert found.inertia[r] == pytest.approx(ref.inertia_, rel=1e-5), r
    assert max(iterations) > 10  # a problem that takes Lloyd many steps
    labels, _ = nearest_centroid(x, found.centroids, "cpu")
    best = sklearn_lloyd(x, x[init[found.best]])
    assert hungarian_accuracy(best.labels_, labels) == 1.0  # the same partition
    np.testing.assert_allclose(np.sort(found.centroids, axis=0), np.sort(best.cluster_centers_, axis=0), atol=1e-5)


def test_initial_centroids_replay_sklearns_random_init():
    x = overlapping(800, seed=1)
    for seed in (0, 7):
        ref = KMeans(10, init="random", n_init=6, max_iter=1000, random_state=seed).fit(x)
        found = batched_lloyd(x, initial_indices(len(x), 10, restarts=6, seed=seed), 1000,
                              tolerance(x, 1e-4), "cpu")
        assert found.inertia[found.best] == pytest.approx(ref.inertia_, rel=1e-5)
        assert hungarian_accuracy(ref.labels_, nearest_centroid(x, found.centroids, "cpu")[0]) == 1.0


def test_pool_and_chunks_do_not_change_the_result():
    x = overlapping(700, seed=2)
    init = initial_indices(len(x), 10, restarts=9, seed=0)
    whole = batched_lloyd(x, init, 1000, tolerance(x, 1e-4), "cpu")
    # two restarts held at once (refilled as they finish), 37 points per chunk
    small = batched_lloyd(x, init, 1000, tolerance(x, 1e-4), "cpu", chunk_elements=37 * 10 * 2,
                          pool_label_bytes=2 * len(x))
    # and the same small chunks dealt to two lanes (threads), each summing its own share
    lanes = batched_lloyd(x, init, 1000, tolerance(x, 1e-4), "cpu", chunk_elements=2 * 37 * 10 * 2,
                          pool_label_bytes=2 * len(x), lanes=2)
    assert small.width == 2 and whole.width == 9 and lanes.width == 2
    for other in (small, lanes):
        np.testing.assert_array_equal(other.n_iter, whole.n_iter)
        np.testing.assert_allclose(other.inertia, whole.inertia, rtol=1e-6)  # float32 sums in another order
        assert other.best == whole.best


def test_empty_cluster_is_reseeded_as_sklearn_does():
    x = overlapping(400, seed=4)
    start = x[:10].copy()
    start[9] = start[0]  # a duplicate centre: the first copy wins every point, the second is empty
    found = batched_lloyd(x, start[None], 1000, tolerance(x, 1e-4), "cpu")
    ref = sklearn_lloyd(x, start)
    assert found.relocations >= 1
    assert found.n_iter[0] == ref.n_iter_
    assert found.inertia[0] == pytest.approx(ref.inertia_, rel=1e-5)
    assert hungarian_accuracy(ref.labels_, nearest_centroid(x, found.centroids, "cpu")[0]) == 1.0


def test_stopping_rules():
    x = overlapping(600, seed=5)
    init = initial_indices(len(x), 10, restarts=4, seed=0)
    strict = batched_lloyd(x, init, 1000, 0.0, "cpu")  # tol 0: only "no assignment changed" stops
    assert strict.strict.all() and not strict.capped.any()
    for r in range(4):
        assert strict.n_iter[r] == sklearn_lloyd(x, x[init[r]], tol=0).n_iter_
    capped = batched_lloyd(x, init, 3, 0.0, "cpu")
    assert (capped.n_iter == 3).all() and capped.capped.all()
    ref = sklearn_lloyd(x, x[init[0]], max_iter=3, tol=0)
    assert capped.inertia[0] == pytest.approx(ref.inertia_, rel=1e-5)


def test_accuracy_keeps_its_per_example_correctness():
    z_train, y_train = blobs(30, seed=0)
    z_test, y_test = blobs(10, seed=1)
    z_test[0] = z_train[y_train == 1][0]  # a class-1 point labelled as class 0: one mistake
    result = run(Latents(z_train, y_train, z_test, y_test, 3), KMeansSettings(restarts=5), "cpu")
    correct = unpack_bits(result.metric_details["accuracy"]["correct"])
    assert correct.shape == (30,) and not correct[0] and correct[1:].all()
    assert correct.mean() == pytest.approx(result.scores["accuracy"])


def test_initial_centroids_are_distinct_and_seeded():
    a = initial_indices(10, 4, restarts=6, seed=0)
    assert a.shape == (6, 4) and all(len(set(row)) == 4 for row in a)
    assert np.array_equal(a, initial_indices(10, 4, restarts=6, seed=0))
    assert not np.array_equal(a, initial_indices(10, 4, restarts=6, seed=1))


def test_dense_and_sparse_updates_agree(monkeypatch):
    from repeval.probes import kmeans as km

    x = overlapping(500, seed=6)
    init = initial_indices(len(x), 10, restarts=5, seed=1)
    results = []
    for share in (10 ** 9, 1):  # every chunk's moves through the ±1 product; none
        monkeypatch.setattr(km, "DENSE_MOVES_BELOW", share)
        results.append(batched_lloyd(x, init, 1000, tolerance(x, 1e-4), "cpu"))
    dense, sparse = results
    np.testing.assert_array_equal(dense.n_iter, sparse.n_iter)
    np.testing.assert_allclose(dense.inertia, sparse.inertia, rtol=1e-6)
