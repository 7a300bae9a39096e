"""k-means probe: the paper's clustering protocol (Table 3), on every device.

Protocol (``docs/protocol.md`` §5.2, official ``cluster.py``):

1. Whiten with **train** statistics (``use_svd=1``): subtract the train mean, take the SVD
   of the centred train matrix (float64, ``numpy.linalg.svd``), project train and test on
   the right singular vectors and divide component ``i`` by ``s_i + 1e-5``. Full rank is
   kept. (``whiten=False`` skips this, as the official ``use_svd=0``.)
2. k-means with ``k = num_classes`` on the whitened train latents, as the paper's
   ``KMeans(n_clusters=k, init="random", n_init=1000, max_iter=1000, tol=1e-4)``:
   ``restarts`` independent Lloyd runs, each from ``k`` distinct train points, each at most
   ``niter`` iterations or until converged; the run with the lowest train inertia is kept.
3. Predict the test latents by their nearest centroid; score ``accuracy`` (Hungarian
   matching of clusters to classes), ``nmi`` and ``ari`` on the test split. The per-example
   correctness of ``accuracy`` is kept (packed bits) for test-set bootstrap intervals.

Backends (setting ``backend``), both keeping every train point (no subsampling):

- ``"torch"`` (the default on every device): repeval's batched Lloyd, scikit-learn's
  algorithm run for many restarts at once (:func:`batched_lloyd`). Restart ``i`` starts from
  the same ``k`` points as restart ``i`` of scikit-learn's ``KMeans(init="random",
  random_state=seed)`` (:func:`initial_indices` replays its draws), and a restart stops by
  scikit-learn's rules: when no assignment changes ("strict" convergence), or when the
  squared centre shift summed over clusters is at most ``tol`` times the mean per-feature
  variance of the data, followed by one more assignment step; or after ``niter``
  iterations. An empty cluster is re-seeded with the point farthest from its centre, as
  scikit-learn does. So from identical starting centroids it follows scikit-learn's
  trajectory and reaches its partition (up to float32 rounding of near-ties).
- ``"faiss"``: ``faiss.Kmeans`` with ``nredo = restarts``, ``niter``, ``seed``, random init,
  and ``max_points_per_centroid = ceil(n / k)`` so that faiss's default cap of 256 points per
  centroid never subsamples the train set. faiss stops a run early once its objective is
  unchanged from the previous iteration (it ignores ``tol``).

The final train/test assignments and the inertia are computed the same way for both
backends (float64 nearest centroid), so backends differ only in how they search.

How the batched Lloyd is fast: an assignment step is one float32 matrix product per chunk
of points against the centroids of *every* active restart at once (``||c||² − 2x·c`` with
``||c||²`` folded into the product as an extra column), a minimum over clusters, and a check
of each point's current cluster against it; only the (point, restart) pairs whose cluster
changed are touched afterwards. Centroid sums, counts and squared norms are kept per cluster
in float64 and updated by the changed pairs only, so an update step costs nothing once few
points move, and the inertia of a restart is exact without another pass. A restart that has
converged leaves the batch, and a waiting one takes its slot (:data:`POOL_LABEL_BYTES` bounds
the restarts held at once); chunks over points bound the distance buffer
(:data:`CHUNK_ELEMENTS`). On the CPU the products go through numpy's BLAS (faster than
torch's there), and an assignment step runs in one lane per thread: each lane takes every
other chunk through its product and the per-point work after it, single-threaded, into its
own change of the sums (two pools each using every core slowed each other down); on CUDA
they are torch matmuls in full float32 (unless TF32 matmuls are switched on globally, which PyTorch leaves off). The
algorithm is the same code on both. Bounds that skip distances (Hamerly, Elkan) prune
little on whitened 256-d latents and break the one-product structure, so none is used.

Defaults (the same on every device): the paper's 1,000 restarts, at most 1,000 iterations,
``tol = 1e-4``, ``seed = 0`` (the paper's ``random_state=0``; ``repeval run`` passes the
run's seed, or the probe seed). All settings are recorded with every score.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from repeval.errors import UserError
from repeval.probes.base import FRACTION, Latents, Metric, Result, Task, Tolerance
from repeval.probes.metrics import clustering_scores, hungarian_mapping
from repeval.ranges import FLAG, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, Choice, setting, validate_settings

if TYPE_CHECKING:  # annotations only: the functions import these when they run
    import faiss

PAPER_RESTARTS = 1000
PAPER_MAX_ITER = 1000
PAPER_TOL = 1e-4
ARI_BOUNDS = (-0.5, 1.0)  # the adjusted Rand index's range (scikit-learn's docs; its minimum is −1/2)
WHITEN_EPS = 1e-5  # added to each singular value before dividing (official cluster.py)
CHUNK_ELEMENTS = 1 << 22  # points × (restarts·k) distances held at once on the CPU (16 MiB)
CUDA_CHUNK_ELEMENTS = 1 << 26
POOL_LABEL_BYTES = 1 << 28  # labels of the restarts held at once (points × restarts, 1-4 bytes each)
CHANGE_BATCH = 1 << 12  # changed (point, restart) pairs applied to the sums at a time
DENSE_MOVES_BELOW = 4  # a chunk's moves go through one product once at least 1/4 of its pairs moved
COMPACT_BELOW = 0.75  # drop finished restarts' columns once fewer than this share are active
BACKENDS = ("torch", "faiss")


@dataclass(frozen=True)
class KMeansSettings:
    """k-means protocol settings (see the module docstring); the defaults are the paper's."""

    restarts: int = setting(PAPER_RESTARTS, POSITIVE_INT, "independent runs; the lowest train inertia is kept")
    niter: int = setting(PAPER_MAX_ITER, POSITIVE_INT, "the most Lloyd iterations per restart")
    tol: float = setting(PAPER_TOL, NON_NEGATIVE, "stop when the centroids move less than this (scikit-learn's rule)")
    seed: int = setting(0, NON_NEGATIVE_INT, "seed of the initial centroids")
    backend: str = setting("torch", Choice(*BACKENDS), "who searches")
    whiten: bool = setting(True, FLAG, "SVD-whiten with train statistics first")

    def __post_init__(self) -> None:
        validate_settings(self, "kmeans")

    @classmethod
    def defaults(cls, device: str) -> "KMeansSettings":
        return cls()


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
    """``(restarts, k)`` distinct row indices per restart: the random initial centroids.

    The draws of scikit-learn's ``KMeans(init="random", random_state=seed)`` on float32
    data, replayed: one ``RandomState(seed).choice(n, k, replace=False, p=uniform)`` per
    restart, in order, with scikit-learn's float32 uniform weights."""
    if k > n:
        raise UserError(f"kmeans needs at least k = {k} train points, got {n}.")
    rng = np.random.RandomState(seed)
    weights = np.ones(n, dtype=np.float32)
    p = weights / weights.sum()
    return np.stack([rng.choice(n, size=k, replace=False, p=p) for _ in range(restarts)])


def tolerance(x: np.ndarray, tol: float) -> float:
    """scikit-learn's absolute tolerance: ``tol`` × the mean per-feature variance of ``x``."""
    return float(np.mean(np.var(x, axis=0, dtype=np.float64)) * tol) if tol else 0.0


@dataclass
class LloydResult:
    """What :func:`batched_lloyd` found: per restart (in input order) the train ``inertia``
    (float64, of its final centres and assignments), ``n_iter`` (scikit-learn's count) and
    how it ended (``strict``: no assignment changed; ``capped``: ``max_iter`` reached; else
    the centre shift fell within tolerance); the kept restart's ``centroids`` (float64
    ``(k, D)``) and ``best`` (its index: the lowest inertia, the first on ties)."""

    inertia: np.ndarray
    n_iter: np.ndarray
    strict: np.ndarray
    capped: np.ndarray
    centroids: np.ndarray
    best: int
    relocations: int = 0
    width: int = 0  # restarts held at once
    gemm: str = ""
    stats: dict = field(default_factory=dict)


class _Matmul:
    """``out = a @ b.T`` for float32 matrices: numpy's BLAS on the CPU, torch on other devices.

    On the CPU the search runs in ``lanes`` Python threads (default: torch's thread count), each
    taking every ``lanes``-th chunk of points through the product *and* the per-point work after
    it; BLAS gets the threads the lanes leave (``threads // lanes``, at least one)."""

    def __init__(self, device: str, lanes: int | None = None):
        import torch

        self.cpu = torch.device(device).type == "cpu"
        self.threads = torch.get_num_threads()
        self.lanes = max(1, (lanes or self.threads) if self.cpu else 1)
        self.blas_threads = max(1, self.threads // self.lanes)
        self.name = ("numpy BLAS (float32)" if self.cpu else "torch matmul (float32)") + (
            f", {self.lanes} lanes" if self.lanes > 1 else "")

    def limits(self):
        """For the whole search on the CPU: the products on numpy's BLAS with the threads the lanes
        leave, torch's per-point work on one thread per lane. Two thread pools each asking for
        every core fight for them (BLAS threads spin after a product while torch's ops wait for a
        core): at 2 threads on 2 cores the search was slower than at 1 (RESULTS.md §12)."""
        if not self.cpu:
            return nullcontext()
        import torch
        from threadpoolctl import threadpool_limits

        stack = ExitStack()
        stack.enter_context(threadpool_limits(limits=self.blas_threads, user_api="blas"))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        stack.callback(torch.set_num_threads, before)
        return stack

    def __call__(self, a, b, out):
        """``out = a @ b.T``."""
        return self.mm(a, b.T, out)

    def mm(self, a, b, out):
        """``out = a @ b``."""
        import torch

        if self.cpu:
            np.matmul(a.numpy(), b.numpy(), out=out.numpy())
        else:
            torch.mm(a, b, out=out)
        return out


class _Step:
    """One lane's share of an assignment step: its distance buffer and its float32 change of
    the sums, moved counts, squared norms and changed pairs per restart."""

    def __init__(self, k: int, w: int, dim: int, m: int, dev):
        import torch

        self.buffer = torch.empty(m, k * w, device=dev)
        self.delta = torch.zeros(w * k, dim, device=dev)
        self.moved_into = torch.zeros(w * k, dtype=torch.int64, device=dev)
        self.moved_from = torch.zeros(w * k, dtype=torch.int64, device=dev)
        self.sq_delta = torch.zeros(w * k, dtype=torch.float64, device=dev)
        self.changed_count = torch.zeros(w, dtype=torch.int64, device=dev)
        self.changed_pairs = 0


def _label_dtype(k: int):
    import torch

    # the sentinel k ("no cluster yet") must fit too
    return torch.uint8 if k < 255 else torch.int16 if k < 32767 else torch.int32


def batched_lloyd(x: np.ndarray, init: np.ndarray, max_iter: int, tol: float, device: str, *,
                  chunk_elements: int | None = None, pool_label_bytes: int = POOL_LABEL_BYTES,
                  lanes: int | None = None) -> LloydResult:
    """scikit-learn's Lloyd k-means (``KMeans(algorithm="lloyd")``, unit sample weights) for
    every restart of ``init``, many at once (module docstring).

    ``x``: ``(n, D)`` train points (used in float32); ``init``: ``(R, k)`` row indices of the
    starting centroids, or ``(R, k, D)`` centroids; ``tol``: the *absolute* tolerance on the
    summed squared centre shift (:func:`tolerance` gives scikit-learn's); ``lanes``: parallel
    lanes of an assignment step on the CPU (default: torch's thread count; :class:`_Matmul`).
    Deterministic for a given device and lane count (lanes sum their float32 changes of the
    centroid sums separately, so another lane count may round a near-tie the other way).
    """
    import torch

    dev = torch.device(device)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x32.shape
    xt = torch.from_numpy(x32).to(dev)
    init = np.asarray(init)
    if init.ndim == 2:
        starts = torch.from_numpy(x32[init].astype(np.float64))
    elif init.ndim == 3 and init.shape[2] == dim:
        starts = torch.from_numpy(np.asarray(init, dtype=np.float64))
    else:
        raise ValueError(f"init must be (restarts, k) indices or (restarts, k, {dim}) centroids, got {init.shape}")
    restarts, k = starts.shape[:2]
    matmul = _Matmul(device, lanes)
    lanes = matmul.lanes
    label_dtype = _label_dtype(k)
    width = max(1, min(restarts, pool_label_bytes // (n * torch.tensor([], dtype=label_dtype).element_size())))
    chunk_elements = chunk_elements or (CUDA_CHUNK_ELEMENTS if dev.type == "cuda" else CHUNK_ELEMENTS)
    f64 = dict(dtype=torch.float64, device=dev)
    # points with ||x||² unused and a column of ones: the product with [-2c, ||c||²] is ||c||² - 2x·c
    xa = torch.ones(n, dim + 1, device=dev)
    xa[:, :dim] = xt
    x_sq = (xt.double() ** 2).sum(1)

    # the pool: one slot per restart held; slot state is indexed by slot
    slot_restart = torch.full((width,), -1, dtype=torch.int64)
    centers = torch.zeros(width, k, dim, **f64)   # the centres the next assignment step uses
    sums = torch.zeros(width, k, dim, **f64)      # per cluster: sum of its points (current labels)
    counts = torch.zeros(width, k, **f64)
    sq = torch.zeros(width, k, **f64)             # per cluster: sum of its points' ||x||²
    labels = torch.full((n, width), k, dtype=label_dtype, device=dev)  # k = not assigned yet
    n_iter = torch.zeros(width, dtype=torch.int64)
    finishing = torch.zeros(width, dtype=torch.bool)   # centres converged: one last assignment step
    relocated = torch.zeros(width, dtype=torch.bool)

    out_inertia = np.full(restarts, np.inf)
    out_iter = np.zeros(restarts, dtype=np.int64)
    out_strict = np.zeros(restarts, dtype=bool)
    out_capped = np.zeros(restarts, dtype=bool)
    best = {"inertia": math.inf, "restart": -1, "centroids": None}
    pending = iter(range(restarts))
    stats = {"steps": 0, "changed_pairs": 0}
    relocations = 0

    def load(slot: int) -> bool:
        r = next(pending, None)
        if r is None:
            slot_restart[slot] = -1
            return False
        slot_restart[slot] = r
        centers[slot] = starts[r].to(dev)
        sums[slot] = counts[slot] = sq[slot] = 0
        labels[:, slot] = k
        n_iter[slot] = 0
        finishing[slot] = relocated[slot] = False
        return True

    for slot in range(width):
        load(slot)

    def finish(slot: int, strict: bool) -> None:
        nonlocal best
        r = int(slot_restart[slot])
        c = centers[slot]
        inertia = float((sq[slot] - 2 * (c * sums[slot]).sum(1) + counts[slot] * (c * c).sum(1)).sum())
        out_inertia[r], out_iter[r], out_strict[r] = inertia, int(n_iter[slot]), strict
        out_capped[r] = not strict and int(n_iter[slot]) >= max_iter and not _within(slot)
        if inertia < best["inertia"] or (inertia == best["inertia"] and r < best["restart"]):
            best = {"inertia": inertia, "restart": r, "centroids": c.cpu().numpy().copy()}

    shifts = torch.zeros(width, dtype=torch.float64)  # on the CPU, like the other per-slot flags

    def _within(slot: int) -> bool:
        return bool(shifts[slot] <= tol)

    with matmul.limits(), ThreadPoolExecutor(lanes, thread_name_prefix="kmeans-lane") as pool:
        while bool((slot_restart >= 0).any()):
            active = slot_restart >= 0
            w = labels.shape[1]
            # ---- assignment step: all held restarts, one product per chunk of points
            c32 = centers.to(torch.float32)
            ca = torch.empty(k, w, dim + 1, device=dev)  # cluster-major: column j·w + slot
            ca[:, :, :dim] = (-2 * c32).transpose(0, 1)
            ca[:, :, dim] = (c32 * c32).sum(2).T
            ca = ca.view(k * w, dim + 1)
            # Equal centres must tie exactly, as in scikit-learn (the first wins). A BLAS may give
            # their columns of one product different roundings (e.g. a remainder tile's kernel), so
            # a duplicate's distances are copied from its first copy's.
            earlier = torch.tril((c32.unsqueeze(2) == c32.unsqueeze(1)).all(-1), diagonal=-1)  # (w, k, k)
            dup_slot, dup_j = earlier.any(-1).nonzero(as_tuple=True)
            dup_src = earlier[dup_slot, dup_j].to(torch.int8).argmax(-1) if dup_slot.numel() else None
            fresh = (n_iter == 0) & active
            fresh_dev, active_dev = fresh.to(dev), active.to(dev)
            fresh_idx = torch.nonzero(fresh_dev).flatten()
            steady = active_dev & ~fresh_dev
            m = max(1, min(n, chunk_elements // (k * w * lanes)))
            chunks = list(range(0, n, m))

            def lane_work(lane: int) -> _Step:
                """The assignment step for every ``lanes``-th chunk of points, into this lane's
                own buffer and accumulators (lanes run in parallel; labels are row-disjoint)."""
                acc = _Step(k, w, dim, m, dev)
                for start in chunks[lane::lanes]:
                    stop = min(n, start + m)
                    dist = matmul(xa[start:stop], ca, acc.buffer[:stop - start]).view(stop - start, k, w)
                    if dup_src is not None:
                        dist[:, dup_j, dup_slot] = dist[:, dup_src, dup_slot]
                    best_d = dist.amin(1)
                    lab = labels[start:stop]
                    if fresh_idx.numel():  # a restart's first step: every point gets a cluster
                        every = fresh_idx.numel() == w
                        sub = dist if every else dist[:, :, fresh_idx]
                        first = _first_argmin(sub, best_d if every else best_d[:, fresh_idx], label_dtype)
                        lab[:, fresh_idx] = first
                        _add_assignments(xt[start:stop], x_sq[start:stop], first.long(), fresh_idx, k, matmul,
                                         acc.delta, acc.moved_into, acc.sq_delta)
                    current = dist.gather(1, lab.long().clamp_max(k - 1).unsqueeze(1)).squeeze(1)
                    pairs = ((current > best_d) & steady).nonzero()
                    if pairs.numel() == 0:
                        continue
                    point, slot = pairs[:, 0], pairs[:, 1]
                    new = dist[point, :, slot].argmin(1)  # the first minimum, as scikit-learn
                    old = lab[point, slot].long()
                    lab[point, slot] = new.to(label_dtype)
                    acc.changed_count += torch.bincount(slot, minlength=w)
                    _apply_moves(xt[start:stop], x_sq[start:stop], point, slot * k + old, slot * k + new, acc.delta,
                                 acc.moved_into, acc.moved_from, acc.sq_delta, matmul, pairs=(stop - start) * w)
                    acc.changed_pairs += int(pairs.shape[0])
                return acc

            parts = [lane_work(0)] if lanes == 1 else list(pool.map(lane_work, range(lanes)))
            for acc in parts:  # in lane order: the same sums for a given lane count
                sums += acc.delta.view(w, k, dim).double()
                counts += (acc.moved_into - acc.moved_from).view(w, k).double()
                sq += acc.sq_delta.view(w, k)
                stats["changed_pairs"] += acc.changed_pairs
            changed_count = sum(acc.changed_count for acc in parts)
            stats["steps"] += 1
            changed = changed_count.cpu()
            # ---- per restart: done, or an update step (scikit-learn's loop order)
            done_final = finishing & active
            for slot in torch.nonzero(done_final).flatten().tolist():
                finish(slot, strict=False)
            going = active & ~finishing
            n_iter[going] += 1
            strict = going & (changed == 0) & (n_iter > 1) & ~relocated
            for slot in torch.nonzero(strict).flatten().tolist():
                finish(slot, strict=True)
            update = going & ~strict
            if bool(update.any()):
                idx = torch.nonzero(update).flatten()
                on_dev = idx.to(dev)
                relocated[idx] = False
                empty = (counts[on_dev] == 0).any(1).cpu()
                for i in torch.nonzero(empty).flatten().tolist():
                    relocations += _relocate(xt, x_sq, int(idx[i]), centers, labels, sums, counts, sq, k)
                    relocated[idx[i]] = True
                held = counts[on_dev, :, None]
                new_centers = torch.where(held > 0, sums[on_dev] / held.clamp_min(1), centers[on_dev])
                shifts[idx] = ((new_centers - centers[on_dev]) ** 2).sum((1, 2)).cpu()
                centers[on_dev] = new_centers
                finishing[idx] = (shifts[idx] <= tol) | (n_iter[idx] >= max_iter)
            # ---- refill the slots of finished restarts; drop their columns when few remain
            for slot in torch.nonzero(done_final | strict).flatten().tolist():
                load(slot)
            still = slot_restart >= 0
            if 0 < int(still.sum()) < COMPACT_BELOW * w:
                keep = torch.nonzero(still).flatten()
                keep_dev = keep.to(dev)
                slot_restart, n_iter, finishing, relocated, shifts = (
                    slot_restart[keep], n_iter[keep], finishing[keep], relocated[keep], shifts[keep])
                centers, sums, counts, sq = centers[keep_dev], sums[keep_dev], counts[keep_dev], sq[keep_dev]
                labels = labels[:, keep_dev].contiguous()
    return LloydResult(out_inertia, out_iter, out_strict, out_capped, best["centroids"], best["restart"],
                       relocations, width, matmul.name, stats)


def _first_argmin(dist, best, label_dtype):
    """Per (point, restart) of ``dist`` ``(m, k, w)``: the first cluster whose distance equals
    the minimum ``best`` ``(m, w)`` (scikit-learn's choice on ties), without a slow argmin."""
    import torch

    k = dist.shape[1]
    out = torch.full(best.shape, k - 1, dtype=label_dtype, device=dist.device)
    for j in range(k - 2, -1, -1):
        out.masked_fill_(dist[:, j] == best, j)
    return out


def _add_assignments(x_chunk, sq_chunk, labels, slots, k, matmul, delta, moved_into, sq_delta) -> None:
    """Add a chunk of points to the clusters ``labels`` ``(m, f)`` of the restarts in ``slots``
    (their first step): one matrix product of the one-hot assignments with the points."""
    import torch

    m, f = labels.shape
    onehot = torch.zeros(f, k, m, device=x_chunk.device)
    onehot.scatter_(1, labels.T.unsqueeze(1), 1.0)
    rows = (slots[:, None] * k + torch.arange(k, device=x_chunk.device)).flatten()
    part = matmul.mm(onehot.view(f * k, m), x_chunk, torch.empty(f * k, x_chunk.shape[1], device=x_chunk.device))
    delta.index_add_(0, rows, part)
    flat = (slots[None, :] * k + labels).flatten()
    moved_into += torch.bincount(flat, minlength=moved_into.shape[0])
    sq_delta += torch.bincount(flat, weights=sq_chunk.repeat_interleave(f), minlength=sq_delta.shape[0])


def _apply_moves(x_chunk, sq_chunk, point, frm, to, delta, moved_into, moved_from, sq_delta, matmul, *,
                 pairs: int) -> None:
    """Move the chunk's points ``point`` from flat cluster rows ``frm`` to ``to`` (``slot·k +
    cluster``) in this step's float32 change of the sums (and in the moved counts and squared
    norms). Many moves (an early step): one product of the ±1 move matrix with the chunk's
    points; few: the moved rows added and subtracted, in destination order (cache-friendly)."""
    import torch

    moved_into += torch.bincount(to, minlength=moved_into.shape[0])
    moved_from += torch.bincount(frm, minlength=moved_from.shape[0])
    norms = sq_chunk[point]
    sq_delta.index_add_(0, to, norms)
    sq_delta.index_add_(0, frm, norms, alpha=-1)
    if point.shape[0] * DENSE_MOVES_BELOW > pairs:
        moves = torch.zeros(delta.shape[0], x_chunk.shape[0], device=x_chunk.device)
        ones = torch.ones(point.shape[0], device=x_chunk.device)
        moves.index_put_((to, point), ones, accumulate=True)
        moves.index_put_((frm, point), -ones, accumulate=True)
        delta += matmul.mm(moves, x_chunk, torch.empty_like(delta))
        return
    cpu = x_chunk.device.type == "cpu"
    for target, alpha in ((to, 1), (frm, -1)):
        target, order = torch.sort(target)
        source = point[order]
        for b in range(0, source.shape[0], CHANGE_BATCH):
            p = source[b:b + CHANGE_BATCH]
            rows = (torch.from_numpy(np.take(x_chunk.numpy(), p.numpy(), axis=0)) if cpu
                    else x_chunk.index_select(0, p))
            delta.index_add_(0, target[b:b + CHANGE_BATCH], rows, alpha=alpha)


def _relocate(xt, x_sq, slot, centers, labels, sums, counts, sq, k) -> int:
    """scikit-learn's empty-cluster rule for one restart: each empty cluster takes, in turn,
    one of the points farthest from their assigned centre (distances to the centres of the
    assignment step just made); the point's old cluster loses it. The point's label moves
    with it, so the sums keep describing the labels. Returns the clusters re-seeded."""
    import torch

    empty = torch.nonzero(counts[slot] == 0).flatten().tolist()
    lab = labels[:, slot].long()
    c = centers[slot].to(torch.float32)
    distances = ((xt - c[lab]) ** 2).sum(1)
    far = torch.from_numpy(np.argpartition(distances.cpu().numpy(), -len(empty))[:-len(empty) - 1:-1].copy())
    for cluster, point in zip(empty, far.tolist()):
        old = int(lab[point])
        row = xt[point].double()
        sums[slot, old] -= row
        counts[slot, old] -= 1
        sq[slot, old] -= x_sq[point]
        sums[slot, cluster] = row
        counts[slot, cluster] = 1
        sq[slot, cluster] = x_sq[point]
        labels[point, slot] = cluster
    return len(empty)


def torch_kmeans(x: np.ndarray, k: int, settings: KMeansSettings, device: str) -> tuple[np.ndarray, dict]:
    """Best-of-``restarts`` centroids ``(k, D)`` by :func:`batched_lloyd` on ``device``, from
    scikit-learn's initial centroids for ``settings.seed``; also returns details (iterations,
    how restarts ended, the kept restart, the restarts held at once, the matmul used)."""
    init = initial_indices(x.shape[0], k, settings.restarts, settings.seed)
    found = batched_lloyd(x, init, settings.niter, tolerance(np.asarray(x, dtype=np.float32), settings.tol),
                          device)
    iters = found.n_iter
    details = {
        "best_restart": found.best, "best_train_inertia_float32_steps": round(float(found.inertia[found.best]), 6),
        "iterations": {"mean": round(float(iters.mean()), 2), "median": float(np.median(iters)),
                       "max": int(iters.max()), "best_restart": int(iters[found.best])},
        "restarts_converged": int((~found.capped).sum()),
        "restarts_strict": int(found.strict.sum()), "restarts_capped": int(found.capped.sum()),
        "empty_cluster_reseeds": found.relocations, "restarts_at_once": found.width, "matmul": found.gemm,
    }
    return found.centroids, details


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
    ``train_accuracy``, and backend-specific counters; the accuracy's per-example
    correctness on the test split (``correct``, packed bits; the cluster-to-class matching
    is the one found on the whole test split).
    """
    from repeval.stats import pack_bits

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
    mapping = hungarian_mapping(latents.y_train, train_labels)
    details["train_accuracy"] = float(np.mean([mapping.get(int(c), -1) == y
                                               for c, y in zip(train_labels, latents.y_train)]))
    test_mapping = hungarian_mapping(latents.y_test, test_labels)
    correct = np.array([test_mapping.get(int(c), -1) for c in test_labels]) == latents.y_test
    return Result(scores=clustering_scores(latents.y_test, test_labels), details=details,
                  metric_details={"accuracy": {"correct": pack_bits(correct)}})


TASK = Task(
    "kmeans", KMeansSettings, run, label="k-means",
    summary="k-means with k = classes on whitened latents, best inertia of 1,000 restarts (the paper's); "
            "Hungarian accuracy",
    metrics=(
        Metric("accuracy", "higher", Tolerance(abs=0.005), "acc.", "%", 100, 2,
               note="Hungarian-matched clustering accuracy on the test split", headline=True, bounds=FRACTION),
        Metric("nmi", "higher", Tolerance(abs=0.005), "NMI", bounds=FRACTION),
        Metric("ari", "higher", Tolerance(abs=0.005), "ARI", bounds=ARI_BOUNDS),
    ))
