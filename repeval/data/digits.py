"""``digits``: scikit-learn's bundled 8×8 handwritten digits, a real dataset with no network.

Rule (fixed, recorded in provenance): the 1,797 images (values 0–16) are scaled to uint8
as ``round(v·255/16)``, up-sampled 8→32 with bilinear interpolation
(``torch.nn.functional.interpolate``, ``align_corners=False``) and rounded back to uint8;
split stratified by label into 1,257 train / 540 test images with
``sklearn.model_selection.train_test_split(test_size=0.3, random_state=0)``.
"""

from __future__ import annotations

import numpy as np

from repeval.data.base import Dataset, make_dataset
from repeval.data.registry import DataOptions, DatasetEntry

RULE = ("8x8 values 0-16 -> uint8 round(v*255/16); bilinear 8->32 (align_corners=False), rounded; "
        "stratified train_test_split(test_size=0.3, random_state=0)")


def load_digits_dataset(options: DataOptions) -> Dataset:
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x8 = np.rint(bunch.images * (255.0 / 16.0)).astype(np.float32)[:, None]  # N×1×8×8
    x32 = F.interpolate(torch.from_numpy(x8), size=(32, 32), mode="bilinear", align_corners=False)
    x = x32.round().clamp_(0, 255).to(torch.uint8).numpy()
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    info = {"source": "sklearn.datasets.load_digits (bundled with scikit-learn)",
            "verified": "bundled with the installed scikit-learn", "rule": RULE}
    return make_dataset("digits", x_train, y_train, x_test, y_test, num_classes=10, info=info)


ENTRY = DatasetEntry(
    "digits", "scikit-learn's 8x8 digits up-sampled to 32x32 (offline, small)", 1, 10, 1_257, 540,
    depth=16, latent_dims=(256, 32, 1024), loader=load_digits_dataset,
    locate=lambda options: "bundled with scikit-learn", generated=True,
)
