"""Hungarian accuracy, its mapping, NMI and ARI on hand-made labellings."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from repeval.probes.metrics import clustering_scores, contingency, hungarian_accuracy, hungarian_mapping


def test_permuted_labelling_is_perfect():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3])
    permutation = np.array([2, 3, 1, 0])  # class c is called cluster permutation[c]
    y_pred = permutation[y_true]
    assert hungarian_accuracy(y_true, y_pred) == 1.0
    assert hungarian_mapping(y_true, y_pred) == {2: 0, 3: 1, 1: 2, 0: 3}


def test_partial_match_hand_computed():
    # clusters: 0 -> {class 0: 1, class 1: 2}, 1 -> {class 0: 2}, 2 -> {class 1: 1, class 2: 2}
    y_true = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    y_pred = np.array([1, 1, 0, 0, 0, 2, 2, 2])
    counts, clusters, classes = contingency(y_true, y_pred)
    assert counts.tolist() == [[1, 2, 0], [2, 0, 0], [0, 1, 2]]
    assert hungarian_mapping(y_true, y_pred) == {0: 1, 1: 0, 2: 2}
    assert hungarian_accuracy(y_true, y_pred) == 6 / 8


def test_more_clusters_than_classes_counts_unmatched_clusters_wrong():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 1, 2, 2])
    assert hungarian_accuracy(y_true, y_pred) == 3 / 4
    mapping = hungarian_mapping(y_true, y_pred)
    assert mapping[2] == 1 and len(mapping) == 2


def test_more_classes_than_clusters():
    y_true = np.array([0, 1, 2, 2])
    y_pred = np.array([5, 5, 5, 5])
    assert hungarian_accuracy(y_true, y_pred) == 2 / 4
    assert hungarian_mapping(y_true, y_pred) == {5: 2}


def test_arbitrary_cluster_ids():
    assert hungarian_mapping([0, 0, 1, 1], [7, 7, 3, 3]) == {3: 1, 7: 0}


def test_nmi_ari_hand_values_and_sklearn():
    scores = clustering_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    assert scores["accuracy"] == 0.5
    assert scores["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert scores["ari"] == pytest.approx(-0.5, abs=1e-12)  # (0 - 2/3) / (2 - 2/3)
    y_true = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([1, 1, 0, 0, 0, 2, 2, 2, 1, 2])
    scores = clustering_scores(y_true, y_pred)
    assert scores["nmi"] == normalized_mutual_info_score(y_true, y_pred)
    assert scores["ari"] == adjusted_rand_score(y_true, y_pred)
    assert clustering_scores(y_true, y_true) == {"accuracy": 1.0, "nmi": 1.0, "ari": 1.0}


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError):
        hungarian_accuracy([0, 1], [0])
