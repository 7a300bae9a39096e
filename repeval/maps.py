"""A 2-D map of a run's test latents for the report: t-SNE (scikit-learn) of a fixed,
seeded subset of the test split, written once per run and latent (``map-<latent>.npz`` in
the run directory, beside the previews) and read back here, so the layout lives in one place.

The subset is the same for every encoder of a dataset (``MAP_POINTS`` test images drawn with
``numpy.random.default_rng(MAP_SEED)``; all of them when the split is smaller), so maps of
different encoders show the same images. t-SNE: scikit-learn's ``TSNE`` with PCA
initialisation, ``random_state=MAP_SEED``, perplexity 30 (less for tiny splits) and
``MAP_ITERATIONS`` iterations, on the raw latents. It is for looking at, not a score.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

MAP_POINTS = 2000
MAP_SEED = 0
MAP_ITERATIONS = 500


def map_path(run_dir: Path, latent: str) -> Path:
    return Path(run_dir) / f"map-{latent}.npz"


def map_subset(n_test: int) -> np.ndarray:
    """Sorted indices of the test images a map shows."""
    if n_test <= MAP_POINTS:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(MAP_SEED).choice(n_test, MAP_POINTS, replace=False))


def write_map(run_dir: Path, latents, latent: str) -> Path:
    """``map-<latent>.npz``: ``xy`` float32 ``(N, 2)``, ``labels`` and ``indices`` (into the
    test split) of :func:`map_subset`. Kept when it exists (a run's latents do not change)."""
    from sklearn.manifold import TSNE

    from repeval.paths import atomic_write_bytes

    out = map_path(run_dir, latent)
    if out.is_file():
        return out
    indices = map_subset(latents.z_test.shape[0])
    z = latents.z_test[indices]
    perplexity = float(min(30.0, max(1.0, (len(indices) - 1) / 3)))
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, max_iter=MAP_ITERATIONS,
              random_state=MAP_SEED).fit_transform(z.astype(np.float64)) if len(indices) > 2 \
        else np.zeros((len(indices), 2))
    buf = io.BytesIO()
    np.savez_compressed(buf, xy=xy.astype(np.float32), labels=latents.y_test[indices].astype(np.int64),
                        indices=indices.astype(np.int64))
    atomic_write_bytes(out, buf.getvalue())
    return out


def load_map(run_dir: Path, latent: str) -> dict[str, np.ndarray] | None:
    """The arrays of ``map-<latent>.npz``, or ``None`` when missing or malformed."""
    path = map_path(run_dir, latent)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in ("xy", "labels") if k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    xy, labels = arrays.get("xy"), arrays.get("labels")
    if xy is None or labels is None or xy.ndim != 2 or xy.shape[1] != 2 or labels.shape != (xy.shape[0],) \
            or not np.isfinite(xy).all():
        return None
    return arrays
