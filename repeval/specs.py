"""RunSpec: the one frozen, validated description of a training run.

Everything downstream reads the spec; nothing re-derives it. Its digest names the run's
directory, so the same spec always finds the same checkpoint. The device is *not* part of
the spec (the same model may be trained on a GPU and probed on a laptop); it is recorded
in the run's provenance instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from repeval.devices import CPU_BUDGET, PAPER_BUDGET, default_budget  # noqa: F401  (CPU_BUDGET: public)
from repeval.errors import UserError
from repeval.ranges import check_hparam

SPEC_VERSION = 2  # 2: the online evaluations follow a schedule of the position alone (see online_eval_due)
BATCH_SIZE = 64
LEARNING_RATE = 1e-4
ONLINE_EVAL_EVERY = 2 ** 16  # images between online-classifier evaluations (paper: report_kimg=64)
ONLINE_FIRST = 2 ** 10  # the first online evaluation; then one per doubling until ONLINE_EVAL_EVERY


@dataclass(frozen=True)
class RunSpec:
    """What is trained: family, data, latent size, budget (images), seed, hyper-parameters."""

    encoder: str
    dataset: str
    latent_dim: int
    depth: int  # first-layer width of the conv stacks
    budget: int  # training images (0 for reference encoders, which are fitted, not trained)
    seed: int
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    online_eval_every: int = ONLINE_EVAL_EVERY
    hparams: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION
    # an encoder from outside repeval (repeval/external.py): the identity of its files (sha256s,
    # factory, key renames); empty for repeval's own families, and then left out of the JSON,
    # so their digests (and run directories) are the same as before this field existed
    source: dict[str, Any] = field(default_factory=dict)
    # the training precision (repeval/precision.py): "fp32" or "bf16". Left out of the JSON when
    # fp32, so fp32 runs keep the digests (and run directories) they had before this field existed
    precision: str = "fp32"

    @property
    def steps(self) -> int:
        return self.budget // self.batch_size

    def online_eval_due(self, images: int) -> bool:
        """Whether the online classifier is scored after ``images`` training images: at each
        power of two from 2^10 up to ``online_eval_every``, then every ``online_eval_every``
        images (the paper's 65,536); the trainer adds one at the end of the run. The schedule
        is a function of the position alone, never of the budget, so the evaluations of a
        shorter run are the first ones of a longer run with the same spec (its snapshots,
        :mod:`repeval.train`)."""
        every = self.online_eval_every
        if every <= 0:
            return False
        if images % every == 0:
            return True
        return ONLINE_FIRST <= images < every and images & (images - 1) == 0

    @property
    def external(self) -> bool:
        """Whether the encoder comes from outside repeval (``latents:`` or ``python:``)."""
        return bool(self.source)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["source"]:
            del d["source"]
        if d["precision"] == "fp32":
            del d["precision"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        return cls(**d)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @property
    def run_id(self) -> str:
        """Readable and unique: ``acai-mnist-256-b16384-s0-1a2b3c4d5e6f``."""
        data = re.sub(r"[^A-Za-z0-9._-]+", "_", self.dataset)[-40:]
        return f"{self.encoder}-{data}-{self.latent_dim}-b{self.budget}-s{self.seed}-{self.digest}"


def make_spec(encoder: str, dataset: str, *, latent_dim: int | None = None, budget: int | None = None,
              seed: int = 0, device: str = "cpu", hparams: dict[str, Any] | None = None,
              precision: str = "fp32") -> RunSpec:
    """Validate the user's choices and resolve every default into a :class:`RunSpec`.

    ``precision``: ``fp32``, ``bf16`` or ``auto`` (resolved for ``device``, repeval/precision.py);
    a reference encoder is fitted, not trained, and is always fp32."""
    import encoders
    from repeval import data
    from repeval import precision as precisions

    family = encoders.get(encoder)
    entry = data.get(dataset)
    overrides = dict(hparams or {})
    unknown = set(overrides) - set(family.hparams)
    if unknown:
        raise UserError(f"Encoder {encoder!r} has no hyper-parameter(s) {', '.join(sorted(unknown))}; "
                        f"it has: {', '.join(sorted(family.hparams)) or 'none'}.")
    # each value converted to its declared kind and checked against its range (repeval/ranges.py)
    overrides = {name: check_hparam(family, name, value) for name, value in overrides.items()}
    if latent_dim is not None and latent_dim < 1:
        raise UserError(f"--latent-dim {latent_dim} must be a positive number of latent values; leave it out for "
                        f"{encoder!r}'s default on {dataset!r}.")
    from encoders.registry import check_kind

    check_kind(family, dataset, entry.example)  # a family that builds no model for this kind of example
    latent_dim = family.resolve_latent_dim(entry, latent_dim)
    if not family.learned:
        if budget not in (None, 0):
            raise UserError(f"Encoder {encoder!r} is a reference encoder: it is fitted in closed form, "
                            "not trained, so --budget does not apply. Leave it out.")
        budget = 0
        precisions.check(precision)  # a bad value is still an error
        precision = "fp32"
    else:
        precision = precisions.resolve(precision, device)
        budget = default_budget(device) if budget is None else budget
        if budget < BATCH_SIZE:
            raise UserError(f"--budget {budget} is smaller than one batch ({BATCH_SIZE} images); "
                            f"give at least {BATCH_SIZE} (the paper trains on {PAPER_BUDGET:,}).")
        if budget % BATCH_SIZE:
            lower = budget // BATCH_SIZE * BATCH_SIZE
            raise UserError(f"--budget {budget} is not a whole number of batches of {BATCH_SIZE} images: training "
                            f"would see {lower:,} images and record {budget:,}. Give a multiple of {BATCH_SIZE}, "
                            f"e.g. --budget {lower} or --budget {lower + BATCH_SIZE}.")
    if seed < 0:
        raise UserError(f"--seed {seed} must be a non-negative integer.")
    return RunSpec(encoder=encoder, dataset=dataset, latent_dim=int(latent_dim), depth=entry.depth,
                   budget=int(budget), seed=int(seed), online_eval_every=ONLINE_EVAL_EVERY if budget else 0,
                   hparams=dict(sorted({**family.hparams, **overrides}.items())), precision=precision)

