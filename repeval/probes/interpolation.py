"""Interpolation task: the paper's synthetic lines benchmark (Table 1), for every dataset
that offers a factor bank (``lines``; ``shepard``'s tones; ``clock``'s strings).

Protocol (``docs/protocol.md`` §4.2–4.5; official ``lib/train.py: eval_custom_lines32`` and
``lib/eval.py: line_eval``):

1. Take the first ``2 · n_pairs`` examples of the dataset's test split (a seeded split, see
   :mod:`repeval.data.lines`; the paper draws fresh unseeded lines) and encode them with
   the frozen encoder (eval mode, no gradients).
2. Pair example ``i`` with example ``i + n_pairs``; interpolate the full latent in ``steps``
   steps including both endpoints, ``z_j = (z_a·(N−1−j) + z_b·j) / (N−1)`` for
   ``j = 0 … N−1`` (the official formula, ``N = steps``), and decode all
   ``n_pairs · steps`` codes. Endpoints are reconstructions.
3. :func:`interpolation_metrics` on the decoded examples against the dataset's
   :class:`~repeval.data.base.FactorBank` (lines: 10,000 true lines at angles ``k·2π/10,000``,
   :func:`repeval.data.lines.reference_bank`; shepard: 10,000 tones at chroma ``k/10,000``):

   - **Mean Distance**: the cosine distance ``1 − u·v / (‖u‖‖v‖)`` of every decoded example
     (flattened, raw values) to its nearest bank example, averaged over all examples. The
     official code takes the minimum of a full ``scipy`` ``cdist`` in float64; here a float64
     torch matmul on normalised vectors finds the same nearest example and distance (float32 is
     not enough: a correct interpolation scores about 2e-7, the rounding level of a float32
     inner product of 1,024 terms).
   - **Smoothness** per interpolation: the nearest bank examples' factors ``θ̂_1 … θ̂_N`` are
     unwrapped (``numpy.unwrap``); score = ``max_n |θ̂_{n+1} − θ̂_n| / |θ̂_N − θ̂_1| − 1/(N−1)``,
     undefined (NaN) when ``|θ̂_N − θ̂_1| < 1e-4``. The mean divides the sum of the defined
     scores by the number of **all** interpolations (undefined ones count as 0, a quirk of
     the official code kept on purpose, so the headline compares with the paper); NaN when
     every score is undefined.

   Beside them, the details that close the official metric's holes (a decoder that outputs
   one endpoint all along a path scores Mean Distance 0 and an undefined, i.e. "perfect",
   Smoothness; moving evenly the long way round scores Smoothness 0; nothing checks the ends):

   - ``smoothness_strict``: the same mean with undefined interpolations counted as 1.0 (an
     abrupt switch scores 1 − 1/(N−1) = 0.933 with 16 steps);
   - ``detour``: the path's length ``Σ|Δθ̂|`` (unwrapped steps) over the shortest arc between
     the two inputs' **true** factors, minus 1, averaged over the pairs (0 ideal; −1 for a
     constant output; about 2π/arc − 2 the long way round);
   - ``endpoint_error``: the mean circular error of the first and last steps' factors against
     the inputs' true factors (radians);
   - ``n_undefined``: how many interpolations have an undefined Smoothness.

Reference values of the official metric on hand-made 16-frame sequences between
Λ = 5π/7 and 3π/2 (``docs/protocol.md`` §4.5, reproduced by this module's tests): true lines at
evenly spaced angles 1.96e-7 / 1.7e-5; pixel cross-fade 7.22e-3 / 0.940; abrupt switch at
the midpoint 2.5e-7 / 0.933; evenly spaced the long way round 1.75e-7 / 4.4e-5. Given the
same float64 frames, distances agree with the official ``cdist`` to about 1e-15 and the
nearest lines are the same. The shepard reference rows are in :mod:`repeval.data.shepard`.

On token sequences (``clock``) the decoded examples are softmax probabilities ``P`` and the
bank is searched exactly by the dataset itself (:attr:`~repeval.data.base.FactorBank.search`,
:func:`repeval.data.clock.search`): Mean Distance is the same cosine, ``1 − ⟨P, onehot(s*)⟩ /
(‖P‖·√L)``, to the nearest valid string ``s*`` (for a one-hot ``P`` the fraction of wrong
characters), Smoothness and the details read ``s*``'s time, and three more details are stored:
``hard_distance`` (the distance of the argmax string), ``valid_fraction`` (argmax strings that
are valid) and ``edit_distance`` (normalised edit distance of the argmax string to the nearest
valid string).

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

from repeval.data.base import Dataset, FactorBank, to_float
from repeval.data.lines import reference_bank
from repeval.errors import UserError
from repeval.probes.base import NON_NEGATIVE, Metric, Result, Task, Tolerance
from repeval.ranges import POSITIVE_INT, Int, setting, validate_settings

if TYPE_CHECKING:  # annotations only: the functions import these when they run
    import torch

SMOOTHNESS_MIN_SPAN = 1e-4  # radians; below it an interpolation's smoothness is undefined
QUERY_CHUNK = 1024  # decoded examples compared with the bank at once
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


def nearest_in_bank(examples: np.ndarray, bank: np.ndarray, factors: np.ndarray,
                    device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance of each flattened example ``(M, D)`` to its nearest bank example
    ``(K, D)``, and that example's factor (float64; equal computed similarities go to the lower
    bank index)."""
    import torch

    b = torch.from_numpy(np.asarray(bank, dtype=np.float64)).to(device)
    b = b / b.norm(dim=1, keepdim=True)
    distances, nearest = [], []
    for start in range(0, examples.shape[0], QUERY_CHUNK):
        q = torch.from_numpy(np.asarray(examples[start:start + QUERY_CHUNK], dtype=np.float64)).to(device)
        q = q / q.norm(dim=1, keepdim=True)
        best, index = (q @ b.T).max(dim=1)
        distances.append((1.0 - best).cpu().numpy())
        nearest.append(index.cpu().numpy())
    return np.concatenate(distances), np.asarray(factors)[np.concatenate(nearest)]


def nearest_lines(images: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_in_bank` against the lines' 10,000-line bank (images flattened to ``(M, 1024)``)."""
    return nearest_in_bank(images, *reference_bank(), device=device)


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


def circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shorter arc between angles ``a`` and ``b`` (radians, in [0, π])."""
    d = np.mod(np.asarray(a, dtype=np.float64) - b, 2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def official_smoothness(scores: np.ndarray) -> float:
    """The official mean of per-interpolation Smoothness ``scores``: the defined ones summed
    over the number of all (an undefined one counts as 0); NaN when every one is undefined."""
    undefined = np.isnan(scores)
    return math.nan if undefined.all() else float(scores[~undefined].sum() / len(scores))


def path_details(factors: np.ndarray, true_a: np.ndarray, true_b: np.ndarray) -> dict[str, float]:
    """``detour`` and ``endpoint_error`` of interpolations whose steps' nearest-bank factors are
    ``(n_interp, n_steps)``, between inputs of true factors ``true_a`` and ``true_b`` (see the
    module docstring). A pair whose true factors coincide has no shortest arc: its detour is
    left out of the mean (NaN when every pair is such)."""
    factors = np.atleast_2d(factors)
    length = np.abs(np.diff(np.unwrap(factors, axis=-1), axis=-1)).sum(axis=-1)
    arc = circular_distance(true_a, true_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        detours = np.where(arc > 0, length / arc - 1.0, np.nan)
    ends = np.concatenate([circular_distance(factors[:, 0], true_a), circular_distance(factors[:, -1], true_b)])
    return {"detour": float(np.nanmean(detours)) if np.isfinite(detours).any() else math.nan,
            "endpoint_error": float(ends.mean())}


def interpolation_metrics(examples: np.ndarray, bank: FactorBank | tuple[np.ndarray, np.ndarray],
                          true_a: np.ndarray, true_b: np.ndarray, device: str = "cpu") -> dict[str, float]:
    """Every interpolation score of decoded interpolations ``(n_interp, n_steps, ...)`` against
    a bank (a :class:`~repeval.data.base.FactorBank` or its ``(examples, factors)``), with the
    inputs' true factors ``true_a``/``true_b`` ``(n_interp,)``: ``mean_distance``,
    ``smoothness`` (official), ``smoothness_strict``, ``detour``, ``endpoint_error`` and
    ``n_undefined``, and whatever a bank with its own search adds (``clock``: ``hard_distance``,
    ``valid_fraction``, ``edit_distance``)."""
    examples = np.asarray(examples)
    if examples.ndim < 3 or examples.shape[1] < 2:
        raise ValueError(f"expected (n_interp, n_steps >= 2, ...) examples, got {examples.shape}")
    n_interp, n_steps = examples.shape[:2]
    extra: dict[str, float] = {}
    if isinstance(bank, FactorBank) and bank.search is not None:
        distances, nearest, extra = bank.search(examples.reshape(n_interp * n_steps, *examples.shape[2:]))
    else:
        reference, factors = bank.load() if isinstance(bank, FactorBank) else bank
        flat = examples.reshape(n_interp * n_steps, -1)
        if flat.shape[1] != reference.shape[1]:
            raise ValueError(f"decoded examples have {flat.shape[1]} values, the bank's {reference.shape[1]}")
        distances, nearest = nearest_in_bank(flat, reference, factors, device)
    nearest = np.asarray(nearest).reshape(n_interp, n_steps)
    scores = smoothness_scores(nearest)
    undefined = np.isnan(scores)
    return {"mean_distance": float(distances.mean()), "smoothness": official_smoothness(scores),
            "smoothness_strict": float(np.where(undefined, 1.0, scores).mean()),
            **path_details(nearest, np.asarray(true_a), np.asarray(true_b)), "n_undefined": int(undefined.sum()),
            **extra}


def line_metrics(images: np.ndarray, device: str = "cpu") -> tuple[float, float, int]:
    """``(mean_distance, mean_smoothness, n_undefined)`` of interpolations given as
    ``(n_interp, n_steps, 32, 32)`` (or ``(n_interp, n_steps, 1, 32, 32)``) pixel arrays: the
    official lines benchmark (no true factors needed)."""
    images = np.asarray(images)
    if images.ndim < 3 or math.prod(images.shape[2:]) != IMAGE_PIXELS or images.shape[1] < 2:
        raise ValueError(f"expected (n_interp, n_steps >= 2, 32, 32) images, got {images.shape}")
    n_interp, n_steps = images.shape[:2]
    distances, angles = nearest_lines(images.reshape(n_interp * n_steps, IMAGE_PIXELS), device)
    scores = smoothness_scores(angles.reshape(n_interp, n_steps))
    return float(distances.mean()), official_smoothness(scores), int(np.isnan(scores).sum())


def interpolate(model, x: torch.Tensor, n_pairs: int, steps: int, latent: str | None) -> torch.Tensor:
    """Decoded interpolations ``(n_pairs, steps, *example)`` between the latents of
    ``x[i]`` and ``x[i + n_pairs]`` (official formula, endpoints included)."""
    import torch

    z = torch.cat([model.encode(x[i:i + DECODE_BATCH], latent) for i in range(0, x.shape[0], DECODE_BATCH)])
    z_a, z_b = z[:n_pairs], z[n_pairs:2 * n_pairs]
    j = torch.arange(steps, dtype=z.dtype, device=z.device)[None, :, None]
    codes = (z_a[:, None] * (steps - 1 - j) + z_b[:, None] * j) / (steps - 1)
    codes = codes.reshape(n_pairs * steps, -1)
    decoded = torch.cat([model.decode(codes[i:i + DECODE_BATCH], latent)
                         for i in range(0, codes.shape[0], DECODE_BATCH)])
    return decoded.reshape(n_pairs, steps, *decoded.shape[1:])


def banked_datasets() -> list[str]:
    """The registered datasets that offer the interpolation benchmark."""
    from repeval import data

    return [e.name for e in data.DATASETS.values() if TASK.applies_to(e)]


def run(model, dataset: Dataset, settings: InterpolationSettings, device: str, latent: str | None = None) -> Result:
    """Interpolation benchmark of a frozen ``model`` (already on ``device``) against the
    dataset's factor bank: ``mean_distance``, ``smoothness`` and the details
    (``smoothness_strict``, ``detour``, ``endpoint_error``, ``n_undefined``); details:
    ``n_interpolations`` and ``bank_size``."""
    import torch

    if not TASK.applies_to(dataset) or dataset.bank is None:
        raise UserError(
            f"The interpolation task measures decoded interpolations against a dataset's bank of true examples "
            f"and their factor; {dataset.name!r} has none. Use --dataset "
            f"{' or --dataset '.join(banked_datasets()) or 'lines'}."
        )
    needed = 2 * settings.n_pairs
    if len(dataset.test) < needed:
        raise UserError(f"interpolation needs {needed} test examples for n_pairs={settings.n_pairs}; "
                        f"the test split of {dataset.name!r} has {len(dataset.test)}. Lower n_pairs.")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = to_float(dataset.test.x[:needed].to(device))
            decoded = interpolate(model, x, settings.n_pairs, settings.steps, latent)
    finally:
        model.train(was_training)
    bank, factors = dataset.bank.load()
    true = np.asarray(dataset.bank.test_factors, dtype=np.float64)
    searched = dataset.bank if dataset.bank.search is not None else (bank, factors)
    scores = interpolation_metrics(decoded.double().cpu().numpy(), searched, true[:settings.n_pairs],
                                   true[settings.n_pairs:needed], device)
    return Result(scores=scores, details={"n_interpolations": settings.n_pairs, "bank_size": int(len(factors))})


TASK = Task(
    "interpolation", InterpolationSettings, run, label="Interpolation", needs_model=True,
    requires=frozenset({"factor_bank"}),
    summary="the lines benchmark on any dataset with a factor bank: realism (mean distance) and smoothness of "
            "decoded interpolations, with the details that catch constant, long-way and wrong-ended paths",
    metrics=(
        Metric("mean_distance", "lower", Tolerance(rel=0.05), "mean distance", "×10⁻³", 1000, 2,
               note="cosine distance of decoded interpolants to the nearest true example (lower is better)",
               bounds=(0.0, 2.0)),  # a cosine distance, 1 − cos, lies in [0, 2]
        Metric("smoothness", "lower", Tolerance(abs=0.01), "smoothness",
               note="largest normalised factor step minus the even step; undefined paths count as 0, as the "
                    "paper (lower is better)",
               bounds=NON_NEGATIVE),  # the largest step is at least the mean step; no upper bound (a path
        # that turns back makes a step larger than its span)
        Metric("smoothness_strict", "lower", Tolerance(abs=0.01), "strict",
               note="smoothness with undefined paths (constant output) counted as 1.0 (lower is better)",
               bounds=NON_NEGATIVE),
        Metric("detour", "none", Tolerance(abs=0.05), "detour",
               note="path length over the shortest arc between the inputs' true factors, minus 1 (0 ideal; "
                    "−1 for a constant output, large for the long way round)",
               bounds=(-1.0, None)),
        Metric("endpoint_error", "lower", Tolerance(abs=0.02), "end error", "rad",
               note="circular error of the first and last steps against the inputs' true factors (lower is better)",
               bounds=NON_NEGATIVE),  # at most π, a bound the 3-decimal display would round past
        Metric("n_undefined", "lower", Tolerance(abs=2), "undefined", decimals=0,
               note="interpolations whose factor does not move (undefined smoothness; lower is better)",
               bounds=NON_NEGATIVE),
        # token sequences only (a bank with its own search, clock)
        Metric("hard_distance", "lower", Tolerance(abs=0.01), "argmax distance", "×10⁻³", 1000, 2,
               note="text: the fraction of characters of the argmax string that differ from the nearest valid "
                    "string (lower is better)",
               bounds=(0.0, 1.0)),
        Metric("valid_fraction", "higher", Tolerance(abs=0.02), "valid",
               note="text: the fraction of decoded interpolants whose argmax string is a valid one (higher is "
                    "better)",
               bounds=(0.0, 1.0)),
        Metric("edit_distance", "lower", Tolerance(abs=0.01), "edit distance",
               note="text: normalised edit distance of the argmax string to the nearest valid string (lower is "
                    "better)",
               bounds=(0.0, 1.0)),
    ))
