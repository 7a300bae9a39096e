"""`latents:FILE.npz`: users' embeddings probed like any run, and every bad file refused.

Every bad input exits 2 with one paragraph naming the file, what is wrong and the fix, and
stores nothing (``Cli.fails``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

RUN = ("run", "--task", "linear", "--task", "knn")


def test_embeddings_are_probed_stored_and_named_after_the_file(cli, embeddings, digits_arrays):
    path = embeddings("proj12.npz")
    rows = cli.json(*RUN, "--encoder", f"latents:{path}", "--json")  # the dataset comes from the meta
    assert {(r["encoder"], r["dataset"], r["latent"], r["latent_dim"], r["budget"], r["task"]) for r in rows} == {
        ("proj12", "digits", "embedding", 12, 0, "linear"), ("proj12", "digits", "embedding", 12, 0, "knn")}
    assert all(0.5 < r["value"] <= 1 for r in rows)  # a random projection of digits separates them well
    assert cli.json("results", "--format", "json") == rows
    (run_dir,) = (cli.workdir / "checkpoints").iterdir()
    spec = json.loads((run_dir / "spec.json").read_text())
    provenance = json.loads((run_dir / "provenance.json").read_text())
    external = provenance["external"]
    from repeval.paths import file_digest

    assert spec["source"] == {"kind": "latents", "sha256": file_digest(path)} and spec["encoder"] == "proj12"
    assert external["file"] == str(path.resolve()) and external["trained_by"] == "external"
    assert external["shapes"]["z_train"] == [len(digits_arrays[1]), 12] and external["dtypes"]["z_train"] == "float64"
    assert external["meta"] == {"dataset": "digits", "encoder": "projection"}
    assert "labels equal to the registered dataset 'digits'" in provenance["data"]["verified"]


def test_name_and_a_changed_file_make_a_different_run(cli, embeddings, digits_arrays):
    path = embeddings("mine.npz")
    first = cli.json(*RUN, "--encoder", f"latents:{path}", "--dataset", "digits", "--name", "ours", "--json")
    assert {r["encoder"] for r in first} == {"ours"}
    z = digits_arrays[0] @ np.random.default_rng(1).normal(size=(digits_arrays[0].shape[1], 12))
    embeddings("mine.npz", z_train=z)  # the same file name, other contents
    second = cli.json(*RUN, "--encoder", f"latents:{path}", "--dataset", "digits", "--name", "ours", "--json")
    assert {r["run_id"] for r in first}.isdisjoint({r["run_id"] for r in second})
    assert {r["encoder"] for r in second} == {"ours"}


def test_a_name_that_is_no_registered_dataset_groups_without_checking_labels(cli, embeddings):
    y = np.arange(30) % 3
    path = embeddings(z_train=np.random.default_rng(0).normal(size=(30, 4)), y_train=y,
                      z_test=np.random.default_rng(1).normal(size=(30, 4)), y_test=y, meta=None)
    rows = cli.json("run", "--task", "all", "--encoder", f"latents:{path}", "--dataset", "my-cells", "--json")
    assert {r["dataset"] for r in rows} == {"my-cells"}
    assert {r["task"] for r in rows} == {"linear", "kmeans", "knn", "label_efficiency"}
    (run_dir,) = (cli.workdir / "checkpoints").iterdir()
    assert "labels not checked" in json.loads((run_dir / "provenance.json").read_text())["data"]["verified"]


def test_outside_encoders_are_reported_as_external_and_gated_by_check(cli, embeddings, tmp_path):
    path = embeddings("proj12.npz")
    cli(*RUN, "--encoder", f"latents:{path}")
    cli("report", "--out", tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert 'class="flag flag-external"' in html and f"embeddings file {path.resolve()}" in html
    baseline = tmp_path / "baseline.json"
    cli("check", "--write-baseline", baseline)
    rows = json.loads(baseline.read_text())["rows"]
    assert {(r["encoder"], r["task"]) for r in rows} == {("proj12", "linear"), ("proj12", "knn")}
    assert cli("check", "--baseline", baseline).output.splitlines()[-1].startswith("PASS")
    data = json.loads(baseline.read_text())
    data["rows"][0]["value"] += 0.05
    baseline.write_text(json.dumps(data))
    assert "regression" in cli("check", "--baseline", baseline, expect=1).output


@pytest.mark.slow
def test_decoder_tasks_are_skipped_with_a_reason_not_crashed(cli, tmp_path):
    from repeval import data

    lines = data.load("lines")
    path = tmp_path / "lines_emb.npz"
    rng = np.random.default_rng(0)
    np.savez(path, z_train=rng.normal(size=(len(lines.train), 3)), y_train=lines.train.y.numpy(),
             z_test=rng.normal(size=(len(lines.test), 3)), y_test=lines.test.y.numpy())
    result = cli("run", "--encoder", f"latents:{path}", "--task", "interpolation", "--task", "knn",
                 "--dataset", "lines", "--json")
    assert "task 'interpolation' decodes latents and precomputed embeddings have no decoder; skipped" in result.output
    assert {r["task"] for r in json.loads(result.stdout)} == {"knn"}


# ------------------------------------------------------------------------------ bad files
def fails(cli, path, *extra, says):
    return cli.fails(*RUN, "--encoder", f"latents:{path}", "--dataset", "digits", *extra, says=says)


def test_missing_file_and_a_file_that_is_no_npz(cli, tmp_path):
    fails(cli, tmp_path / "nope.npz", says=("nope.npz: no such file", "z_train, y_train, z_test, y_test"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    fails(cli, tmp_path / "junk.npz", says="is not a readable .npz file")
    np.save(tmp_path / "one.npy", np.zeros((3, 2)))
    fails(cli, tmp_path / "one.npy", says="holds a single array (.npy)")


def test_wrong_keys_are_listed(cli, embeddings):
    fails(cli, embeddings(z_test=None), says=("lacks the array(s) z_test", "it holds z_train, y_train, y_test, meta"))
    images = embeddings(z_train=None, z_test=None, x_train=np.zeros((2, 8, 8), np.uint8))
    fails(cli, images, says=("lacks the array(s) z_train, z_test", "--dataset npz:FILE"))


@pytest.mark.parametrize("bad", [np.array([["a", "b"]] * 1257), np.ones((1257, 12), complex),
                                 np.ones((1257, 12), bool)], ids=["strings", "complex", "bool"])
def test_non_numeric_latents(cli, embeddings, bad):
    fails(cli, embeddings(z_train=bad), says=(f"z_train has dtype {bad.dtype}", "must be real numbers"))


def test_object_arrays_are_never_unpickled(cli, embeddings):
    objects = np.empty((1257, 1), dtype=object)
    objects[:] = [[{"a": 1}]] * 1257
    fails(cli, embeddings(z_train=objects), says=("array 'z_train' holds Python objects", "never unpickles"))


def test_nan_and_inf_are_counted_and_located(cli, embeddings):
    z_test = np.zeros((540, 12))
    z_test[3, 1] = z_test[3, 5] = np.nan
    z_test[7, 0] = np.inf
    message = fails(cli, embeddings(z_test=z_test), says="the test latents hold 2 NaN and 1 infinite values in 2 "
                                                         "of 540 rows (first at row 3, dimension 1)")
    assert "latents:" in message
    huge = np.zeros((540, 12))
    huge[0, 0] = 1e300  # finite in float64, not in float32
    fails(cli, embeddings(z_test=huge), says=("0 NaN and 1 infinite", "after conversion to float32"))


def test_label_count_mismatch(cli, embeddings, digits_arrays):
    fails(cli, embeddings(y_train=digits_arrays[1][:-5]), says="z_train has 1,257 rows but y_train has 1,252 labels")


@pytest.mark.parametrize("labels, says", [
    (lambda y: y - 1, "they run from -1 to 8"),
    (lambda y: np.where(y == 9, 12, y), "they run from 0 to 12"),
], ids=["negative", "gap"])
def test_labels_outside_zero_to_c_minus_one(cli, embeddings, digits_arrays, labels, says):
    _, y_train, _, y_test = digits_arrays
    message = fails(cli, embeddings(y_train=labels(y_train), y_test=labels(y_test)), says=says)
    assert "0..C-1 (C = 10 distinct labels here)" in message and "return_inverse" in message


def test_fewer_than_two_classes(cli, embeddings, digits_arrays):
    fails(cli, embeddings(y_train=np.zeros(1257, int), y_test=np.zeros(540, int)),
          says="every label is 0; probes need at least two classes")


def test_float_or_2d_labels(cli, embeddings, digits_arrays):
    fails(cli, embeddings(y_train=digits_arrays[1].astype(float)), says="y_train has shape (1257,) and dtype float64")
    fails(cli, embeddings(z_train=np.zeros(1257)), says="z_train has shape (1257,); expected (N, D)")


def test_train_test_latent_size_mismatch(cli, embeddings, digits_arrays):
    fails(cli, embeddings(z_test=np.zeros((540, 7))),
          says="train latents are shaped (12,) per row but test latents (7,)")


def test_labels_must_be_the_named_datasets_in_its_order(cli, embeddings, digits_arrays):
    _, y_train, _, y_test = digits_arrays
    fails(cli, embeddings(y_test=np.roll(y_test, 1)),
          says=("y_test differs from the test labels of 'digits' at", "(first at row 0:", "--dataset NAME"))
    fewer = embeddings(z_train=np.zeros((1000, 12)), y_train=y_train[:1000])
    fails(cli, fewer, says="the file has 1,000 train rows, but the train split of 'digits' has 1,257 images")


def test_meta_must_be_json_and_the_dataset_must_be_said(cli, embeddings):
    fails(cli, embeddings(meta=np.array("not json {")), says="array 'meta' must be one JSON object as text")
    path = embeddings(meta=None)
    cli.fails(*RUN, "--encoder", f"latents:{path}", says=("does not say which dataset", "give --dataset NAME"))


def test_options_that_do_not_apply(cli, embeddings, tmp_path):
    path = embeddings("mine.npz")
    fails(cli, path, "--hparam", "k=3", says="--hparam k does not apply")
    fails(cli, path, "--weights", tmp_path / "w.safetensors", says="--weights loads the weights of one python: encoder")
    fails(cli, path, "--latent-dim", "5", says="--latent-dim 5 does not apply to latents:")
    fails(cli, path, "--name", "acai", says="is the name of the registered family 'acai'")
    fails(cli, path, "--name", "no spaces", says="is not a usable encoder name")
    fails(cli, path, "--regularizer", "acai", says="is an encoder from outside repeval (not trained here)")
    cli.fails("train", "--encoder", f"latents:{path}", "--dataset", "digits", says="is not trained here")
    cli.fails(*RUN, "--encoder", "acai", "--name", "x", "--dataset", "digits", says="--name names one encoder")
