"""The probes' public API: the built-in tasks, settings resolution, latent validation."""

from dataclasses import asdict

import numpy as np
import pytest

from repeval.errors import UserError
from repeval.probes import TASKS, Latents, resolve_settings


def test_registry():
    assert {name: tuple(m.name for m in task.metrics) for name, task in TASKS.items()} == {
        "linear": ("accuracy_online", "accuracy"),
        "kmeans": ("accuracy", "nmi", "ari"),
        "knn": ("accuracy",),
        "interpolation": ("mean_distance", "smoothness", "smoothness_strict", "detour", "endpoint_error",
                          "n_undefined", "hard_distance", "valid_fraction", "edit_distance"),
        "label_efficiency": tuple(f"{probe}@{size}" for probe in ("linear", "knn")
                                  for size in ("1", "4", "16", "64", "256", "all")),
    }
    assert [name for name, task in TASKS.items() if task.needs_model] == ["interpolation"]


# settings, metric declarations and runs of every registered task: test_probe_contract.py


def test_kmeans_defaults_are_the_papers_protocol_on_every_device():
    for device in ("cpu", "cuda:0"):
        assert asdict(resolve_settings("kmeans", device)) == {
            "restarts": 1000, "niter": 1000, "tol": 1e-4, "seed": 0, "backend": "torch", "whiten": True}


def test_overrides_are_converted_and_checked():
    settings = resolve_settings("kmeans", "cpu", {"restarts": "5", "backend": "torch", "whiten": "false"})
    assert (settings.restarts, settings.backend, settings.whiten) == (5, "torch", False)
    assert resolve_settings("knn", "cpu", {"temperature": "0.1", "k": 5}).temperature == 0.1
    linear_c = resolve_settings("linear", "cpu", {"C": 1}).C
    assert linear_c == 1.0 and isinstance(linear_c, float)
    with pytest.raises(UserError, match="known settings"):
        resolve_settings("knn", "cpu", {"neighbours": 5})
    with pytest.raises(UserError, match="k must be an integer"):
        resolve_settings("knn", "cpu", {"k": "five"})
    with pytest.raises(UserError, match="backend"):
        resolve_settings("kmeans", "cpu", {"backend": "sklearn"})
    with pytest.raises(UserError, match="Known tasks"):
        resolve_settings("svm", "cpu")


def test_latents_are_validated_and_converted():
    z = Latents(np.zeros((3, 2)), np.array([0, 1, 1], dtype=np.int32), np.ones((1, 2)), [1], num_classes=2)
    assert z.z_train.dtype == np.float32 and z.y_train.dtype == np.int64 and z.y_test.dtype == np.int64
    assert z.dim == 2
    with pytest.raises(UserError, match="NaN"):
        Latents(np.full((3, 2), np.nan), [0, 1, 1], np.ones((1, 2)), [1], num_classes=2)
    with pytest.raises(UserError, match=r"\[0, 2\)"):
        Latents(np.zeros((3, 2)), [0, 1, 2], np.ones((1, 2)), [1], num_classes=2)
    with pytest.raises(UserError, match="differ in size"):
        Latents(np.zeros((3, 2)), [0, 1, 1], np.ones((1, 3)), [1], num_classes=2)
    with pytest.raises(UserError, match="one row per image"):
        Latents(np.zeros((3, 2, 2)), [0, 1, 1], np.ones((1, 2)), [1], num_classes=2)


def test_latents_need_two_train_classes_and_every_test_class_in_train():
    """One class makes k-means' NMI and ARI 1.0 and every classifier perfect; a test class no
    train label has can never be predicted. Both are refused, never scored."""
    with pytest.raises(UserError, match="at least two classes; these latents have num_classes = 1"):
        Latents(np.zeros((3, 2)), [0, 0, 0], np.ones((1, 2)), [0], num_classes=1)
    with pytest.raises(UserError, match="Every train label is 1: the probes need at least two classes"):
        Latents(np.zeros((3, 2)), [1, 1, 1], np.ones((1, 2)), [1], num_classes=3)
    with pytest.raises(UserError, match=r"test labels hold class\(es\) 2 that no train label has"):
        Latents(np.zeros((3, 2)), [0, 1, 1], np.ones((2, 2)), [1, 2], num_classes=3)
