"""Weighted k-nearest-neighbour probe.

Protocol (the standard weighted kNN monitor of self-supervised learning — InstDisc; k=20,
T=0.07 as solo-learn and DINO; ``docs/protocol.md`` §8):

- bank = train latents with their labels, queries = test latents;
- ``metric="cosine"``: both sets L2-normalised, similarity ``s`` = inner product
  (exact search, faiss ``IndexFlatIP``); ``metric="euclidean"``: raw latents,
  ``s = −‖q − b‖`` (exact search, faiss ``IndexFlatL2``);
- the ``k`` most similar bank items vote for their label with weight ``exp(s / T)``
  (``T = temperature``); computed as ``exp((s − s_max) / T)``, which divides every weight of
  a query by the same constant and so leaves the vote unchanged while avoiding overflow;
- the class with the largest total weight is the prediction (``accuracy``, a fraction);
  ``top5`` in the details counts a query right when its class is among the five
  best-voted classes.

Ties: between classes with equal total weight, the lower class index wins (top-1 and the
top-5 ranking alike, a stable sort). Between bank items at exactly the k-th distance the
search backend decides (deterministic for a given backend).

Backends: faiss exact search on CPU; on CUDA, torch matmul + ``topk`` over chunks of
queries (exact too, and fast at these sizes; faiss-gpu is not required). Euclidean
weights use the Euclidean distance itself, so ``temperature`` is then in the latent's
distance units and should be chosen for that scale. Settings recorded: ``k``, ``metric``,
``temperature``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repeval.devices import is_cuda
from repeval.errors import UserError
from repeval.probes.base import FRACTION, Latents, Metric, Result, Task, Tolerance
from repeval.ranges import POSITIVE, POSITIVE_INT, Choice, setting, validate_settings

METRICS = ("cosine", "euclidean")
QUERY_CHUNK_ELEMENTS = 1 << 27  # queries × bank similarities held at once on CUDA


@dataclass(frozen=True)
class KNNSettings:
    """Weighted kNN settings (see the module docstring)."""

    k: int = setting(20, POSITIVE_INT, "neighbours that vote, at most the train split's size")
    metric: str = setting("cosine", Choice(*METRICS), "the similarity")
    temperature: float = setting(0.07, POSITIVE, "T of the vote weights exp(s / T)")

    def __post_init__(self) -> None:
        validate_settings(self, "knn")

    @classmethod
    def defaults(cls, device: str) -> "KNNSettings":
        return cls()


def _prepare(z: np.ndarray, metric: str) -> np.ndarray:
    z = np.ascontiguousarray(z, dtype=np.float32)
    if metric == "cosine":
        with np.errstate(over="ignore", under="ignore"):  # such rows are handled below
            norms = np.linalg.norm(z, axis=1, keepdims=True)
        # a row beyond ~1e19 overflows its squared norm in float32, one below ~1e-19 underflows it:
        # cosine is scale-free, so such rows are first brought near 1 by their largest entry
        extreme = (~np.isfinite(norms) | (norms < 1e-18))[:, 0] & (np.abs(z).max(axis=1, initial=0) > 0)
        if extreme.any():
            z = z.copy()
            with np.errstate(over="ignore", under="ignore"):
                z[extreme] /= np.abs(z[extreme]).max(axis=1, keepdims=True)
                norms[extreme] = np.linalg.norm(z[extreme], axis=1, keepdims=True)
        z = z / np.maximum(norms, np.finfo(np.float32).tiny)
    return z


def search_faiss(bank: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k``: similarities ``(nq, k)`` (descending) and bank indices."""
    import faiss

    index = faiss.IndexFlatIP(bank.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(bank.shape[1])
    index.add(bank)
    scores, indices = index.search(queries, k)
    if metric == "euclidean":
        scores = -np.sqrt(np.maximum(scores, 0))
    return scores, indices


def search_torch(bank: np.ndarray, queries: np.ndarray, k: int, metric: str,
                 device: str) -> tuple[np.ndarray, np.ndarray]:
    """Same as :func:`search_faiss` with torch matmul + ``topk`` on ``device``."""
    import torch

    b = torch.from_numpy(bank).to(device)
    b_sq = (b * b).sum(1) if metric == "euclidean" else None
    chunk = max(1, QUERY_CHUNK_ELEMENTS // b.shape[0])
    scores, indices = [], []
    for start in range(0, queries.shape[0], chunk):
        q = torch.from_numpy(queries[start:start + chunk]).to(device)
        if metric == "cosine":
            sim = q @ b.T
        else:
            sq = torch.addmm(b_sq, q, b.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
            sim = -sq.clamp_min(0).sqrt()
        top = sim.topk(k, dim=1)
        scores.append(top.values.cpu().numpy())
        indices.append(top.indices.cpu().numpy())
    return np.concatenate(scores), np.concatenate(indices)


def vote(scores: np.ndarray, labels: np.ndarray, num_classes: int, temperature: float) -> np.ndarray:
    """Class totals ``(nq, num_classes)`` of the weights ``exp((s − s_max) / T)`` (float64)
    of neighbours with similarities ``scores`` and classes ``labels`` (both ``(nq, k)``)."""
    s = scores.astype(np.float64)
    weights = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)
    totals = np.zeros((s.shape[0], num_classes))
    np.add.at(totals, (np.arange(s.shape[0])[:, None], labels), weights)
    return totals


def ranked_classes(totals: np.ndarray) -> np.ndarray:
    """Classes by decreasing vote; equal votes keep the lower class index first."""
    return np.argsort(-totals, axis=1, kind="stable")


def run(latents: Latents, settings: KNNSettings, device: str) -> Result:
    """Test ``accuracy`` (top-1, fraction); details: ``top5``, ``backend``; the accuracy's
    per-example correctness (``correct``, packed bits) goes with it."""
    from repeval.stats import pack_bits

    if settings.k > latents.z_train.shape[0]:
        raise UserError(
            f"knn: k = {settings.k} exceeds the {latents.z_train.shape[0]} train latents in the bank; lower k."
        )
    bank = _prepare(latents.z_train, settings.metric)
    queries = _prepare(latents.z_test, settings.metric)
    if is_cuda(device):
        backend = "torch"
        scores, indices = search_torch(bank, queries, settings.k, settings.metric, device)
    else:
        backend = "faiss"
        scores, indices = search_faiss(bank, queries, settings.k, settings.metric)
    totals = vote(scores, latents.y_train[indices], latents.num_classes, settings.temperature)
    ranked = ranked_classes(totals)
    hits = ranked == latents.y_test[:, None]
    return Result(
        scores={"accuracy": float(hits[:, 0].mean())},
        details={"top5": float(hits[:, :5].any(axis=1).mean()), "backend": backend},
        metric_details={"accuracy": {"correct": pack_bits(hits[:, 0])}},
    )


TASK = Task(
    "knn", KNNSettings, run, label="kNN",
    summary="weighted k-nearest-neighbour vote of the train latents (cosine, k = 20, T = 0.07)",
    metrics=(Metric("accuracy", "higher", Tolerance(abs=0.005), "acc.", "%", 100, 2,
                    note="cosine, k = 20, weighted votes", bounds=FRACTION),))
