"""The paper's k-means protocol on a CPU: repeval's batched Lloyd against scikit-learn.

The paper clusters with ``KMeans(n_clusters=10, init="random", n_init=1000, max_iter=1000)``
(tol 1e-4) on SVD-whitened latents. This script times, in one process and one after the
other (scikit-learn, repeval, then scikit-learn again with ``--reps 2``):

- **repeval**: ``repeval.probes.kmeans.torch_kmeans`` (the default backend) with
  ``--restarts`` (default 1,000, the paper's), ``niter`` 1,000, tol 1e-4;
- **scikit-learn**: ``KMeans(n_clusters=k, init="random", n_init=R, max_iter=1000, tol=1e-4,
  random_state=seed)`` with R = ``--sklearn-restarts`` (default 50); its time is scaled by
  restarts / R to the full count (its restarts are independent runs of one loop, so time is
  linear in them); ``--sklearn-restarts 1000`` times it whole.

Both get the same whitened float32 latents and the same thread count (``--threads``: torch,
faiss and every BLAS pool). repeval's restart *i* starts from the same centroids as
scikit-learn's restart *i* (its random init is replayed), so the figures also check
agreement: repeval's best inertia over the restarts scikit-learn ran against
scikit-learn's, and scikit-learn refitted from the centroids of repeval's overall best
restart (its inertia and iteration count against repeval's). Optionally (``--faiss-restarts``)
faiss's k-means, the earlier CPU default, for context.

Latents: ``--latents FILE.npz`` (``z_train``/``z_test`` as written by ``repeval extract``), or
by default a small ACAI trained in a temporary workdir on MNIST from ``--data-dir``
(``--budget`` images, CPU). The figures are printed, with the machine, date, library
versions, load averages and the command, and written as JSON to ``--out`` or ``$OUT``.

    python benchmarks/bench_kmeans.py --latents /tmp/z.npz --threads 2
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


def load_latents(path: str | None, data_dir: str | None, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                             np.ndarray, str]:
    if path:
        with np.load(path, allow_pickle=False) as f:
            return f["z_train"], f["y_train"], f["z_test"], f["y_test"], f"file {path}"
    import tempfile

    from repeval import extract as ex
    from repeval.specs import make_spec
    from repeval.train import train

    dataset = common.load_dataset("mnist", data_dir)
    spec = make_spec("acai", "mnist", latent_dim=256, budget=budget, seed=0)
    with tempfile.TemporaryDirectory() as work:
        checkpoint = train(spec, dataset, "cpu", Path(work), progress=False, log=lambda *a, **k: None)
        z = ex.extract(checkpoint, dataset, None, "cpu")
    return z.z_train, z.y_train, z.z_test, z.y_test, f"ACAI MNIST latent 256, {budget} training images, seed 0"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latents", help=".npz with z_train, y_train, z_test, y_test (default: train a small ACAI)")
    p.add_argument("--data-dir", help="MNIST in torchvision layout (when no --latents)")
    p.add_argument("--budget", type=int, default=2048)
    p.add_argument("--restarts", type=int, default=1000)
    p.add_argument("--sklearn-restarts", type=int, default=50)
    p.add_argument("--faiss-restarts", type=int, default=0, help="also time faiss with this many restarts")
    p.add_argument("--niter", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", default="2", help="thread count, or several comma-separated (each measured in turn)")
    p.add_argument("--sklearn-algorithms", default="lloyd",
                   help="scikit-learn's algorithms to time, comma-separated (lloyd, elkan)")
    p.add_argument("--lanes", default="",
                   help="repeval's lanes (parallel shares of an assignment step), comma-separated to time each in "
                        "turn; the first is the one compared with scikit-learn (default: the thread count)")
    p.add_argument("--reps", type=int, default=1, help="scikit-learn runs (before and after repeval when 2)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if "," in args.threads:  # each count in turn, one report
        counts = args.threads.split(",")
        rest = [a for a in (argv if argv is not None else sys.argv[1:])]
        i = rest.index("--threads")
        reports = {t: main(rest[:i] + ["--threads", t] + rest[i + 2:] + ["--out", ""]) for t in counts}
        combined = {"machine": common.machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "by_threads": reports}
        common.write_results("bench_kmeans", combined, args.out)
        return combined
    args.threads = int(args.threads)

    from sklearn.cluster import KMeans

    from repeval.probes import kmeans as km
    from repeval.probes.metrics import clustering_scores

    limiter = common.set_threads(args.threads)
    z_train, y_train, z_test, y_test, source = load_latents(args.latents, args.data_dir, args.budget)
    train, test, _ = km.whiten(z_train, z_test)
    x = np.ascontiguousarray(train, dtype=np.float32)
    k = int(max(y_train.max(), y_test.max()) + 1)
    report: dict[str, Any] = {"machine": common.machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "latents": source, "shape": list(x.shape), "k": k, "threads": args.threads,
                              "restarts": args.restarts, "sklearn_restarts": args.sklearn_restarts,
                              "niter": args.niter, "tol": 1e-4, "seed": args.seed}
    print(f"# k-means on {x.shape} whitened latents ({source}), k={k}, {args.threads} thread(s), "
          f"{report['machine']['date']}, load {common.load_average()}", flush=True)

    def scores(centroids) -> dict[str, float]:
        _, inertia = km.nearest_centroid(train, centroids, "cpu")
        labels, _ = km.nearest_centroid(test, centroids, "cpu")
        return {"inertia": inertia, **{m: round(v, 4) for m, v in clustering_scores(y_test, labels).items()}}

    def sklearn_run(algorithm: str = "lloyd") -> dict[str, Any]:
        load = common.load_average()
        start = time.perf_counter()
        fit = KMeans(n_clusters=k, init="random", n_init=args.sklearn_restarts, max_iter=args.niter, tol=1e-4,
                     random_state=args.seed, algorithm=algorithm).fit(x)
        seconds = time.perf_counter() - start
        out = {"seconds": round(seconds, 2), "scaled_s": round(seconds * args.restarts / args.sklearn_restarts, 1),
               "load_before": load, "load_after": common.load_average(), "n_iter_best": int(fit.n_iter_),
               "inertia_sklearn": float(fit.inertia_), **scores(fit.cluster_centers_)}
        print(f"scikit-learn {algorithm} n_init={args.sklearn_restarts}: {seconds:.1f} s -> {out['scaled_s']} s for "
              f"{args.restarts} restarts; best inertia {fit.inertia_:.6f} (load {load}->{out['load_after']})",
              flush=True)
        return out

    algorithms = args.sklearn_algorithms.split(",")
    by_algorithm = {alg: sklearn_run(alg) for alg in algorithms}
    runs = [by_algorithm[algorithms[0]]]
    settings = km.KMeansSettings(restarts=args.restarts, niter=args.niter, seed=args.seed)
    init = km.initial_indices(x.shape[0], k, args.restarts, args.seed)
    lane_counts = [int(v) if v else None for v in args.lanes.split(",")]
    by_lanes: dict[str, Any] = {}
    for lanes in reversed(lane_counts):  # the first (compared with scikit-learn) last, i.e. kept below
        load = common.load_average()
        start = time.perf_counter()
        found = km.batched_lloyd(x, init, args.niter, km.tolerance(x, settings.tol), "cpu", lanes=lanes)
        seconds = time.perf_counter() - start
        by_lanes[found.gemm] = {"seconds": round(seconds, 2), "load_before": load, "load_after": common.load_average(),
                                "best_inertia": float(found.inertia[found.best]), "best_restart": found.best,
                                "restart_iterations": int(found.n_iter.sum())}
        print(f"repeval {args.restarts} restarts, {found.gemm}: {seconds:.1f} s", flush=True)
    ours = {"seconds": round(seconds, 2), "load_before": load, "load_after": common.load_average(),
            "best_restart": found.best, "inertia_float32_steps": float(found.inertia[found.best]),
            "iterations": {"mean": round(float(found.n_iter.mean()), 2), "median": float(np.median(found.n_iter)),
                           "max": int(found.n_iter.max()), "total": int(found.n_iter.sum())},
            "restarts_strict": int(found.strict.sum()), "restarts_capped": int(found.capped.sum()),
            "empty_cluster_reseeds": found.relocations, "restarts_at_once": found.width, "matmul": found.gemm,
            "first_restarts_best_inertia": float(found.inertia[:args.sklearn_restarts].min()),
            "first_restarts_best": int(found.inertia[:args.sklearn_restarts].argmin()), **scores(found.centroids)}
    print(f"repeval {args.restarts} restarts: {seconds:.1f} s; best inertia {ours['inertia']:.6f} (restart "
          f"{found.best}, {ours['iterations']['total']} restart-iterations, mean {ours['iterations']['mean']}); "
          f"load {load}->{ours['load_after']}", flush=True)
    if args.reps > 1:
        runs.append(sklearn_run())
    sk = {key: runs[0][key] for key in ("inertia", "inertia_sklearn", "accuracy", "nmi", "ari", "n_iter_best")}
    sk["seconds"] = [r["seconds"] for r in runs]
    sk["scaled_s"] = [r["scaled_s"] for r in runs]
    sk["loads"] = [(r["load_before"], r["load_after"]) for r in runs]
    scaled = float(np.median(sk["scaled_s"]))
    # scikit-learn from repeval's winning restart: the same trajectory?
    refit_start = time.perf_counter()
    refit = KMeans(n_clusters=k, init=x[init[found.best]], n_init=1, max_iter=args.niter, tol=1e-4).fit(x)
    agreement = {"refit_seconds": round(time.perf_counter() - refit_start, 2), "sklearn_n_iter": int(refit.n_iter_),
                 "repeval_n_iter": int(found.n_iter[found.best]), **{f"sklearn_{m}": v for m, v in
                                                                     scores(refit.cluster_centers_).items()}}
    report.update({
        "repeval": ours, "repeval_by_lanes": by_lanes, "sklearn": sk, "sklearn_by_algorithm": by_algorithm,
        "ratio_repeval_over_sklearn_scaled_by_algorithm": {a: round(seconds / r["scaled_s"], 4)
                                                           for a, r in by_algorithm.items()},
        "ratio_repeval_over_sklearn_scaled": round(seconds / scaled, 4),
        "best_inertia_relative_gap": (ours["inertia"] - sk["inertia"]) / sk["inertia"],
        "same_restarts_best_inertia_relative_gap":
            (ours["first_restarts_best_inertia"] - sk["inertia_sklearn"]) / sk["inertia_sklearn"],
        "sklearn_from_repeval_best": agreement,
    })
    print(f"ratio repeval / scikit-learn (scaled to {args.restarts}): {report['ratio_repeval_over_sklearn_scaled']}; "
          f"best inertia repeval {ours['inertia']:.6f} vs scikit-learn (best of {args.sklearn_restarts}) "
          f"{sk['inertia']:.6f}: relative {report['best_inertia_relative_gap']:+.2e}; over the same "
          f"{args.sklearn_restarts} restarts: {report['same_restarts_best_inertia_relative_gap']:+.2e}; "
          f"scikit-learn from repeval's best start: inertia {agreement['sklearn_inertia']:.6f}, "
          f"{agreement['sklearn_n_iter']} iterations (repeval {agreement['repeval_n_iter']})", flush=True)
    if args.faiss_restarts:
        fs = km.KMeansSettings(restarts=args.faiss_restarts, niter=args.niter, seed=args.seed, backend="faiss")
        start = time.perf_counter()
        centroids, _ = km.faiss_kmeans(x, k, fs)
        report["faiss"] = {"restarts": args.faiss_restarts, "seconds": round(time.perf_counter() - start, 2),
                           **scores(centroids)}
        print(f"faiss {args.faiss_restarts} restarts: {report['faiss']}", flush=True)
    limiter.restore_original_limits()
    common.write_results("bench_kmeans", report, args.out)
    return report


if __name__ == "__main__":
    main()
