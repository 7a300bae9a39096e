"""Previews of a run for the report: reconstructions and latent interpolations of fixed
test examples, written once per run and latent (``previews-<latent>.npz`` in the run
directory) and read back here too, so the file's layout is defined in one place.

Images are stored as uint8 in display scale; 1-D signals as float16 samples in their own
scale (the report draws them as waveforms, :func:`repeval.report.figures.waveform_tiles`);
token sequences as float16 probabilities (one-hot originals, softmax decodings) with their
``symbols``, the ``pad`` id where the dataset has one, and, where the dataset's bank can name
it, the nearest valid string of every decoding as token ids (``nearest_reconstructions``,
``nearest_interpolations``): the report shows them as text (:func:`repeval.report.figures.text_previews`)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

PREVIEW_KEYS = ("originals", "reconstructions", "interpolations")
TEXT_KEYS = ("symbols", "pad", "nearest_reconstructions", "nearest_interpolations")
PREVIEW_IMAGES = 8
PREVIEW_PAIRS = 4
PREVIEW_STEPS = 10


def preview_path(run_dir: Path, latent: str) -> Path:
    return Path(run_dir) / f"previews-{latent}.npz"


def write_previews(path: Path, model, dataset, latent: str, device: str) -> Path:
    """Reconstructions and latent interpolations of fixed test images, for the report.

    ``previews-<latent>.npz``: ``originals`` and ``reconstructions`` (8×C×32×32, or 8×C×L
    for signals) and ``interpolations`` (4 pairs × 10 steps × the example's shape, endpoints
    included): images as uint8 in display scale, signals as float16. Pairs are test examples
    0↔1, 2↔3, 4↔5, 6↔7.
    """
    import torch

    from repeval.data.base import to_float
    from repeval.paths import atomic_write_bytes

    out = preview_path(path, latent)
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

    def stored(t):
        if x.dim() == 3:  # signals: their own scale, at half precision
            return t.float().clamp(-65504, 65504).to(torch.float16).cpu().numpy()
        return ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

    buf = io.BytesIO()
    text = {}
    if getattr(dataset, "symbols", None) is not None:
        text = {"symbols": np.array(dataset.symbols), "pad": np.int64(dataset.info.get("pad", -1))}
        nearest = getattr(dataset.bank, "nearest_tokens", None) if dataset.bank is not None else None
        if nearest is not None:
            text["nearest_reconstructions"] = nearest(recon.double().cpu().numpy()).astype(np.int16)
            text["nearest_interpolations"] = nearest(interp.reshape(-1, *x.shape[1:]).double().cpu().numpy()
                                                     ).astype(np.int16).reshape(pairs, PREVIEW_STEPS, -1)
    np.savez_compressed(buf, originals=stored(x), reconstructions=stored(recon), interpolations=stored(interp),
                        **text)
    atomic_write_bytes(out, buf.getvalue())
    return out


def load_previews(run_dir: Path, latent: str) -> dict[str, np.ndarray] | None:
    """The arrays of ``<run_dir>/previews-<latent>.npz`` (see :func:`write_previews`),
    or ``None`` when the file is missing, unreadable or neither uint8 images of 1 or 3 channels
    (``originals``/``reconstructions`` N×C×H×W, ``interpolations`` pairs×steps×C×H×W) nor
    float16 signals (N×C×L, pairs×steps×C×L), or float16 token probabilities (N×V×L) with
    their ``symbols`` (then returned with the text arrays too)."""
    path = preview_path(run_dir, latent)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in PREVIEW_KEYS if k in f.files}
            text = {k: np.asarray(f[k]) for k in TEXT_KEYS if k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if len(arrays) != len(PREVIEW_KEYS) or any(a.size == 0 for a in arrays.values()):
        return None
    shape = arrays["originals"].shape
    same = (arrays["reconstructions"].shape == shape and arrays["interpolations"].ndim == len(shape) + 1
            and arrays["interpolations"].shape[2:] == shape[1:])
    images = len(shape) == 4 and shape[1] in (1, 3) and all(a.dtype == np.uint8 for a in arrays.values())
    signals = (len(shape) == 3 and all(a.dtype == np.float16 and np.isfinite(a).all() for a in arrays.values()))
    if signals and "symbols" in text:  # token sequences: probabilities over the named symbols
        symbols = text["symbols"]
        if symbols.ndim != 1 or symbols.dtype.kind != "U" or len(symbols) != shape[1]:
            return None
        return {**arrays, **text} if same else None
    return arrays if same and (images or signals) else None
