"""Weighted kNN votes on hand-made banks."""

import math

import numpy as np
import pytest

from repeval.errors import UserError
from repeval.probes import Latents
from repeval.probes.knn import KNNSettings, _prepare, ranked_classes, run, search_faiss, search_torch, vote

# Query along +x. Bank (deliberately not unit length): one class-0 item along +x (cosine 1),
# two class-1 items at cosine 0.8, one class-2 item opposite (cosine -1).
BANK = np.array([[3.0, 0.0], [0.4, 0.3], [8.0, -6.0], [-2.0, 0.0]], dtype=np.float32)
BANK_LABELS = np.array([0, 1, 1, 2])
QUERY = np.array([[2.0, 0.0]], dtype=np.float32)


def latents(query_label: int) -> Latents:
    return Latents(BANK, BANK_LABELS, QUERY, np.array([query_label]), num_classes=3)


def test_temperature_weighting_overrules_the_majority():
    # k=3: neighbours class 0 (s=1) and class 1 twice (s=0.8).
    # T=0.07: totals 1 vs 2·exp(-0.2/0.07) = 0.115 -> class 0 (the majority says class 1).
    bank, query = _prepare(BANK, "cosine"), _prepare(QUERY, "cosine")
    scores, indices = search_faiss(bank, query, 3, "cosine")
    assert indices[0, 0] == 0 and sorted(indices[0, 1:]) == [1, 2]
    totals = vote(scores, BANK_LABELS[indices], 3, 0.07)
    np.testing.assert_allclose(totals, [[1.0, 2 * math.exp(-0.2 / 0.07), 0.0]], rtol=1e-6)
    assert run(latents(0), KNNSettings(k=3, temperature=0.07), "cpu").scores == {"accuracy": 1.0}
    # T=1: totals 1 vs 2·exp(-0.2) = 1.637 -> class 1, as a plain majority vote.
    totals = vote(scores, BANK_LABELS[indices], 3, 1.0)
    np.testing.assert_allclose(totals, [[1.0, 2 * math.exp(-0.2), 0.0]], rtol=1e-6)
    assert run(latents(0), KNNSettings(k=3, temperature=1.0), "cpu").scores == {"accuracy": 0.0}
    assert run(latents(1), KNNSettings(k=3, temperature=1.0), "cpu").scores == {"accuracy": 1.0}


def test_torch_search_matches_faiss():
    bank, query = _prepare(BANK, "cosine"), _prepare(QUERY, "cosine")
    for metric in ("cosine", "euclidean"):
        b, q = (bank, query) if metric == "cosine" else (BANK, QUERY)
        s_f, i_f = search_faiss(b, q, 4, metric)
        s_t, i_t = search_torch(b, q, 4, metric, "cpu")
        np.testing.assert_allclose(s_f, s_t, atol=1e-6)
        assert i_f[0, 0] == i_t[0, 0] and set(i_f[0]) == set(i_t[0])


def test_euclidean_weights_use_the_distance():
    bank = np.array([[0.0], [1.0], [1.0]], dtype=np.float32)
    z = Latents(bank, np.array([0, 1, 1]), np.array([[0.1]], dtype=np.float32), np.array([0]), num_classes=2)
    # distances 0.1, 0.9, 0.9; T=0.5: 1 vs 2·exp(-1.6) = 0.40 -> class 0; T=5: 1 vs 2·exp(-0.16) -> class 1
    scores, indices = search_faiss(bank, np.array([[0.1]], dtype=np.float32), 3, "euclidean")
    np.testing.assert_allclose(scores, [[-0.1, -0.9, -0.9]], atol=1e-6)
    assert run(z, KNNSettings(k=3, metric="euclidean", temperature=0.5), "cpu").scores["accuracy"] == 1.0
    assert run(z, KNNSettings(k=3, metric="euclidean", temperature=5.0), "cpu").scores["accuracy"] == 0.0


def test_ties_go_to_the_lower_class():
    bank = np.array([[1.0, 0.5], [1.0, -0.5]], dtype=np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    for labels in ([1, 0], [0, 1]):
        z = Latents(bank, np.array(labels), query, np.array([0]), num_classes=2)
        assert run(z, KNNSettings(k=2), "cpu").scores["accuracy"] == 1.0
    assert ranked_classes(np.array([[0.0, 2.0, 2.0, 0.0, 1.0, 0.0, 0.0]])).tolist() == [[1, 2, 4, 0, 3, 5, 6]]


def test_top5():
    # 7 classes, one bank item each along increasing angles; the query is nearest class 0.
    angles = np.linspace(0, 1.2, 7)
    bank = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    for true_class, top5 in ((4, 1.0), (5, 0.0)):
        z = Latents(bank, np.arange(7), query, np.array([true_class]), num_classes=7)
        result = run(z, KNNSettings(k=7), "cpu")
        assert result.scores["accuracy"] == 0.0
        assert result.details == {"top5": top5, "backend": "faiss"}


def test_k_larger_than_bank_is_a_user_error():
    with pytest.raises(UserError, match="lower k"):
        run(latents(0), KNNSettings(k=5), "cpu")
    with pytest.raises(UserError):
        KNNSettings(metric="manhattan")
