"""Frozen latents of both splits, as every latent probe reads them.

This type sits upstream of the probes and of extraction (which makes it), so neither
imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repeval.errors import UserError


@dataclass(frozen=True)
class Latents:
    """Frozen latents of both splits: ``z_*`` float32 ``(N, D)``, ``y_*`` int64 ``(N,)``.

    Inputs are validated and converted on construction (contiguous float32 / int64); a
    latent with NaN or infinite values, mismatched sizes, labels outside
    ``[0, num_classes)``, fewer than two classes among the train labels, or a test class
    that no train label has raises :class:`~repeval.errors.UserError`.
    """

    z_train: np.ndarray
    y_train: np.ndarray
    z_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise UserError(f"The probes need at least two classes; these latents have num_classes = "
                            f"{self.num_classes}. Give labels of two or more classes.")
        for split in ("train", "test"):
            z = np.ascontiguousarray(getattr(self, f"z_{split}"), dtype=np.float32)
            y = np.ascontiguousarray(getattr(self, f"y_{split}")).astype(np.int64, copy=False)
            if z.ndim != 2 or y.ndim != 1 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
                raise UserError(
                    f"{split} latents must be a non-empty (N, D) array with N labels; got latents "
                    f"{z.shape} and labels {y.shape}. Flatten each latent to one row per image."
                )
            if not np.isfinite(z).all():
                raise UserError(
                    f"The {split} latents contain NaN or infinite values; the encoder's checkpoint is "
                    "unusable for probing (retrain it, or check the input scaling)."
                )
            if y.min() < 0 or y.max() >= self.num_classes:
                raise UserError(
                    f"{split} labels must lie in [0, {self.num_classes}); found {int(y.min())}..{int(y.max())}."
                )
            object.__setattr__(self, f"z_{split}", z)
            object.__setattr__(self, f"y_{split}", y)
        present = np.unique(self.y_train)
        if len(present) < 2:
            raise UserError(f"Every train label is {int(present[0])}: the probes need at least two classes among "
                            "the train labels (with one, every clustering and classification is trivially perfect).")
        unseen = np.setdiff1d(np.unique(self.y_test), present)
        if len(unseen):
            raise UserError(f"The test labels hold class(es) {', '.join(map(str, unseen[:8].tolist()))} that no train "
                            "label has; a probe fitted on the train split cannot predict them. Every test class must "
                            "appear among the train labels.")
        if self.z_train.shape[1] != self.z_test.shape[1]:
            raise UserError(
                f"train and test latents differ in size ({self.z_train.shape[1]} vs "
                f"{self.z_test.shape[1]}); extract both splits with the same encoder and latent choice."
            )

    @property
    def dim(self) -> int:
        return int(self.z_train.shape[1])
