"""k-means probe: the paper's clustering protocol (Table 3).

Protocol (``docs/protocol.md`` §5.2, official ``cluster.py``):

1. Whiten with **train** statistics (``use_svd=1``): subtract the train mean, take the SVD
   of the centred train matrix (float64, ``numpy.linalg.svd``), project train and test on
   the right singular vectors and divide component ``i`` by ``s_i + 1e-5``. Full rank is
   kept. (``whiten=False`` skips this, as the official ``use_svd=0``.)
2. k-means with ``k = num_classes`` on the whitened train latents: ``restarts``
   independent runs from random initial centroids (``k`` distinct train points, as
   scikit-learn's ``init='random'``), each at most ``niter`` Lloyd iterations or until
   converged; the run with the lowest inertia is kept.
3. Predict the test latents by their nearest centroid; score ``accuracy`` (Hungarian
   matching of clusters to classes), ``nmi`` and ``ari`` on the test split.

Backends (setting ``backend``), both keeping every train point (no subsampling):

- ``"faiss"`` (CPU default): ``faiss.Kmeans`` with ``nredo = restarts``, ``niter``,
  ``seed``, random init, and ``max_points_per_centroid = ceil(n / k)`` so that faiss's
  default cap of 256 points per centroid never subsamples the train set. faiss stops a
  run early once its objective is unchanged from the previous iteration.
- ``"torch"`` (CUDA default, also runs on CPU): batched Lloyd iterations of all restarts at
  once as one ``(restarts, k, D)`` tensor on ``device``. Initial centroids per restart come
  from ``numpy.random.default_rng(seed)`` (the same on every device). Iterations stop when
  no restart changes any assignment, or after ``niter``. A cluster that loses all its
  points keeps its previous centroid. Matmuls run in float32 at full precision unless TF32
  matmuls are switched on globally (PyTorch leaves them off by default).

The final train/test assignments and the inertia are computed the same way for both
backends (float64 nearest centroid), so backends differ only in how they search.

Defaults (``KMeansSettings.defaults(device)``): on CUDA the paper's 1,000 restarts with the
torch backend; on CPU 20 restarts with faiss. One Lloyd iteration over 60,000 × 256
latents takes about 20 ms per restart on a quiet 2-core CPU and a restart runs tens to
hundreds of iterations, so the paper's 1,000 restarts would take tens of minutes per probe
there. The objectives of different restarts on such data differ by under 1%
while their accuracies can differ by points, which is why the
restart count is recorded with the score. ``niter = 300``: the paper's scikit-learn run
stops when its centres move less than ``tol=1e-4`` (relative), well before its
``max_iter=1000`` cap; on 256-d PCA codes of MNIST, 3 of 5 restarts still changed
assignments after 100 iterations and all had converged by 310, and the kept restart's test
accuracy moved by 1.8 points between 100 and 300 iterations (whitened). faiss ends a
restart once its objective stops changing and the torch backend ends when no restart
changes an assignment, so the cap costs nothing on easy data; the torch backend reports
how many restarts converged. ``seed = 0`` as the paper's
``random_state=0``. All settings are recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from repeval.devices import is_cuda
from repeval.errors import UserError
from repeval.probes.base import Latents, Metric, Result, Task, Tolerance
from repeval.probes.metrics import clustering_scores, hungarian_accuracy
from repeval.ranges import FLAG, NON_NEGATIVE_INT, POSITIVE_INT, Choice, setting, validate_settings

if TYPE_CHECKING:  # annotations only: the functions import these when they run
    import faiss
    import torch

PAPER_RESTARTS = 1000
CPU_RESTARTS = 20
WHITEN_EPS = 1e-5  # added to each singular value before dividing (official cluster.py)
CHUNK_ELEMENTS = 1 << 26  # points × (restarts·k) distances held at once by the torch backend
BACKENDS = ("faiss", "torch")


@dataclass(frozen=True)
class KMeansSettings:
    """k-means protocol settings (see the module docstring); bare defaults = the paper's."""

    restarts: int = setting(PAPER_RESTARTS, POSITIVE_INT, "independent runs; the lowest inertia is kept")
    niter: int = setting(300, POSITIVE_INT, "the most Lloyd iterations per restart")
    seed: int = setting(0, NON_NEGATIVE_INT, "seed of the initial centroids")
    backend: str = setting("torch", Choice(*BACKENDS), "who searches")
    whiten: bool = setting(True, FLAG, "SVD-whiten with train statistics first")

    def __post_init__(self) -> None:
        validate_settings(self, "kmeans")

    @classmethod
    def defaults(cls, device: str) -> "KMeansSettings":
        if is_cuda(device):
            return cls(restarts=PAPER_RESTARTS, backend="torch")
        return cls(restarts=CPU_RESTARTS, backend="faiss")


def whiten(z_train: np.ndarray, z_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD whitening with train statistics (official ``cluster.py``): returns float64
    ``(train, test, singular_values)``; ``train.T @ train = diag(s² / (s + 1e-5)²)``."""
    mean = z_train.mean(axis=0, dtype=np.float64)
    train = z_train.astype(np.float64) - mean
    test = z_test.astype(np.float64) - mean
    _, s, vt = np.linalg.svd(train, full_matrices=False)
    scale = vt.T / (s + WHITEN_EPS)
    return train @ scale, test @ scale, s


def faiss_kmeans(x: np.ndarray, k: int, settings: KMeansSettings) -> tuple[np.ndarray, faiss.Kmeans]:
    """Best-of-``restarts`` centroids ``(k, D)`` by faiss on every row of ``x``; also returns
    the ``faiss.Kmeans`` object (its ``cp`` holds the parameters used)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    km = faiss.Kmeans(
        dim, k, niter=settings.niter, nredo=settings.restarts, seed=settings.seed,
        max_points_per_centroid=math.ceil(n / k), min_points_per_centroid=1,
        init_method=faiss.ClusteringInitMethod_RANDOM, spherical=False, verbose=False,
    )
    km.train(x)
    return km.centroids.copy(), km


def initial_indices(n: int, k: int, restarts: int, seed: int) -> np.ndarray:
    """``(restarts, k)`` distinct row indices per restart: the random initial centroids."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(n, size=k, replace=False) for _ in range(restarts)])


def _assign(x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor,
            chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every point for every restart: labels ``(R, n)`` and the inertia
    ``(R,)`` (float64 sum of squared distances)."""
    import torch

    restarts, k, dim = centroids.shape
    flat = centroids.reshape(restarts * k, dim)
    c_sq = (flat * flat).sum(1)
    labels = torch.empty(restarts, x.shape[0], dtype=torch.int64, device=x.device)
    inertia = torch.zeros(restarts, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        dist = torch.addmm(c_sq, xc, flat.T, alpha=-2.0).view(xc.shape[0], restarts, k)
        best, arg = dist.min(dim=2)
        labels[:, start:start + chunk] = arg.T
        inertia += (best + x_sq[start:start + chunk, None]).clamp_min(0).sum(0, dtype=torch.float64)
    return labels, inertia


def _update(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, chunk: int) -> torch.Tensor:
    """New centroids = mean of each cluster's points (empty clusters keep their centroid)."""
    import torch

    restarts, k, dim = centroids.shape
    sums = torch.zeros_like(centroids)
    counts = torch.zeros(restarts, k, 1, dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        onehot = torch.zeros(restarts, k, xc.shape[0], dtype=x.dtype, device=x.device)
        onehot.scatter_(1, labels[:, None, start:start + chunk], 1.0)
        sums += onehot @ xc
        counts += onehot.sum(2, keepdim=True)
    return torch.where(counts > 0, sums / counts.clamp_min(1), centroids)


def torch_kmeans(x: np.ndarray, k: int, settings: KMeansSettings, device: str) -> tuple[np.ndarray, dict]:
    """Best-of-``restarts`` centroids ``(k, D)`` by batched Lloyd iterations on ``device``;
    also returns details (iterations run, restarts converged, chosen restart)."""
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    n = xt.shape[0]
    init = torch.from_numpy(initial_indices(n, k, settings.restarts, settings.seed)).to(device)
    centroids = xt[init]  # (R, k, D)
    x_sq = (xt * xt).sum(1)
    chunk = max(1, CHUNK_ELEMENTS // (settings.restarts * k))
    previous = None
    iterations = 0
    while True:
        labels, inertia = _assign(xt, x_sq, centroids, chunk)
        settled = None if previous is None else (labels == previous).all(1)
        if (settled is not None and bool(settled.all())) or iterations == settings.niter:
            break
        centroids = _update(xt, labels, centroids, chunk)
        previous = labels
        iterations += 1
    best = int(torch.argmin(inertia))
    converged = 0 if settled is None else int(settled.sum())
    details = {"iterations": iterations, "restarts_converged": converged, "best_restart": best}
    return centroids[best].cpu().numpy(), details


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, device: str) -> tuple[np.ndarray, float]:
    """float64 nearest-centroid labels of ``x`` and the inertia (sum of squared distances)."""
    import torch

    xt = torch.from_numpy(np.asarray(x, dtype=np.float64)).to(device)
    ct = torch.from_numpy(np.asarray(centroids, dtype=np.float64)).to(device)
    dist = torch.cdist(xt, ct, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    best, labels = dist.min(dim=1)
    return labels.cpu().numpy(), float(best.sum())


def run(latents: Latents, settings: KMeansSettings, device: str) -> Result:
    """Fit on the train latents, score the test latents: ``accuracy``, ``nmi``, ``ari``.

    Details: ``k``, train ``inertia`` of the kept centroids (in the whitened space),
    ``train_accuracy``, and backend-specific counters.
    """
    k = latents.num_classes
    if latents.z_train.shape[0] < k:
        raise UserError(f"kmeans needs at least k = {k} train latents, got {latents.z_train.shape[0]}.")
    if settings.whiten:
        train, test, _ = whiten(latents.z_train, latents.z_test)
    else:
        train, test = latents.z_train, latents.z_test
    details: dict = {"k": k}
    if settings.backend == "faiss":
        centroids, _ = faiss_kmeans(train, k, settings)
    else:
        centroids, extra = torch_kmeans(train, k, settings, device)
        details.update(extra)
    train_labels, inertia = nearest_centroid(train, centroids, device)
    test_labels, _ = nearest_centroid(test, centroids, device)
    details["inertia"] = inertia
    details["train_accuracy"] = hungarian_accuracy(latents.y_train, train_labels)
    return Result(scores=clustering_scores(latents.y_test, test_labels), details=details)


TASK = Task(
    "kmeans", KMeansSettings, run, label="k-means",
    summary="k-means with k = classes on whitened latents, best inertia of many restarts; Hungarian accuracy",
    metrics=(
        Metric("accuracy", "higher", Tolerance(abs=0.005), "acc.", "%", 100, 2,
               note="Hungarian-matched clustering accuracy on the test split"),
        Metric("nmi", "higher", Tolerance(abs=0.005), "NMI"),
        Metric("ari", "higher", Tolerance(abs=0.005), "ARI"),
    ))
