"""Probe speed and agreement against scikit-learn on the same real MNIST latents.

Latents (60,000 train / 10,000 test): ``--latents pca`` (default) is repeval's ``pca``
reference encoder with 256 components fitted on the train pixels; ``--latents baseline``
trains the paper's baseline autoencoder briefly (``--budget`` images, default 2^13) and
extracts its 256-d map.

- **kmeans** — repeval's probe (faiss backend, CPU default; and the torch backend) against
  ``sklearn.cluster.KMeans(init="random", n_init=R, max_iter=niter, random_state=0)`` on
  the *same whitened* train latents (``repeval.probes.kmeans.whiten``, cast to float32 as
  repeval hands them to faiss; sklearn's float32 path is its faster one), R = the restarts
  given. Reported: fit time (interleaved), and for each the train inertia of its
  centroids (computed the same way, float64), test accuracy, NMI, ARI.
- **knn** — repeval's probe (faiss ``IndexFlatIP`` on L2-normalised latents, k=20,
  exp(s/0.07) vote) against scikit-learn's brute-force cosine ``kneighbors``: search time
  (interleaved); agreement is checked exactly by voting on sklearn's neighbours with a
  numpy re-implementation of the exp(s/T) vote and comparing predictions query by query.
  The votes ``KNeighborsClassifier`` would cast on the same neighbours (uniform, and
  ``weights="distance"`` = 1/d: different votes) are listed for context.
- **linear** — repeval's probe (its CPU defaults from ``resolve_settings``) against
  ``LogisticRegression`` (lbfgs, the same C, max_iter and tol) on the same standardised
  latents, in float64 (repeval's precision) and float32: time, iterations, test accuracy.

Every library runs with the same thread count (``--threads``: torch, faiss's OpenMP and the
BLAS pools through threadpoolctl).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402


def make_latents(kind: str, dataset, device: str, budget: int):
    """Real MNIST latents as a ``repeval.probes.Latents``."""
    from encoders import build_model
    from repeval.data.base import to_float
    from repeval.extract import encode
    from repeval.probes import Latents
    from repeval.specs import make_spec
    from repeval.train import train

    if kind == "pca":
        model = build_model(make_spec("pca", "mnist", latent_dim=256), dataset.channels)
        model.fit(to_float(dataset.train.x))
    else:
        import tempfile

        spec = make_spec(kind, "mnist", latent_dim=256, budget=budget, seed=0)
        with tempfile.TemporaryDirectory() as work:
            checkpoint = train(spec, dataset, device, Path(work), progress=False, log=lambda *a, **k: None)
            model = checkpoint.load_model(device)
    latent = model.default_latent()
    return Latents(encode(model, dataset.train.x, latent, device), dataset.train.y.numpy(),
                   encode(model, dataset.test.x, latent, device), dataset.test.y.numpy(), dataset.num_classes)


def bench_kmeans(latents, restarts: int, niter: int, reps: int, with_torch: bool) -> dict[str, Any]:
    from sklearn.cluster import KMeans

    from repeval.probes import kmeans as km
    from repeval.probes.metrics import clustering_scores

    start = time.perf_counter()
    train, test, _ = km.whiten(latents.z_train, latents.z_test)
    whiten_s = time.perf_counter() - start
    train32 = np.ascontiguousarray(train, dtype=np.float32)  # what repeval hands to faiss
    k = latents.num_classes
    settings = km.KMeansSettings(restarts=restarts, niter=niter, seed=0, backend="faiss")
    fits: dict[str, Any] = {}

    def repeval_faiss():
        fits["repeval_faiss"] = km.faiss_kmeans(train, k, settings)[0]

    def repeval_torch():
        fits["repeval_torch"] = km.torch_kmeans(train, k, settings, "cpu")[0]

    def sklearn():
        fits["sklearn"] = KMeans(n_clusters=k, init="random", n_init=restarts, max_iter=niter,
                                 random_state=0).fit(train32).cluster_centers_

    contenders = {"repeval_faiss": repeval_faiss, "sklearn": sklearn}
    if with_torch:
        contenders["repeval_torch"] = repeval_torch
    timing = common.interleaved(contenders, reps=reps, warmup=0)
    out: dict[str, Any] = {"restarts": restarts, "niter": niter, "whiten_s": round(whiten_s, 3), **timing.summary()}
    for name, centroids in fits.items():
        train_labels, inertia = km.nearest_centroid(train, centroids, "cpu")
        test_labels, _ = km.nearest_centroid(test, centroids, "cpu")
        out[name] = {"inertia": round(inertia, 2),
                     **{m: round(v, 4) for m, v in clustering_scores(latents.y_test, test_labels).items()}}
    out["ratio_repeval_faiss_over_sklearn"] = round(timing.ratio("repeval_faiss", "sklearn"), 3)
    if with_torch:
        out["ratio_repeval_torch_over_sklearn"] = round(timing.ratio("repeval_torch", "sklearn"), 3)
    start = time.perf_counter()
    full = km.run(latents, settings, "cpu")
    out["repeval_run_s"] = round(time.perf_counter() - start, 3)
    out["repeval_run_scores"] = {m: round(v, 4) for m, v in full.scores.items()}
    return out


def numpy_vote(sims: np.ndarray, labels: np.ndarray, num_classes: int, temperature: float) -> np.ndarray:
    """Top-1 of the weighted vote sum_j exp(s_j / T) per class (lowest class on ties)."""
    totals = np.zeros((sims.shape[0], num_classes))
    for j in range(sims.shape[1]):
        totals[np.arange(sims.shape[0]), labels[:, j]] += np.exp(sims[:, j].astype(np.float64) / temperature)
    return totals.argmax(1)


def bench_knn(latents, reps: int) -> dict[str, Any]:
    from sklearn.neighbors import NearestNeighbors

    from repeval.probes import knn

    settings = knn.KNNSettings()
    bank = knn._prepare(latents.z_train, "cosine")
    queries = knn._prepare(latents.z_test, "cosine")
    found: dict[str, Any] = {}

    def repeval_search():
        found["repeval"] = knn.search_faiss(bank, queries, settings.k, "cosine")

    def sklearn_search():
        nn = NearestNeighbors(n_neighbors=settings.k, metric="cosine", algorithm="brute").fit(latents.z_train)
        found["sklearn"] = nn.kneighbors(latents.z_test)

    timing = common.interleaved({"repeval": repeval_search, "sklearn": sklearn_search}, reps=reps, warmup=0)
    start = time.perf_counter()
    result = knn.run(latents, settings, "cpu")
    run_s = time.perf_counter() - start

    r_scores, r_idx = found["repeval"]
    s_dist, s_idx = found["sklearn"]
    s_sims = 1.0 - s_dist
    ytr = latents.y_train
    r_pred = knn.ranked_classes(knn.vote(r_scores, ytr[r_idx], latents.num_classes, settings.temperature))[:, 0]
    s_pred = numpy_vote(s_sims, ytr[s_idx], latents.num_classes, settings.temperature)
    same_sets = np.mean([set(a) == set(b) for a, b in zip(r_idx.tolist(), s_idx.tolist())])
    out: dict[str, Any] = {
        "k": settings.k, "temperature": settings.temperature, **timing.summary(),
        "ratio_repeval_over_sklearn_search": round(timing.ratio("repeval", "sklearn"), 3),
        "repeval_run_s": round(run_s, 3),
        "repeval_accuracy": round(result.scores["accuracy"], 4),
        "numpy_vote_on_sklearn_neighbours_accuracy": round(float((s_pred == latents.y_test).mean()), 4),
        "prediction_agreement": round(float((r_pred == s_pred).mean()), 6),
        "identical_neighbour_sets": round(float(same_sets), 6),
        "max_similarity_difference": float(np.abs(np.sort(r_scores, 1) - np.sort(s_sims, 1)).max()),
    }
    # KNeighborsClassifier's own votes on the same neighbours (uniform; weights="distance" = 1/d)
    for weights, w in (("uniform", np.ones_like(s_dist)), ("distance", 1.0 / np.maximum(s_dist, 1e-12))):
        totals = np.zeros((len(s_idx), latents.num_classes))
        np.add.at(totals, (np.arange(len(s_idx))[:, None], ytr[s_idx]), w)
        out[f"sklearn_{weights}_vote_accuracy"] = round(float((totals.argmax(1) == latents.y_test).mean()), 4)
    return out


def bench_linear(latents, reps: int) -> dict[str, Any]:
    import dataclasses

    from sklearn.linear_model import LogisticRegression

    from repeval.probes import TASKS, resolve_settings

    settings = resolve_settings("linear", "cpu")
    z_train = latents.z_train.astype(np.float64)
    mean, std = z_train.mean(0), z_train.std(0)
    std = np.where(std > 0, std, 1.0)
    x64, xte64 = (z_train - mean) / std, (latents.z_test - mean) / std  # repeval's "standard" scaling
    x32, xte32 = x64.astype(np.float32), xte64.astype(np.float32)
    acc: dict[str, float] = {}
    iters: dict[str, int] = {}

    def repeval_linear():
        r = TASKS["linear"].run(latents, settings, "cpu")
        acc["repeval"], iters["repeval"] = r.scores["accuracy"], r.details.get("iterations")

    def sklearn(x, xt, name):
        def fit():
            clf = LogisticRegression(C=getattr(settings, "C", 1.0), max_iter=getattr(settings, "max_iter", 1000),
                                     tol=getattr(settings, "tol", 1e-4)).fit(x, latents.y_train)
            acc[name], iters[name] = float(clf.score(xt, latents.y_test)), int(clf.n_iter_.max())
        return fit

    timing = common.interleaved({"repeval": repeval_linear, "sklearn_float64": sklearn(x64, xte64, "sklearn_float64"),
                                 "sklearn_float32": sklearn(x32, xte32, "sklearn_float32")}, reps=reps, warmup=0)
    return {**timing.summary(),
            "ratio_repeval_over_sklearn_float64": round(timing.ratio("repeval", "sklearn_float64"), 3),
            "ratio_repeval_over_sklearn_float32": round(timing.ratio("repeval", "sklearn_float32"), 3),
            "accuracy": {k: round(v, 4) for k, v in acc.items()}, "iterations": iters,
            "settings": {"repeval": dataclasses.asdict(settings),
                         "sklearn": "LogisticRegression(lbfgs, same C, max_iter and tol) on the same standardised "
                                    "latents, float64 and float32"}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="kmeans,knn,linear")
    p.add_argument("--latents", default="pca", help="pca (default) or a learned family, e.g. baseline")
    p.add_argument("--budget", type=int, default=2 ** 13, help="training images for a learned family")
    p.add_argument("--restarts", type=int, help="k-means restarts (default: quick 5, full 20 = the CPU default)")
    p.add_argument("--niter", type=int, default=100)
    p.add_argument("--reps", type=int, help="interleaved repetitions (default: quick 2, full 3)")
    p.add_argument("--full", action="store_true")
    p.add_argument("--quick", action="store_true", help="the default")
    p.add_argument("--torch-kmeans", action="store_true", help="also time the torch k-means backend on CPU")
    p.add_argument("--threads", type=int, default=1, help="for every library (default 1: see bench_threads.py)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir")
    p.add_argument("--out")
    args = p.parse_args(argv)
    reps = args.reps or (3 if args.full else 2)
    restarts = args.restarts or (20 if args.full else 5)
    limiter = common.set_threads(args.threads)
    dataset = common.load_dataset(args.dataset, args.data_dir)
    start = time.perf_counter()
    latents = make_latents(args.latents, dataset, "cpu", args.budget)
    report: dict[str, Any] = {"machine": common.machine(), "latents": args.latents,
                              "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "shape": {"train": list(latents.z_train.shape), "test": list(latents.z_test.shape)},
                              "latents_s": round(time.perf_counter() - start, 2), "threads": args.threads}
    print(f"# probes on {args.latents} latents {latents.z_train.shape}/{latents.z_test.shape}, "
          f"{args.threads} thread(s), load {common.load_average()}")
    tasks = args.tasks.split(",")
    if "kmeans" in tasks:
        r = report["kmeans"] = bench_kmeans(latents, restarts, args.niter, reps, args.torch_kmeans)
        print(f"kmeans R={restarts}: {r['median_s']} s  repeval_faiss/sklearn={r['ratio_repeval_faiss_over_sklearn']}  "
              f"faiss={r['repeval_faiss']}  sklearn={r['sklearn']}  (load {r['load_before']}->{r['load_after']})",
              flush=True)
    if "knn" in tasks:
        r = report["knn"] = bench_knn(latents, reps)
        print(f"knn search: {r['median_s']} s  repeval/sklearn={r['ratio_repeval_over_sklearn_search']}  "
              f"acc repeval={r['repeval_accuracy']} "
              f"numpy-vote-on-sklearn={r['numpy_vote_on_sklearn_neighbours_accuracy']}"
              f"  agreement={r['prediction_agreement']}  (load {r['load_before']}->{r['load_after']})", flush=True)
    if "linear" in tasks:
        r = report["linear"] = bench_linear(latents, reps)
        print(f"linear: {r['median_s']} s  repeval/sklearn64={r['ratio_repeval_over_sklearn_float64']}  "
              f"repeval/sklearn32={r['ratio_repeval_over_sklearn_float32']}  acc={r['accuracy']}  "
              f"iters={r['iterations']}"
              f"  (load {r['load_before']}->{r['load_after']})", flush=True)
    limiter.restore_original_limits()
    common.write_results("bench_probes", report, args.out)
    return report


if __name__ == "__main__":
    main()
