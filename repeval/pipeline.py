"""``repeval run``: train (or reuse) → extract → probe → store, for one spec at a time.

Scores are stored as soon as each task finishes, so an interrupted multi-task run keeps
what it computed.
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from repeval.errors import UserError
from repeval.specs import RunSpec

ONLINE_MEDIAN_OF = 20  # the paper reports the median of the last 20 online evaluations


def expand_tasks(tasks: tuple[str, ...] | list[str], dataset: str) -> list[str]:
    """``all`` → every task that applies to ``dataset``; validates names, keeps order, no repeats."""
    from repeval.probes import TASKS

    lines = dataset == "lines"
    out: list[str] = []
    for t in tasks:
        names = [n for n in TASKS if lines or n != "interpolation"] if t == "all" else [t]
        for n in names:
            if n not in TASKS:
                raise UserError(f"Unknown task {n!r}. Tasks: {', '.join(TASKS)}, or all.")
            if n == "interpolation" and not lines:
                raise UserError(f"Task 'interpolation' is the lines benchmark: it needs --dataset lines "
                                f"(got {dataset!r}).")
            if n not in out:
                out.append(n)
    return out


def online_score(history: dict[str, Any]) -> tuple[float, dict[str, Any]] | None:
    """The paper's Table 2 number: median of the last 20 online-classifier test accuracies."""
    accs = history.get("online_accuracy") or []
    if not accs:
        return None
    last = accs[-ONLINE_MEDIAN_OF:]
    return float(statistics.median(last)), {"evaluations": len(last), "at_images": history["online_images"][-len(last):]}


ONLINE_SETTINGS = {
    "protocol": "online: dense layer on the stop-gradient latent, trained alongside the autoencoder "
                "(Adam 1e-4, same batches), scored on the full test split (acai.md §5.1)",
    "aggregate": f"median of the last {ONLINE_MEDIAN_OF} evaluations",
}


def run_one(spec: RunSpec, tasks: list[str], *, dataset, device: str, workdir: Path, store,
            latent: str | None = None, overrides: dict[str, dict[str, Any]] | None = None,
            progress: bool = True, log: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Train or reuse ``spec``, probe it with ``tasks``, store and return the score rows."""
    from repeval import extract as ex
    from repeval.probes import TASKS, resolve_settings
    from repeval.store import Score
    from repeval.train import train

    checkpoint = train(spec, dataset, device, workdir, progress=progress, log=log)
    store.record_run(spec.run_id, spec.to_dict(), checkpoint.provenance, str(checkpoint.path))
    model = checkpoint.load_model(device)
    latent = model.check_latent(latent)
    write_previews(checkpoint.path, model, dataset, latent, device)
    latents = None
    for task_name in tasks:
        task = TASKS[task_name]
        task_overrides = {**_seeded(task, spec.seed), **(overrides or {}).get(task_name, {})}
        settings = resolve_settings(task_name, device, task_overrides)
        t0 = time.perf_counter()
        if task.needs_model:
            result = task.run(model, dataset, settings, device, latent)
        else:
            if latents is None:
                latents = ex.extract(checkpoint, dataset, latent, device, model=model)
            result = task.run(latents, settings, device)
        wall = time.perf_counter() - t0
        scores = [Score(task=task_name, metric=m, value=float(v), latent=latent, settings=asdict(settings),
                        details=result.details, wall_time_s=wall) for m, v in result.scores.items()]
        if task_name == "linear" and model.learned:
            online = online_score(checkpoint.history)
            if online is not None:
                scores.append(Score(task="linear", metric="accuracy_online", value=online[0], latent=latent,
                                    settings=ONLINE_SETTINGS, details=online[1]))
        store.add_scores(spec.run_id, scores)
    return store.scores(run_id=spec.run_id, latent=latent, task=tasks)


def _seeded(task, seed: int) -> dict[str, Any]:
    """Probes with a seed take the run's seed, so seeds spread probes as well as training."""
    return {"seed": seed} if any(f.name == "seed" for f in fields(task.settings)) else {}


PREVIEW_IMAGES = 8
PREVIEW_PAIRS = 4
PREVIEW_STEPS = 10


def write_previews(path: Path, model, dataset, latent: str, device: str) -> Path:
    """Reconstructions and latent interpolations of fixed test images, for the report.

    ``previews-<latent>.npz``: ``originals`` and ``reconstructions`` (8×C×32×32) and
    ``interpolations`` (4 pairs × 10 steps × C×32×32, endpoints included), uint8 in display
    scale. Pairs are test images 0↔1, 2↔3, 4↔5, 6↔7.
    """
    import torch

    from repeval.data.base import to_float
    from repeval.paths import atomic_write_bytes

    out = path / f"previews-{latent}.npz"
    if out.is_file():
        return out
    n = min(PREVIEW_IMAGES, len(dataset.test))
    with torch.no_grad():
        model.eval()
        x = to_float(dataset.test.x[:n].to(device))
        z = model.encode(x, latent)
        recon = model.decode(z, latent)
        pairs = min(PREVIEW_PAIRS, n // 2)
        za, zb = z[0:2 * pairs:2], z[1:2 * pairs:2]
        t = torch.linspace(0, 1, PREVIEW_STEPS, device=z.device).view(1, -1, 1)
        zi = (1 - t) * za[:, None] + t * zb[:, None]
        interp = model.decode(zi.reshape(-1, z.shape[1]), latent).reshape(pairs, PREVIEW_STEPS, *x.shape[1:])

    def to_uint8(t):
        return ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

    buf = io.BytesIO()
    np.savez_compressed(buf, originals=to_uint8(x), reconstructions=to_uint8(recon), interpolations=to_uint8(interp))
    atomic_write_bytes(out, buf.getvalue())
    return out
