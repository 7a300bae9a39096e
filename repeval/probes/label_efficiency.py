"""Label efficiency: the linear and kNN probes fitted on few labelled train examples.

Protocol (an addition to the paper's, ``docs/protocol.md`` §8):

1. For each size in ``sizes`` (labelled train examples *per class*; ``all`` = the whole
   train split), draw a stratified subset of the train latents: each class's examples are
   shuffled once with ``numpy.random.default_rng(seed)`` and the first ``size`` are taken,
   so the subsets are nested (the 4-per-class subset contains the 1-per-class one). A class
   with fewer examples than ``size`` contributes all it has; the counts actually used are
   recorded.
2. Fit, on that subset only, the probes named in ``probes``:
   ``linear`` — the linear probe's objective (:mod:`repeval.probes.linear`: standardised
   with the subset's statistics, L2 multinomial logistic regression with ``C``, scikit-learn's
   objective) solved by scikit-learn's L-BFGS with the linear probe's ``max_iter`` and
   ``tol`` (the linear probe's own solver is preconditioned for many more examples than
   dimensions; with a few labelled examples per class that preconditioning slows it down);
   ``knn`` — the weighted kNN probe (:mod:`repeval.probes.knn`: cosine, ``k`` neighbours,
   temperature ``temperature``) with the subset as the bank; ``k`` is lowered to the bank's
   size when the bank is smaller (recorded).
3. Score accuracy on the whole test split: metric ``<probe>@<size>`` (e.g. ``linear@16``,
   ``knn@all``), stored with the subset's per-example correctness and, in the score's
   details, ``curve`` (``probe``, ``labels_per_class`` requested, ``used`` examples,
   ``used_per_class`` smallest and largest, the ``k`` used).

The stochastic part is the subset: ``repeval run --probe-seeds N`` repeats it with N seeds
on the cached latents. The metrics of the default sizes are declared (so ``repeval check``
knows their tolerances and directions); other sizes are stored and compared exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repeval.devices import is_cuda
from repeval.errors import UserError
from repeval.probes.base import FRACTION, Latents, Metric, Result, Task, Tolerance
from repeval.ranges import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Text, setting, validate_settings

PROBES = ("linear", "knn")
DEFAULT_SIZES = "1,4,16,64,256,all"
ALL = "all"


def parse_sizes(text: str) -> list[int | str]:
    """``"1,4,all"`` → ``[1, 4, "all"]``; a :class:`UserError` for anything else."""
    out: list[int | str] = []
    for part in str(text).split(","):
        part = part.strip()
        if part == ALL:
            value: int | str = ALL
        else:
            try:
                value = int(part)
            except ValueError:
                value = 0
            if value < 1:
                raise UserError(f"label_efficiency: sizes must be positive whole numbers of labelled examples per "
                                f"class or 'all', comma-separated (e.g. {DEFAULT_SIZES}); got {part!r} in {text!r}.")
        if value in out:
            raise UserError(f"label_efficiency: size {value!r} appears twice in {text!r}.")
        out.append(value)
    return out


@dataclass(frozen=True)
class LabelEfficiencySettings:
    """Sizes per class, the probes, the subset seed and the probes' own settings."""

    sizes: str = setting(DEFAULT_SIZES, Text(r"\s*(\d+|all)\s*(,\s*(\d+|all)\s*)*",
                                             "comma-separated whole numbers or all"),
                         "labelled train examples per class")
    probes: str = setting(",".join(PROBES), Text(rf"\s*({'|'.join(PROBES)})\s*(,\s*({'|'.join(PROBES)})\s*)*",
                                                 f"a comma-separated subset of {', '.join(PROBES)}"),
                          "the probes fitted on each subset")
    seed: int = setting(0, NON_NEGATIVE_INT, "seed of the labelled subsets")
    C: float = setting(1.0, POSITIVE, "the linear probe's inverse L2 penalty")
    k: int = setting(20, POSITIVE_INT, "neighbours that vote in the kNN probe")
    temperature: float = setting(0.07, POSITIVE, "T of the kNN vote weights exp(s / T)")

    def __post_init__(self) -> None:
        validate_settings(self, "label_efficiency")
        parse_sizes(self.sizes)
        names = [p.strip() for p in self.probes.split(",")]
        unknown = [p for p in names if p not in PROBES]
        if unknown or not names:
            raise UserError(f"label_efficiency: probes must be a comma-separated subset of {', '.join(PROBES)}; "
                            f"got {self.probes!r}.")

    @classmethod
    def defaults(cls, device: str) -> "LabelEfficiencySettings":
        return cls()

    @property
    def probe_names(self) -> list[str]:
        return [p.strip() for p in self.probes.split(",")]


def metric_name(probe: str, size: int | str) -> str:
    return f"{probe}@{size}"


def stratified_subsets(y: np.ndarray, num_classes: int, sizes: list[int | str], seed: int) -> dict:
    """Per size: the sorted train indices of the nested stratified subset (module docstring)."""
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]
    out = {}
    for size in sizes:
        parts = [order if size == ALL else order[:size] for order in orders]
        out[size] = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return out


def _linear(z_train, y_train, z_test, y_test, num_classes, settings, device) -> np.ndarray:
    import warnings

    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from repeval.probes.linear import LinearSettings, scale

    linear = LinearSettings(C=settings.C)
    train, test = scale(torch.from_numpy(np.asarray(z_train, dtype=np.float64)),
                        torch.from_numpy(np.asarray(z_test, dtype=np.float64)), linear.scaling)
    if np.unique(y_train).size < 2:  # one class: every prediction is that class
        return y_test == y_train[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = LogisticRegression(C=linear.C, max_iter=linear.max_iter, tol=linear.tol).fit(train.numpy(), y_train)
    return fit.predict(test.numpy()) == y_test


def _knn(z_train, y_train, z_test, y_test, num_classes, settings, device) -> tuple[np.ndarray, int]:
    from repeval.probes.knn import _prepare, ranked_classes, search_faiss, search_torch, vote

    k = min(settings.k, z_train.shape[0])
    bank, queries = _prepare(z_train, "cosine"), _prepare(z_test, "cosine")
    search = search_torch if is_cuda(device) else search_faiss
    scores, indices = (search(bank, queries, k, "cosine", device) if is_cuda(device)
                       else search(bank, queries, k, "cosine"))
    ranked = ranked_classes(vote(scores, y_train[indices], num_classes, settings.temperature))
    return ranked[:, 0] == y_test, k


def run(latents: Latents, settings: LabelEfficiencySettings, device: str) -> Result:
    """Accuracy of each probe at each size (module docstring); details: the train examples
    per class; per metric: its ``curve`` point and per-example ``correct``ness."""
    from repeval.stats import pack_bits

    sizes = parse_sizes(settings.sizes)
    num_classes = latents.num_classes
    per_class = np.bincount(latents.y_train, minlength=num_classes)
    if (per_class == 0).any():
        missing = [int(c) for c in np.flatnonzero(per_class == 0)]
        raise UserError(f"label_efficiency: classes {missing} have no train examples; every class needs one.")
    subsets = stratified_subsets(latents.y_train, num_classes, sizes, settings.seed)
    scores: dict[str, float] = {}
    extra: dict[str, dict] = {}
    for size, index in subsets.items():
        used = np.bincount(latents.y_train[index], minlength=num_classes)
        z, y = latents.z_train[index], latents.y_train[index]
        for probe in settings.probe_names:
            point = {"probe": probe, "labels_per_class": size, "used": int(index.size),
                     "used_per_class": [int(used.min()), int(used.max())]}
            if probe == "linear":
                correct = _linear(z, y, latents.z_test, latents.y_test, num_classes, settings, device)
            else:
                correct, point["k"] = _knn(z, y, latents.z_test, latents.y_test, num_classes, settings, device)
            name = metric_name(probe, size)
            scores[name] = float(correct.mean())
            extra[name] = {"curve": point, "correct": pack_bits(correct)}
    capped = [s for s in sizes if s != ALL and s > per_class.min()]
    details = {"train_per_class": [int(per_class.min()), int(per_class.max())],
               "sizes_capped_by_class_size": capped}
    return Result(scores=scores, details=details, metric_details=extra)


def _declared() -> tuple[Metric, ...]:
    metrics = []
    for probe, label in (("linear", "Labels, linear"), ("knn", "Labels, kNN")):
        for size in parse_sizes(DEFAULT_SIZES):
            metrics.append(Metric(metric_name(probe, size), "higher", Tolerance(abs=0.005),
                                  f"{size}{'' if size == ALL else '/class'}", "%", 100, 2, heading=label,
                                  note=f"the {probe} probe fitted on {size} labelled train example"
                                       f"{'s' if size != 1 else ''} per class, accuracy on the test split",
                                  bounds=FRACTION))
    return tuple(metrics)


TASK = Task(
    "label_efficiency", LabelEfficiencySettings, run, label="Labels",
    summary="linear and kNN probes fitted on 1, 4, 16, 64, 256 labelled examples per class and on all "
            "(seeded stratified subsets); accuracy per size",
    metrics=_declared())
