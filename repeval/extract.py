"""Frozen latents: the encoder in eval mode under ``no_grad``, batched, on the device.

Latents of both splits are cached in the run directory, keyed by the latent choice and a
digest of the exact weights, so a second probe of the same encoder costs no forward pass.
Extraction runs in float32 (no autocast) so latents do not depend on the device's
reduced-precision paths beyond float tolerance.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from repeval.checkpoint import Checkpoint, weights_digest
from repeval.data.base import Dataset, to_float
from repeval.devices import eval_batch_size
from repeval.errors import UserError
from repeval.latents import Latents
from repeval.paths import atomic_write_bytes


@torch.no_grad()
def encode(model, x: torch.Tensor, latent: str, device: str, batch_size: int | None = None) -> np.ndarray:
    """``model.encode`` over ``x`` (uint8 or float images) in batches → float32 (N, D)."""
    model.eval()
    batch_size = batch_size or eval_batch_size(device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i:i + batch_size].to(device, non_blocking=True))
        out.append(model.encode(xb, latent).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.latent_dim(latent)), np.float32)


def extract(checkpoint: Checkpoint, dataset: Dataset, latent: str | None, device: str,
            batch_size: int | None = None, model=None):
    """Latents of ``dataset``'s splits for the checkpoint's encoder, from cache when possible.

    Returns a :class:`repeval.latents.Latents`.
    """
    model = model if model is not None else checkpoint.load_model(device)
    latent = model.check_latent(latent)
    digest = weights_digest(model.state_dict())
    cache = checkpoint.path / "latents" / f"{latent}-{digest}-{dataset.fingerprint}.npz"
    if cache.is_file():
        cached = read_cache(cache, dataset.num_classes)
        if cached is not None:
            return cached
    z_train = encode(model, dataset.train.x, latent, device, batch_size)
    z_test = encode(model, dataset.test.x, latent, device, batch_size)
    latents = Latents(z_train, dataset.train.y.cpu().numpy(), z_test, dataset.test.y.cpu().numpy(),
                      dataset.num_classes)
    write_npz(cache, latents, {"latent": latent, "weights": digest, "data": dataset.fingerprint})
    return latents


def read_cache(path: Path, num_classes: int) -> Latents | None:
    """Cached latents, or None (with a line on stderr) when the file cannot be read: a damaged
    cache is recomputed, never trusted."""
    import sys
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in ("z_train", "y_train", "z_test", "y_test")]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        print(f"warning: the cached latents {path} cannot be read ({exc}); computing them again.", file=sys.stderr,
              flush=True)
        return None
    return Latents(*arrays, num_classes)


def write_npz(path: Path, latents, meta: dict) -> None:
    """``z_train, y_train, z_test, y_test`` plus ``meta`` (JSON text in the array ``meta``)."""
    buf = io.BytesIO()
    np.savez(buf, z_train=latents.z_train, y_train=latents.y_train, z_test=latents.z_test,
             y_test=latents.y_test, meta=np.array(json.dumps(meta, sort_keys=True)))
    atomic_write_bytes(Path(path), buf.getvalue())


def encode_inputs(model, x, *, latent=None, batch_size: int = 256) -> np.ndarray:
    """Latents of a user's module over inputs ``x`` (a tensor or array, batch first), as a
    training loop probes it (:class:`repeval.Prober`): the module in eval mode under
    ``no_grad`` while it encodes (BatchNorm statistics untouched, dropout off), its previous
    mode restored afterwards, batches moved to the device of its first parameter. ``latent``:
    a callable ``(model, x) -> z``; without it ``model.encode(x)``, else ``model(x)``.
    Returns float32 (N, D), each latent flattened."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else None
    fn = latent if latent is not None else (
        (lambda m, xb: m.encode(xb)) if callable(getattr(model, "encode", None)) else (lambda m, xb: m(xb)))
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(device, non_blocking=True)
                if dtype is not None and xb.is_floating_point():
                    xb = xb.to(dtype)
                z = fn(model, xb)
                if not isinstance(z, torch.Tensor) or z.dim() < 2 or z.shape[0] != xb.shape[0]:
                    shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                    raise UserError(f"repeval.Prober: the model's latent of a batch shaped {tuple(xb.shape)} is "
                                    f"{shape}; expected a tensor (B, D) or (B, ...), one latent per example. Pass "
                                    "latent=lambda model, x: ... to pick the latent.")
                out.append(z.flatten(1).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
