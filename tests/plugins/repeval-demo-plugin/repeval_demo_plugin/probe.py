"""Nearest class-centroid accuracy of the test latents (centroids from the train latents)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repeval.probes import Metric, Result, Task, Tolerance
from repeval.ranges import FLAG, setting


@dataclass(frozen=True)
class CentroidSettings:
    normalise: bool = setting(True, FLAG, "L2-normalise the latents first")

    @classmethod
    def defaults(cls, device):
        return cls()


def run(latents, settings, device):
    z_train, z_test = latents.z_train, latents.z_test
    if settings.normalise:
        z_train = z_train / np.maximum(np.linalg.norm(z_train, axis=1, keepdims=True), 1e-12)
        z_test = z_test / np.maximum(np.linalg.norm(z_test, axis=1, keepdims=True), 1e-12)
    centroids = np.stack([z_train[latents.y_train == c].mean(0) for c in range(latents.num_classes)])
    distances = ((z_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = float((distances.argmin(1) == latents.y_test).mean())
    return Result(scores={"accuracy": accuracy}, details={"classes": latents.num_classes})


TASK = Task("centroid", CentroidSettings, run, label="Centroid", summary="nearest class-centroid accuracy",
            metrics=(Metric("accuracy", "higher", Tolerance(abs=0.01), "acc.", "%", 100, 1),))
