"""Synthetic workdirs for the report tests: a store with runs and scores, and run directories
with ``spec.json``, ``provenance.json``, ``history.json`` and ``previews-<latent>.npz``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from repeval.store import Score, Store

LATENTS = {"vae": "mean", "vqvae": "continuous", "pixels": "pixels", "pca": "components"}
PROVENANCE = {"versions": {"python": "3.11.9", "repeval": "0.1.0", "torch": "2.4.0"}, "git": "abc1234",
              "device": "cpu (x86_64, 2 threads)", "precision": "fp32", "host": "testhost",
              "time": "2025-01-01T00:00:00+00:00",
              "data": {"name": "mnist", "fingerprint": "f00d", "source": "torchvision.datasets.MNIST",
                       "verified": "md5 checked by torchvision"}}


def spec(encoder: str, dataset: str, latent_dim: int, seed: int, budget: int) -> dict[str, Any]:
    return {"encoder": encoder, "dataset": dataset, "latent_dim": latent_dim, "seed": seed, "budget": budget,
            "depth": 16, "batch_size": 64, "lr": 1e-4, "online_eval_every": 1024, "hparams": {}, "version": 1}


def run_id(encoder: str, dataset: str, latent_dim: int, seed: int, budget: int) -> str:
    """Readable and safe as a directory name, whatever the encoder and dataset names hold."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", f"{encoder}-{dataset}-{latent_dim}-b{budget}-s{seed}")


def add_run(store: Store, workdir: Path, encoder: str, dataset: str, latent_dim: int, seed: int, budget: int,
            scores: dict[tuple[str, str], float], *, provenance: dict[str, Any] | None = None,
            run_dir: bool = True, channels: int = 1, settings: dict[str, dict[str, Any]] | None = None,
            latent: str | None = None, details: dict[tuple[str, str], dict[str, Any]] | None = None) -> str:
    """Record a run with ``scores`` ((task, metric) -> value); probes seeded with the run's seed.

    With ``run_dir`` the checkpoint directory gets spec, provenance, history (learned runs)
    and a previews file; without it the recorded directory does not exist (a deleted run).
    """
    rid = run_id(encoder, dataset, latent_dim, seed, budget)
    path = workdir / "checkpoints" / rid
    prov = PROVENANCE if provenance is None else provenance
    store.record_run(rid, spec(encoder, dataset, latent_dim, seed, budget), prov, str(path))
    latent = latent or LATENTS.get(encoder, "map")
    store.add_scores(rid, [Score(task, metric, value, latent,
                                 {"seed": seed, **(settings or {}).get(task, {})},
                                 (details or {}).get((task, metric), {}))
                           for (task, metric), value in scores.items()])
    if run_dir:
        path.mkdir(parents=True, exist_ok=True)
        (path / "spec.json").write_text(json.dumps(spec(encoder, dataset, latent_dim, seed, budget)))
        (path / "provenance.json").write_text(json.dumps(prov))
        if budget:
            steps = np.arange(1, 9)
            (path / "history.json").write_text(json.dumps({
                "step": steps.tolist(), "images": (steps * 64).tolist(),
                "mse": (1.0 / steps + 0.01 * seed).tolist(), "autoencoder": (1.2 / steps).tolist(),
                "online_images": [128, 256, 384, 512], "online_accuracy": [0.2, 0.4, 0.5, 0.55 + 0.01 * seed]}))
        np.savez_compressed(path / f"previews-{latent}.npz", **previews(channels, seed))
    return rid


def blobs(centres: np.ndarray, channels: int) -> np.ndarray:
    """uint8 images (N, C, 32, 32) of a soft disc at each (row, col) centre."""
    yy, xx = np.mgrid[:32, :32]
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    img = (255 * np.exp(-d2 / 18.0)).astype(np.uint8)
    return np.repeat(img[:, None], channels, axis=1)


def previews(channels: int, seed: int) -> dict[str, np.ndarray]:
    """The arrays of a previews file: discs at fixed places, a disc moving across for interpolations."""
    centres = np.array([[8 + 2 * i, 6 + 3 * i + seed] for i in range(8)], float)
    t = np.linspace(0, 1, 10)[:, None]
    moves = np.concatenate([(1 - t) * centres[2 * p] + t * centres[2 * p + 1] for p in range(4)])
    return {"originals": blobs(centres, channels), "reconstructions": blobs(centres + 0.5, channels),
            "interpolations": blobs(moves, channels).reshape(4, 10, channels, 32, 32)}
