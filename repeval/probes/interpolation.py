"""Interpolation task: the paper's synthetic lines benchmark (Table 1).

Protocol (``docs/protocol.md`` §4.2–4.5; official ``lib/train.py: eval_custom_lines32`` and
``lib/eval.py: line_eval``):

1. Take the first ``2 · n_pairs`` images of the ``lines`` test split (a seeded split, see
   :mod:`repeval.data.lines`; the paper draws fresh unseeded lines) and encode them with
   the frozen encoder (eval mode, no gradients).
2. Pair image ``i`` with image ``i + n_pairs``; interpolate the full latent in ``steps``
   steps including both endpoints, ``z_j = (z_a·(N−1−j) + z_b·j) / (N−1)`` for
   ``j = 0 … N−1`` (the official formula, ``N = steps``), and decode all
   ``n_pairs · steps`` codes. Endpoints are reconstructions.
3. :func:`line_metrics` on the decoded images:

   - **Mean Distance**: the cosine distance ``1 − u·v / (‖u‖‖v‖)`` of every decoded image
     (flattened, raw [-1, 1] pixels) to its nearest line of the 10,000-line bank
     (:func:`repeval.data.lines.reference_bank`, angles ``k·2π/10,000``), averaged over
     all images. The official code takes the minimum of a full ``scipy`` ``cdist`` in
     float64; here a float64 torch matmul on normalised vectors finds the same nearest
     line and distance (float32 is not enough: a correct interpolation scores about 2e-7,
     the rounding level of a float32 inner product of 1,024 terms).
   - **Smoothness** per interpolation: the nearest lines' angles ``Λ̂_1 … Λ̂_N`` are
     unwrapped (``numpy.unwrap``); score = ``max_n |Λ̂_{n+1} − Λ̂_n| / |Λ̂_N − Λ̂_1| − 1/(N−1)``,
     undefined (NaN) when ``|Λ̂_N − Λ̂_1| < 1e-4``. The mean divides the sum of the defined
     scores by the number of **all** interpolations (undefined ones count as 0, a quirk of
     the official code kept on purpose); NaN when every score is undefined. The number of
     undefined interpolations is reported beside it.

Reference values of the official metric on hand-made 16-frame sequences between
Λ = 5π/7 and 3π/2 (``docs/protocol.md`` §4.5, reproduced by this module's tests): true lines at
evenly spaced angles 1.96e-7 / 1.7e-5; pixel cross-fade 7.22e-3 / 0.940; abrupt switch at
the midpoint 2.5e-7 / 0.933; evenly spaced the long way round 1.75e-7 / 4.4e-5. Given the
same float64 frames, distances agree with the official ``cdist`` to about 1e-15 and the
nearest lines are the same.

Ties: an image symmetric about an axis that the bank's lines are mirrored about (the
cross-fade's frames are dominated by the vertical line at 3π/2) is exactly equidistant from
two mirror-image bank lines. Float64 rounding then picks one, in the official code and
here alike, so such a sequence's smoothness can take either of two values (0.940 or 0.921
for the cross-fade, e.g. when the frames are computed in float32). Decoder outputs are not
exactly symmetric, so real scores do not meet this.

Settings recorded: ``n_pairs`` (256) and ``steps`` (16), the paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from repeval.data.base import Dataset, to_float
from repeval.data.lines import BANK_SIZE, reference_bank
from repeval.errors import UserError
from repeval.probes.base import NON_NEGATIVE, Metric, Result, Task, Tolerance
from repeval.ranges import POSITIVE_INT, Int, setting, validate_settings

if TYPE_CHECKING:  # annotations only: the functions import these when they run
    import torch

SMOOTHNESS_MIN_SPAN = 1e-4  # radians; below it an interpolation's smoothness is undefined
QUERY_CHUNK = 1024  # decoded images compared with the bank at once
DECODE_BATCH = 256
IMAGE_PIXELS = 32 * 32


@dataclass(frozen=True)
class InterpolationSettings:
    """Lines benchmark size: ``n_pairs`` interpolations of ``steps`` images each."""

    n_pairs: int = setting(256, POSITIVE_INT, "interpolations; each needs two test lines")
    steps: int = setting(16, Int(2), "images per interpolation, endpoints included")

    def __post_init__(self) -> None:
        validate_settings(self, "interpolation")

    @classmethod
    def defaults(cls, device: str) -> "InterpolationSettings":
        return cls()


def nearest_lines(images: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance of each flattened image ``(M, 1024)`` to its nearest bank line, and
    that line's angle (float64; equal computed similarities go to the lower bank index)."""
    import torch

    bank, angles = reference_bank()
    b = torch.from_numpy(bank).to(device)
    b = b / b.norm(dim=1, keepdim=True)
    distances, nearest = [], []
    for start in range(0, images.shape[0], QUERY_CHUNK):
        q = torch.from_numpy(np.asarray(images[start:start + QUERY_CHUNK], dtype=np.float64)).to(device)
        q = q / q.norm(dim=1, keepdim=True)
        best, index = (q @ b.T).max(dim=1)
        distances.append((1.0 - best).cpu().numpy())
        nearest.append(index.cpu().numpy())
    return np.concatenate(distances), angles[np.concatenate(nearest)]


def smoothness_scores(angles: np.ndarray) -> np.ndarray:
    """Smoothness of each interpolation from its nearest-line angles ``(n_interp, n_steps)``;
    NaN where the unwrapped end-to-end change is below 1e-4 rad."""
    angles = np.unwrap(np.atleast_2d(angles), axis=-1)
    steps = np.abs(np.diff(angles, axis=-1))
    span = np.abs(angles[:, -1] - angles[:, 0])
    undefined = span < SMOOTHNESS_MIN_SPAN
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = steps.max(axis=-1) / span - 1.0 / (angles.shape[1] - 1)
    scores[undefined] = np.nan
    return scores


def line_metrics(images: np.ndarray, device: str = "cpu") -> tuple[float, float, int]:
    """``(mean_distance, mean_smoothness, n_undefined)`` of interpolations given as
    ``(n_interp, n_steps, 32, 32)`` (or ``(n_interp, n_steps, 1, 32, 32)``) pixel arrays."""
    images = np.asarray(images)
    if images.ndim < 3 or math.prod(images.shape[2:]) != IMAGE_PIXELS or images.shape[1] < 2:
        raise ValueError(f"expected (n_interp, n_steps >= 2, 32, 32) images, got {images.shape}")
    n_interp, n_steps = images.shape[:2]
    distances, angles = nearest_lines(images.reshape(n_interp * n_steps, IMAGE_PIXELS), device)
    scores = smoothness_scores(angles.reshape(n_interp, n_steps))
    undefined = np.isnan(scores)
    smoothness = math.nan if undefined.all() else float(scores[~undefined].sum() / n_interp)
    return float(distances.mean()), smoothness, int(undefined.sum())


def interpolate(model, x: torch.Tensor, n_pairs: int, steps: int, latent: str | None) -> torch.Tensor:
    """Decoded interpolations ``(n_pairs, steps, C, 32, 32)`` between the latents of
    ``x[i]`` and ``x[i + n_pairs]`` (official formula, endpoints included)."""
    import torch

    z = torch.cat([model.encode(x[i:i + DECODE_BATCH], latent) for i in range(0, x.shape[0], DECODE_BATCH)])
    z_a, z_b = z[:n_pairs], z[n_pairs:2 * n_pairs]
    j = torch.arange(steps, dtype=z.dtype, device=z.device)[None, :, None]
    codes = (z_a[:, None] * (steps - 1 - j) + z_b[:, None] * j) / (steps - 1)
    codes = codes.reshape(n_pairs * steps, -1)
    images = torch.cat([model.decode(codes[i:i + DECODE_BATCH], latent)
                        for i in range(0, codes.shape[0], DECODE_BATCH)])
    return images.reshape(n_pairs, steps, *images.shape[1:])


def run(model, dataset: Dataset, settings: InterpolationSettings, device: str, latent: str | None = None) -> Result:
    """Lines benchmark of a frozen ``model`` (already on ``device``): ``mean_distance`` and
    ``smoothness``; details: ``n_undefined`` smoothness scores, ``n_interpolations``, ``bank_size``."""
    import torch

    if not TASK.applies_to(dataset):
        raise UserError(
            f"The interpolation task measures how realistic decoded interpolations of lines are; "
            f"{dataset.name!r} has no line angles to measure against. Use --dataset lines."
        )
    needed = 2 * settings.n_pairs
    if len(dataset.test) < needed:
        raise UserError(f"interpolation needs {needed} test lines for n_pairs={settings.n_pairs}; "
                        f"the test split has {len(dataset.test)}. Lower n_pairs.")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = to_float(dataset.test.x[:needed].to(device))
            images = interpolate(model, x, settings.n_pairs, settings.steps, latent)
    finally:
        model.train(was_training)
    mean_distance, smoothness, undefined = line_metrics(images.double().cpu().numpy(), device)
    return Result(
        scores={"mean_distance": mean_distance, "smoothness": smoothness},
        details={"n_undefined": undefined, "n_interpolations": settings.n_pairs, "bank_size": BANK_SIZE},
    )


TASK = Task(
    "interpolation", InterpolationSettings, run, label="Lines", needs_model=True,
    requires=frozenset({"line_angles"}),
    summary="the lines benchmark: realism (mean distance) and smoothness of decoded interpolations",
    metrics=(
        Metric("mean_distance", "lower", Tolerance(rel=0.05), "mean distance", "×10⁻³", 1000, 2,
               note="cosine distance of decoded interpolants to the nearest true line (lower is better)",
               bounds=(0.0, 2.0)),  # a cosine distance, 1 − cos, lies in [0, 2]
        Metric("smoothness", "lower", Tolerance(abs=0.01), "smoothness",
               note="largest normalised angle step minus the even step (lower is better)",
               bounds=NON_NEGATIVE),  # the largest step is at least the mean step; no upper bound (a path
        # that turns back makes a step larger than its span)
    ))
