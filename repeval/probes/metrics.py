"""Clustering metrics: Hungarian-matched accuracy, NMI and ARI.

Accuracy follows the official ``cluster.py`` (``docs/protocol.md`` §5.2): the best one-to-one
mapping of clusters to classes on the contingency matrix, found with the Hungarian
algorithm (here ``scipy.optimize.linear_sum_assignment``; the official code used
``munkres``), then the fraction of points whose mapped cluster equals their class. The
matrix may be rectangular: with more clusters than classes the unmatched clusters count
as errors, with more classes than clusters the unmatched classes do. NMI (arithmetic
normalisation, scikit-learn's default) and ARI come from scikit-learn.
"""

from __future__ import annotations

import numpy as np


def contingency(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(counts, clusters, classes)``: ``counts[i, j]`` = points in cluster ``clusters[i]``
    with class ``classes[j]`` (the distinct values of each labelling, sorted)."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two non-empty labellings of equal length, got {y_true.shape} and {y_pred.shape}")
    classes, true_idx = np.unique(y_true, return_inverse=True)
    clusters, pred_idx = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((clusters.size, classes.size), dtype=np.int64)
    np.add.at(counts, (pred_idx, true_idx), 1)
    return counts, clusters, classes


def hungarian_mapping(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, int]:
    """The cluster -> class mapping that maximises the number of matched points (one-to-one;
    clusters left without a class are absent)."""
    from scipy.optimize import linear_sum_assignment

    counts, clusters, classes = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols)}


def hungarian_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of points whose cluster maps to their class under :func:`hungarian_mapping`."""
    from scipy.optimize import linear_sum_assignment

    counts, _, _ = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def clustering_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``accuracy`` (Hungarian), ``nmi`` and ``ari`` of a clustering against the classes."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "accuracy": hungarian_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }
