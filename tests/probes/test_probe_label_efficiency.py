"""Label efficiency: seeded, stratified, nested subsets; sizes a class cannot fill are
recorded; the probes' accuracies per size; bad sizes are user errors."""

import numpy as np
import pytest

from repeval.errors import UserError
from repeval.probes import Latents, resolve_settings
from repeval.probes.label_efficiency import LabelEfficiencySettings, parse_sizes, run, stratified_subsets
from repeval.stats import unpack_bits


def blobs(per_class, seed, classes=3, dim=6):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    centres = np.eye(classes, dim) * 6
    return (centres[y] + rng.normal(size=(y.size, dim))).astype(np.float32), y


def test_subsets_are_stratified_nested_and_seeded():
    y = np.repeat(np.arange(4), [30, 20, 25, 5])
    subsets = stratified_subsets(y, 4, [1, 4, 16, "all"], seed=0)
    assert [np.bincount(y[subsets[s]], minlength=4).tolist() for s in (1, 4, 16)] == [
        [1, 1, 1, 1], [4, 4, 4, 4], [16, 16, 16, 5]]  # the last class has only 5
    assert set(subsets[1]) <= set(subsets[4]) <= set(subsets[16]) and subsets["all"].size == 80
    again = stratified_subsets(y, 4, [1, 4, 16, "all"], seed=0)
    assert all(np.array_equal(subsets[s], again[s]) for s in subsets)
    assert not np.array_equal(subsets[4], stratified_subsets(y, 4, [4], seed=1)[4])


def test_accuracy_per_size_with_the_counts_used():
    z_train, y_train = blobs(40, seed=0)
    y_train = y_train.copy()
    z_test, y_test = blobs(20, seed=1)
    settings = LabelEfficiencySettings(sizes="1,8,64,all", seed=3)
    result = run(Latents(z_train, y_train, z_test, y_test, 3), settings, "cpu")
    assert list(result.scores) == ["linear@1", "knn@1", "linear@8", "knn@8", "linear@64", "knn@64",
                                   "linear@all", "knn@all"]
    assert result.scores["linear@all"] == 1.0 and result.scores["knn@all"] == 1.0
    point = result.metric_details["knn@1"]["curve"]
    assert point == {"probe": "knn", "labels_per_class": 1, "used": 3, "used_per_class": [1, 1], "k": 3}
    assert result.metric_details["linear@64"]["curve"]["used"] == 120  # 64 asked, 40 per class there
    assert result.details == {"train_per_class": [40, 40], "sizes_capped_by_class_size": [64]}
    for name, value in result.scores.items():
        correct = unpack_bits(result.metric_details[name]["correct"])
        assert correct.shape == (60,) and correct.mean() == pytest.approx(value)


def test_defaults_and_bad_settings():
    settings = resolve_settings("label_efficiency", "cpu")
    assert parse_sizes(settings.sizes) == [1, 4, 16, 64, 256, "all"] and settings.probe_names == ["linear", "knn"]
    for sizes in ("0", "1,x", "-4", "4,4", ""):
        with pytest.raises(UserError, match="label_efficiency"):
            LabelEfficiencySettings(sizes=sizes)
    with pytest.raises(UserError, match="subset of linear, knn"):
        LabelEfficiencySettings(probes="svm")
    z, y = blobs(5, seed=0)
    with pytest.raises(UserError, match="classes \\[2\\] have no train examples"):  # declared, in neither split
        run(Latents(z[y < 2], y[y < 2], z[y < 2], y[y < 2], 3), LabelEfficiencySettings(sizes="1"), "cpu")
