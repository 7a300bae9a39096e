"""Every bad input a user can give, one row each: exit status 2, one paragraph on stderr that
names the input, no traceback, and the store exactly as it was (database rows, every file of
every run directory).

Rows run in this process (click's runner) unless the process itself matters: a read-only
mount of the workdir, a database lock held by another process (this test), a command killed
mid-write elsewhere (the fault-injection suite, tests/faults/). Each row starts from a copy of
a store holding a trained and a fitted run with scores (``conftest.seeded_store``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from badinput_support import Ctx, Outcome, invoke, snapshot, spawn

RUN = ("run", "--task", "knn", "--dataset", "digits", "--threads", "1")
BASELINE_RUN = ("run", "--encoder", "baseline", "--task", "knn", "--dataset", "digits", "--budget", "128",
                "--threads", "1")
BASELINE_SPEC = ("--encoder", "baseline", "--dataset", "digits", "--budget", "128", "--threads", "1")


@dataclass(frozen=True)
class Case:
    """``repeval ARGS`` (``{work}``, ``{tmp}``, ``{run_ENCODER}`` filled in) after ``prepare``;
    its error must contain every text of ``says``. ``mode``: ``inline`` (this process),
    ``process``, ``locked`` (this test holds the database's lock) or ``readonly`` (the workdir
    mounted read-only). ``after`` checks more once the command failed."""

    id: str
    args: tuple[str, ...]
    says: tuple[str, ...]
    prepare: Callable[[Ctx], object] | None = None
    mode: str = "inline"
    env: dict[str, str] = field(default_factory=dict)
    after: Callable[[Ctx], object] | None = None
    slow: bool = False


# ------------------------------------------------------------------------------ makers of bad files
def _images(n=24, shape=(8, 8)):
    return np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)


def _labels(n=24, classes=3):
    return np.arange(n) % classes


def npz(name: str, **changes):
    """Write ``{tmp}/NAME``: a small valid npz dataset with ``changes`` (None drops a key)."""
    def prepare(ctx: Ctx):
        arrays = {"x_train": _images(), "y_train": _labels(), "x_test": _images(12), "y_test": _labels(12)}
        arrays = {k: v for k, v in {**arrays, **changes}.items() if v is not None}
        np.savez(ctx.tmp / name, **arrays)
    return prepare


TINY_CONV = Path(__file__).resolve().parents[2] / "examples" / "own_model" / "tiny_conv.py"


def _signals(n=24, length=64, channels=None):
    shape = (n, length) if channels is None else (n, channels, length)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _signals_with_inf():
    x = _signals(12)
    x[3, 5] = np.inf
    return x


def signal_npz(name: str, **changes):
    """Write ``{tmp}/NAME``: a small valid npz of 1-D signals (kind='signal') with ``changes``."""
    def prepare(ctx: Ctx):
        arrays = {"kind": np.array("signal"), "x_train": _signals(), "y_train": _labels(), "x_test": _signals(12),
                  "y_test": _labels(12)}
        np.savez(ctx.tmp / name, **{k: v for k, v in {**arrays, **changes}.items() if v is not None})
    return prepare


SYMBOLS = np.array(["_", "a", "b", "c"])


def _tokens(n=24, length=64, top=4):
    ids = np.random.default_rng(0).integers(1, top, (n, length))
    ids[:, length // 2:] = 0  # the second half padding
    return ids


def token_npz(name: str, **changes):
    """Write ``{tmp}/NAME``: a small valid npz of token sequences (kind='tokens') with ``changes``."""
    def prepare(ctx: Ctx):
        arrays = {"kind": np.array("tokens"), "symbols": SYMBOLS, "pad": np.array(0), "x_train": _tokens(),
                  "y_train": _labels(), "x_test": _tokens(12), "y_test": _labels(12)}
        np.savez(ctx.tmp / name, **{k: v for k, v in {**arrays, **changes}.items() if v is not None})
    return prepare


def _tokens_with(value, row=5, n=24):
    ids = _tokens(n)
    ids[row, 3] = value
    return ids


def raw_file(name: str, content: bytes | Callable[[Ctx], bytes]):
    def prepare(ctx: Ctx):
        (ctx.tmp / name).write_bytes(content(ctx) if callable(content) else content)
    return prepare


def truncated_npz(ctx: Ctx):
    npz("whole.npz")(ctx)
    data = (ctx.tmp / "whole.npz").read_bytes()
    (ctx.tmp / "cut.npz").write_bytes(data[: len(data) // 2])  # a write interrupted half way


def object_npz(ctx: Ctx):
    objects = np.empty(24, dtype=object)
    objects[:] = [{"pixel": i} for i in range(24)]
    np.savez(ctx.tmp / "objects.npz", x_train=objects, y_train=_labels(), x_test=_images(12), y_test=_labels(12))


class _Exploit:
    """A pickle that would create a file when unpickled: loading must never run it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickle_npz(ctx: Ctx):
    code = np.empty(1, dtype=object)
    code[0] = _Exploit(ctx.tmp / "PWNED")
    np.savez(ctx.tmp / "code.npz", x_train=code, y_train=_labels(), x_test=_images(12), y_test=_labels(12))


def not_pwned(ctx: Ctx):
    assert not (ctx.tmp / "PWNED").exists(), "loading ran code from a data file"


def npy_as_npz(ctx: Ctx):
    with open(ctx.tmp / "single.npz", "wb") as f:
        np.save(f, _images())


# ------------------------------------------------------------------------------ damaged checkpoints
def _manifest(ctx: Ctx) -> tuple[Path, dict]:
    path = ctx.run_dir("baseline") / "checkpoint.json"
    return path, json.loads(path.read_text())


def _state(ctx: Ctx) -> Path:
    return ctx.run_dir("baseline") / _manifest(ctx)[1]["state"]


def truncate_state(ctx: Ctx):
    state = _state(ctx)
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])


def flip_state_byte(ctx: Ctx):
    state = _state(ctx)
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))


def remove_state(ctx: Ctx):
    _state(ctx).unlink()


def edit_manifest(change: Callable[[dict], object] | None = None, text: str | None = None):
    def prepare(ctx: Ctx):
        path, manifest = _manifest(ctx)
        if text is not None:
            path.write_text(text)
            return
        change(manifest)
        path.write_text(json.dumps(manifest))
    return prepare


def truncate_manifest(ctx: Ctx):
    path, _ = _manifest(ctx)
    path.write_bytes(path.read_bytes()[:60])


def edit_spec(ctx: Ctx):
    path = ctx.run_dir("baseline") / "spec.json"
    spec = json.loads(path.read_text())
    spec["latent_dim"] = 32
    path.write_text(json.dumps(spec))


def remove_spec(ctx: Ctx):
    (ctx.run_dir("baseline") / "spec.json").unlink()


def garbage_spec(ctx: Ctx):
    (ctx.run_dir("baseline") / "spec.json").write_text('{"encoder": "baseline", "dataset"')


def forged_state(ctx: Ctx):
    """An attacker replaces the state with a pickle that runs code and forges its sha256."""
    state = _state(ctx)
    with open(state, "wb") as f:
        pickle.dump({"format": 1, "model": _Exploit(ctx.tmp / "PWNED")}, f, protocol=2)
    path, manifest = _manifest(ctx)
    manifest["state_sha256"] = hashlib.sha256(state.read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest))


def legacy_garbage(ctx: Ctx):
    """A run directory of the layout before checkpoint.json (state.pt), damaged."""
    run = ctx.run_dir("baseline")
    for f in [*run.glob("state*.pt"), run / "checkpoint.json"]:
        f.unlink()
    (run / "state.pt").write_bytes(b"PK\x03\x04 not a torch file")


# ------------------------------------------------------------------------------ damaged stores
def _db(ctx: Ctx) -> Path:
    return ctx.work / "repeval.db"


def garbage_db(ctx: Ctx):
    _db(ctx).write_bytes(b"this is not an sqlite database, whatever it was " * 200)


def truncated_db(ctx: Ctx):
    data = _db(ctx).read_bytes()
    _db(ctx).write_bytes(data[: len(data) // 3])  # the header survives, the pages do not


def future_db(ctx: Ctx):
    with sqlite3.connect(_db(ctx)) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()


# ------------------------------------------------------------------------------ baselines
def baseline_file(content: str | Callable[[Ctx], str], name: str = "baseline.json"):
    def prepare(ctx: Ctx):
        (ctx.tmp / name).write_text(content(ctx) if callable(content) else content)
    return prepare


def _good_baseline(ctx: Ctx) -> dict:
    out = ctx.tmp / "good.json"
    result = invoke(["check", "--write-baseline", str(out)], ctx)
    assert result.code == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    out.unlink()
    return data


def baseline_with(change: Callable[[dict], object]):
    def content(ctx: Ctx) -> str:
        data = _good_baseline(ctx)
        change(data)
        return json.dumps(data)
    return baseline_file(content)


def truncated_baseline(ctx: Ctx):
    text = json.dumps(_good_baseline(ctx), indent=1)
    (ctx.tmp / "baseline.json").write_text(text[: len(text) // 2])


def a_file(name: str = "afile"):
    return raw_file(name, b"a file, not a folder\n")


def empty_workdir(ctx: Ctx):
    shutil.rmtree(ctx.work)
    ctx.work.mkdir()


def embeddings(ctx: Ctx):
    from repeval import data

    ds = data.load("digits")
    rng = np.random.default_rng(0)
    np.savez(ctx.tmp / "emb.npz", z_train=rng.normal(size=(len(ds.train), 4)), y_train=ds.train.y.numpy(),
             z_test=rng.normal(size=(len(ds.test), 4)), y_test=ds.test.y.numpy(),
             meta=np.array(json.dumps({"dataset": "digits"})))


def _del(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _row(key, value):
    return lambda d: d["rows"][0].__setitem__(key, value)


# ------------------------------------------------------------------------------ the table
CASES: list[Case] = [
    # --- --hparam: declared ranges (repeval/ranges.py), checked in make_spec
    Case("hparam-keep-prob-7", (*RUN, "--encoder", "dropout", "--hparam", "keep_prob=7", "--budget", "128"),
         ("--hparam keep_prob=7 for dropout", "(0, 1]", "--hparam keep_prob=0.5")),
    Case("hparam-keep-prob-text", (*RUN, "--encoder", "dropout", "--hparam", "keep_prob=half"),
         ("--hparam keep_prob=half", "a finite number in (0, 1]")),
    Case("hparam-beta-nan", (*RUN, "--encoder", "vae", "--hparam", "beta=nan"), ("--hparam beta=nan", ">= 0")),
    Case("hparam-codebook-negative", (*RUN, "--encoder", "vqvae", "--hparam", "z_log_size=-3"),
         ("--hparam z_log_size=-3 for vqvae", "an integer in [1, 20]")),
    Case("hparam-decay-one", (*RUN, "--encoder", "vqvae", "--hparam", "decay=1"), ("decay=1", "[0, 1)")),
    Case("hparam-composed-gamma", (*RUN, "--encoder", "vae+acai", "--hparam", "reg=2"),
         ("--hparam reg=2 for vae+acai", "[0, 1]")),
    Case("hparam-width-fraction", ("train", "--encoder", "acai", "--dataset", "digits", "--hparam", "advdepth=1.5"),
         ("--hparam advdepth=1.5 for acai", "an integer >= 0")),
    Case("hparam-unknown", (*RUN, "--encoder", "dropout", "--hparam", "keep=0.5"),
         ("'dropout' has no hyper-parameter(s) keep", "keep_prob")),
    Case("hparam-not-assignment", (*RUN, "--encoder", "dropout", "--hparam", "keep_prob"),
         ("--hparam 'keep_prob' is not KEY=VALUE",)),
    Case("hparam-on-reference", (*RUN, "--encoder", "pca", "--hparam", "beta=1"), ("'pca' has no hyper-parameter",)),
    # --- --set: probe settings' declared ranges, checked before any work
    Case("set-k-zero", (*RUN, "--encoder", "pca", "--set", "knn.k=0"), ("--set knn.k=0", "an integer >= 1")),
    Case("set-temperature-inf", (*RUN, "--encoder", "pca", "--set", "knn.temperature=inf"),
         ("--set knn.temperature=inf", "a finite number > 0")),
    Case("set-metric-choice", (*RUN, "--encoder", "pca", "--set", "knn.metric=manhattan"),
         ("--set knn.metric=manhattan", "one of cosine, euclidean")),
    Case("set-k-fraction", (*RUN, "--encoder", "pca", "--set", "knn.k=2.5"), ("--set knn.k=2.5", "an integer")),
    Case("set-C-negative", ("run", "--encoder", "baseline", "--task", "linear", "--dataset", "digits", "--budget",
                            "128", "--set", "linear.C=-1"), ("--set linear.C=-1", "> 0")),
    Case("set-restarts-text", ("run", "--encoder", "baseline", "--task", "kmeans", "--dataset", "digits", "--budget",
                               "192", "--set", "kmeans.restarts=two"), ("--set kmeans.restarts=two", ">= 1")),
    Case("set-backend-choice", ("run", "--encoder", "pca", "--task", "kmeans", "--dataset", "digits", "--set",
                                "kmeans.backend=sklearn"), ("kmeans.backend=sklearn", "one of torch, faiss")),
    Case("set-whiten-flag", ("run", "--encoder", "pca", "--task", "kmeans", "--dataset", "digits", "--set",
                             "kmeans.whiten=perhaps"), ("kmeans.whiten=perhaps", "true or false")),
    Case("set-seed-negative", ("run", "--encoder", "pca", "--task", "kmeans", "--dataset", "digits", "--set",
                               "kmeans.seed=-4"), ("--set kmeans.seed=-4", ">= 0")),
    Case("set-unknown-setting", (*RUN, "--encoder", "pca", "--set", "knn.neighbours=5"),
         ("Unknown setting 'neighbours'", "known settings: k, metric, temperature")),
    Case("set-other-task", (*RUN, "--encoder", "pca", "--set", "kmeans.restarts=2"),
         ("--set kmeans.restarts=... must name one of this run's tasks (knn)",)),
    Case("set-no-task", (*RUN, "--encoder", "pca", "--set", "k=5"), ("--set k=... must name one of this run's tasks",)),
    Case("set-interpolation-steps", ("run", "--encoder", "pixels", "--task", "interpolation", "--dataset", "lines",
                                     "--set", "interpolation.steps=1"), ("interpolation.steps=1", "an integer >= 2")),
    # --- run options
    Case("latent-missing", (*RUN, "--encoder", "acai", "--latent", "sample"),
         ("No chosen encoder has a latent 'sample'",)),
    Case("latent-dim-illegal", (*RUN, "--encoder", "acai", "--latent-dim", "100"),
         ("--latent-dim 100", "32, 256, 1024")),
    Case("latent-dim-zero", (*RUN, "--encoder", "acai", "--latent-dim", "0"), ("--latent-dim 0", "positive")),
    Case("budget-not-batches", (*RUN, "--encoder", "baseline", "--budget", "100"),
         ("--budget 100 is not a whole number of batches of 64", "--budget 64 or --budget 128")),
    Case("budget-below-batch", (*RUN, "--encoder", "baseline", "--budget", "32"), ("--budget 32", "at least 64")),
    Case("seed-negative", (*RUN, "--encoder", "baseline", "--seed", "-1"), ("--seed -1", "non-negative")),
    Case("device-unknown", (*RUN, "--encoder", "pca", "--device", "tpu"), ("--device 'tpu'", "auto, cpu, cuda")),
    Case("device-cuda-index", (*RUN, "--encoder", "pca", "--device", "cuda:99"), ("--device cuda:99",)),
    Case("device-garbled", (*RUN, "--encoder", "pca", "--device", "cudafast"), ("--device 'cudafast'",)),
    Case("threads-zero", (*RUN, "--encoder", "pca", "--threads", "0"), ("--threads", "0")),
    Case("snapshots-not-batches", (*RUN, "--encoder", "baseline", "--budget", "256", "--snapshots", "100"),
         ("--snapshots 100", "multiple of the batch")),
    Case("snapshots-text", (*RUN, "--encoder", "baseline", "--snapshots", "soon"), ("--snapshots 'soon'",)),
    Case("snapshots-contradict", (*RUN, "--encoder", "baseline", "--snapshots", "64", "--no-snapshots"),
         ("--snapshots and --no-snapshots contradict",)),
    Case("along-training-without-snapshots", (*RUN, "--encoder", "baseline", "--along-training", "--no-snapshots"),
         ("--along-training probes a run's snapshots",)),
    Case("checkpoint-every-negative", (*RUN, "--encoder", "baseline", "--checkpoint-every", "-1"),
         ("--checkpoint-every",)),
    Case("checkpoint-every-env", (*RUN, "--encoder", "baseline"), ("--checkpoint-every", "soon"),
         env={"REPEVAL_CHECKPOINT_EVERY": "soon"}),
    Case("encoder-unknown", (*RUN, "--encoder", "acia"), ("Unknown encoder 'acia'",)),
    Case("encoder-cannot-compose", (*RUN, "--encoder", "pca+acai"), ("'pca+acai' cannot be composed",)),
    Case("regulariser-unknown", (*RUN, "--encoder", "vae", "--regularizer", "critic"), ("critic",)),
    Case("task-unknown", ("run", "--encoder", "pca", "--task", "svm", "--dataset", "digits"), ("Unknown task 'svm'",)),
    Case("task-needs-lines", ("run", "--encoder", "pca", "--task", "interpolation", "--dataset", "digits"),
         ("needs --dataset lines",)),
    Case("dataset-unknown", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "mnsit"),
         ("Unknown dataset 'mnsit'",)),
    Case("workdir-is-a-file", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "digits", "--workdir",
                               "{tmp}/afile"), ("{tmp}/afile", "is a file"), prepare=a_file()),
    Case("db-timeout-env", ("results",), ("REPEVAL_DB_TIMEOUT='soon'",), env={"REPEVAL_DB_TIMEOUT": "soon"}),
    Case("hostile-name", ("run", "--encoder", "latents:{tmp}/emb.npz", "--name", "<script>alert(1)</script>",
                          "--task", "knn"), ("--name <script>alert(1)</script> is not a usable encoder name",),
         prepare=embeddings),
    # --- npz datasets (repeval/data/npz.py): the four holes, and the rest of the array checks
    Case("npz-object-dtype", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/objects.npz"),
         ("objects.npz: array 'x_train' holds Python objects (dtype object)", "never unpickles"), prepare=object_npz),
    Case("npz-pickle-with-code", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/code.npz"),
         ("code.npz: array 'x_train' holds Python objects",), prepare=pickle_npz, after=not_pwned),
    Case("npz-labels-minus-one", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/neg.npz"),
         ("neg.npz: y_test holds negative labels (-1", "unlabelled"),
         prepare=npz("neg.npz", y_test=np.full(12, -1))),
    Case("npz-single-class", ("run", "--encoder", "pca", "--task", "kmeans", "--dataset", "npz:{tmp}/one.npz"),
         ("one.npz: every label in y_train is 0", "at least two classes"),
         prepare=npz("one.npz", y_train=np.zeros(24, int), y_test=np.zeros(12, int))),
    Case("npz-test-class-unseen", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/unseen.npz"),
         ("unseen.npz: y_test holds the class(es) 5", "no image of y_train"),
         prepare=npz("unseen.npz", y_test=np.full(12, 5))),
    Case("npz-float-pixels", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/float.npz"),
         ("float.npz: array 'x_train' has dtype float64", "uint8"),
         prepare=npz("float.npz", x_train=_images().astype(float) / 255)),
    # --- npz signals (kind='signal'): rank, NaN/inf, a length the poolings cannot divide, an unbuildable
    # family, the interpolation task without a factor bank
    Case("npz-signal-rank", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/rank.npz"),
         ("rank.npz: array 'x_train' has shape (24, 2, 8, 8)", "N×L", "N×C×L"),
         prepare=signal_npz("rank.npz", x_train=_signals(24, 8, 2)[..., None].repeat(8, -1))),
    Case("npz-signal-nan", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/nan.npz"),
         ("nan.npz: array 'x_test' holds NaN or infinite values in 1 of its 12 signals",),
         prepare=signal_npz("nan.npz", x_test=_signals_with_inf())),
    Case("npz-signal-length", ("run", "--encoder", "baseline", "--budget", "64", "--task", "knn", "--dataset",
                               "npz:{tmp}/odd.npz"),
         ("'baseline' cannot be built for 'npz:", "signals of 100 samples", "16 times a power of two"),
         prepare=signal_npz("odd.npz", x_train=_signals(24, 100), x_test=_signals(12, 100))),
    Case("npz-signal-kind", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/kind.npz"),
         ("kind.npz: array 'kind' holds 'audio'", "'image', 'signal', 'tokens'"),
         prepare=signal_npz("kind.npz", kind=np.array("audio"))),
    Case("npz-signal-undeclared", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/undecl.npz"),
         ("undecl.npz: array 'x_train' has dtype float32", "kind='signal'"),
         prepare=signal_npz("undecl.npz", kind=None)),
    # --- npz token sequences (kind='tokens'): ids outside the vocabulary, a vocabulary that does not
    # match the file, sequences longer than declared, empty strings
    Case("npz-tokens-outside", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/out.npz"),
         ("out.npz: array 'x_train' holds token ids outside the vocabulary of 4 symbols (0..3): 7 first, in 1 of 24 "
          "sequences (first at row 5)",), prepare=token_npz("out.npz", x_train=_tokens_with(7))),
    Case("npz-tokens-negative", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/neg.npz"),
         ("neg.npz: array 'x_test' holds token ids outside the vocabulary", "-1 first"),
         prepare=token_npz("neg.npz", x_test=_tokens_with(-1, 2, 12))),
    Case("npz-tokens-no-symbols", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/nosym.npz"),
         ("nosym.npz: a token file (kind='tokens') names its vocabulary in an array 'symbols'",),
         prepare=token_npz("nosym.npz", symbols=None)),
    Case("npz-tokens-repeated-symbols", ("run", "--encoder", "pca", "--task", "knn", "--dataset",
                                         "npz:{tmp}/rep.npz"),
         ("rep.npz: array 'symbols' does not name each token id once: 'a' appear(s) more than once",),
         prepare=token_npz("rep.npz", symbols=np.array(["_", "a", "a", "c"]))),
    Case("npz-tokens-longer", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/long.npz"),
         ("long.npz: array 'x_train' holds sequences of 64 tokens, longer than the declared length = 48",),
         prepare=token_npz("long.npz", length=np.array(48))),
    Case("npz-tokens-empty", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/empty.npz"),
         ("empty.npz: array 'x_train' holds 1 empty sequences (padding only), first at row 5",),
         prepare=token_npz("empty.npz", x_train=_tokens_with(0, 5) * (np.arange(24) != 5)[:, None])),
    Case("python-encoder-on-signals", ("run", "--encoder", f"python:{TINY_CONV}:build", "--task", "knn", "--dataset",
                                       "shepard"),
         ("is a model from outside repeval, which repeval feeds images (B, C, 32, 32); 'shepard' holds 1×1024 "
          "signals", "latents:FILE.npz")),
    Case("interpolation-no-bank", ("run", "--encoder", "pixels", "--task", "interpolation", "--dataset",
                                   "npz:{tmp}/sig.npz"),
         ("needs --dataset lines or --dataset shepard",), prepare=signal_npz("sig.npz")),
    Case("npz-channels-differ", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/rgb.npz"),
         ("rgb.npz: x_train and x_test differ in image shape or channels",),
         prepare=npz("rgb.npz", x_test=_images(12, (8, 8, 3)))),
    Case("npz-five-channels", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/five.npz"),
         ("five.npz: array 'x_train' has shape (24, 8, 8, 5)",),
         prepare=npz("five.npz", x_train=_images(24, (8, 8, 5)))),
    Case("npz-empty", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/empty.npz"),
         ("empty.npz: array 'x_train' has shape (0, 8, 8)", "N > 0"),
         prepare=npz("empty.npz", x_train=_images(0), y_train=_labels(0))),
    Case("npz-float-labels", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/fl.npz"),
         ("fl.npz: array 'y_train' has shape (24,) and dtype float64", "integer labels"),
         prepare=npz("fl.npz", y_train=_labels().astype(float))),
    Case("npz-label-count", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/count.npz"),
         ("count.npz: array 'y_test' has shape (11,)",), prepare=npz("count.npz", y_test=_labels(11))),
    Case("npz-missing-key", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/nokey.npz"),
         ("nokey.npz lacks array(s) y_test",), prepare=npz("nokey.npz", y_test=None)),
    Case("npz-truncated", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/cut.npz"),
         ("cut.npz is not a readable .npz file",), prepare=truncated_npz),
    Case("npz-single-array", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/single.npz"),
         ("single.npz holds a single array (.npy format)",), prepare=npy_as_npz),
    Case("npz-missing-file", ("run", "--encoder", "pca", "--task", "knn", "--dataset", "npz:{tmp}/none.npz"),
         ("none.npz does not exist",)),
    # --- damaged run directories (repeval/checkpoint.py): run, train and extract of the seeded run
    Case("checkpoint-state-truncated", BASELINE_RUN, ("does not match the sha256 committed in checkpoint.json",
                                                      "delete it to train the run again"), prepare=truncate_state),
    Case("checkpoint-state-edited", ("train", *BASELINE_SPEC), ("does not match the sha256",), prepare=flip_state_byte),
    Case("checkpoint-state-missing", BASELINE_RUN, ("state.", "is missing"), prepare=remove_state),
    Case("checkpoint-manifest-truncated", BASELINE_RUN, ("checkpoint.json is not readable JSON",),
         prepare=truncate_manifest),
    Case("checkpoint-manifest-format", ("train", *BASELINE_SPEC), ("is not a repeval checkpoint manifest",),
         prepare=edit_manifest(_set("format", 1))),
    Case("checkpoint-manifest-keys", BASELINE_RUN, ("checkpoint.json lacks state_sha256",),
         prepare=edit_manifest(_del("state_sha256"))),
    Case("checkpoint-manifest-other-run", BASELINE_RUN, ("belongs to run 'someone-else'",),
         prepare=edit_manifest(_set("run_id", "someone-else"))),
    Case("checkpoint-manifest-not-object", ("extract", *BASELINE_SPEC, "--out", "{tmp}/z.npz"),
         ("is not a repeval checkpoint manifest",), prepare=edit_manifest(text="[1, 2, 3]")),
    Case("spec-no-longer-matches-run-id", BASELINE_RUN, ("spec.json describes run", "edited?"), prepare=edit_spec),
    Case("spec-missing", ("train", *BASELINE_SPEC), ("spec.json is missing",), prepare=remove_spec),
    Case("spec-not-json", BASELINE_RUN, ("spec.json is not a readable run spec",), prepare=garbage_spec),
    Case("checkpoint-forged-pickle", BASELINE_RUN, ("cannot be read safely",), prepare=forged_state, after=not_pwned),
    Case("checkpoint-legacy-damaged", ("extract", *BASELINE_SPEC, "--out", "{tmp}/z.npz"),
         ("state.pt cannot be read safely",), prepare=legacy_garbage),
    # --- damaged or newer stores (repeval/store.py), for every command that reads one
    Case("db-garbage-results", ("results",), ("repeval.db is damaged or is not a repeval database",),
         prepare=garbage_db),
    Case("db-garbage-run", (*RUN, "--encoder", "pca", "--seed", "3"), ("repeval.db is damaged",), prepare=garbage_db),
    Case("db-truncated-report", ("report", "--out", "{tmp}/r.html"), ("repeval.db is damaged",), prepare=truncated_db),
    Case("db-truncated-check", ("check", "--write-baseline", "{tmp}/b.json"), ("repeval.db is damaged",),
         prepare=truncated_db),
    Case("db-newer-schema", ("results",), ("schema version 99, newer than this repeval",), prepare=future_db),
    # --- a database locked by another process (this test holds the lock), in real processes
    Case("db-locked-run", (*RUN, "--encoder", "pca", "--seed", "4"),
         ("repeval.db is locked by another process (waited 0.3 s)", "REPEVAL_DB_TIMEOUT"), mode="locked",
         env={"REPEVAL_DB_TIMEOUT": "0.3"}, slow=True),
    Case("db-locked-results", ("results",), ("repeval.db is locked by another process",), mode="locked",
         env={"REPEVAL_DB_TIMEOUT": "0.3"}, slow=True),
    Case("db-locked-check", ("check", "--write-baseline", "{tmp}/b.json"), ("is locked",), mode="locked",
         env={"REPEVAL_DB_TIMEOUT": "0.3"}, slow=True),
    # --- a read-only workdir (mounted read-only; chmod where not root), in real processes
    Case("readonly-run", (*RUN, "--encoder", "pca", "--seed", "5"), ("--workdir", "is not writable"), mode="readonly",
         slow=True),
    Case("readonly-train", ("train", "--encoder", "baseline", "--dataset", "digits", "--budget", "64"),
         ("--workdir", "is not writable"), mode="readonly", slow=True),
    Case("readonly-report", ("report",), ("Cannot write", "report.html"), mode="readonly", slow=True),
    # --- extract
    Case("extract-out-folder-is-a-file", ("extract", "--encoder", "pca", "--dataset", "digits", "--out",
                                          "{tmp}/afile/z.npz"), ("--out", "afile", "is a file"), prepare=a_file()),
    Case("extract-latent-missing", ("extract", *BASELINE_SPEC, "--latent", "sample", "--out", "{tmp}/z.npz"),
         ("--latent sample: baseline has no latent 'sample'",)),
    Case("extract-weights-without-python-encoder", ("extract", "--encoder", "pca", "--dataset", "digits",
                                                    "--weights", "{tmp}/w.safetensors", "--out", "{tmp}/z.npz"),
         ("--weights loads the weights of one python: encoder",)),
    Case("train-outside-encoder", ("train", "--encoder", "latents:{tmp}/emb.npz", "--dataset", "digits"),
         ("is an encoder from outside repeval", "repeval run --encoder latents:"), prepare=embeddings),
    # --- check and its baseline files (repeval/check.py)
    Case("check-no-option", ("check",), ("Give exactly one of --baseline FILE",)),
    Case("check-both-options", ("check", "--baseline", "{tmp}/a.json", "--write-baseline", "{tmp}/b.json"),
         ("Give exactly one of",)),
    Case("baseline-missing", ("check", "--baseline", "{tmp}/nope.json"), ("nope.json does not exist",)),
    Case("baseline-not-json", ("check", "--baseline", "{tmp}/baseline.json"), ("not valid JSON",),
         prepare=baseline_file("{rows: [")),
    Case("baseline-truncated", ("check", "--baseline", "{tmp}/baseline.json"), ("not valid JSON",),
         prepare=truncated_baseline),
    Case("baseline-not-a-baseline", ("check", "--baseline", "{tmp}/baseline.json"), ("not a repeval baseline",),
         prepare=baseline_file('{"rows": []}')),
    Case("baseline-newer-version", ("check", "--baseline", "{tmp}/baseline.json"), ("format version 7, newer",),
         prepare=baseline_with(_set("version", 7))),
    Case("baseline-row-lacks-key", ("check", "--baseline", "{tmp}/baseline.json"), ("rows[0] lacks the key 'seed'",),
         prepare=baseline_with(lambda d: d["rows"][0].pop("seed"))),
    Case("baseline-value-text", ("check", "--baseline", "{tmp}/baseline.json"), ("rows[0].value must be a number",),
         prepare=baseline_with(_row("value", "high"))),
    Case("baseline-negative-tolerance", ("check", "--baseline", "{tmp}/baseline.json"),
         ("tolerance.abs must be a non-negative number",), prepare=baseline_with(_row("tolerance", {"abs": -1}))),
    Case("baseline-duplicate-rows", ("check", "--baseline", "{tmp}/baseline.json"), ("are the same score",),
         prepare=baseline_with(lambda d: d["rows"].append(dict(d["rows"][0])))),
    Case("baseline-empty-rows", ("check", "--baseline", "{tmp}/baseline.json"), ("'rows' must be a non-empty list",),
         prepare=baseline_with(_set("rows", []))),
    Case("write-baseline-empty-store", ("check", "--write-baseline", "{tmp}/b.json"), ("No scores to write",),
         prepare=empty_workdir),
    Case("write-baseline-into-a-file", ("check", "--write-baseline", "{tmp}/afile/b.json"), ("Cannot write",
                                                                                             "afile/b.json"),
         prepare=a_file()),
    # --- report, results, listings
    Case("report-out-folder-is-a-file", ("report", "--out", "{tmp}/afile/r.html"), ("Cannot write", "afile/r.html"),
         prepare=a_file()),
    Case("report-out-is-a-folder", ("report", "--out", "{tmp}"), ("--out", "is a directory")),
    Case("results-format-unknown", ("results", "--format", "xml"), ("--format", "'xml' is not one of")),
    Case("encoders-dataset-unknown", ("encoders", "--dataset", "mnsit"), ("Unknown dataset 'mnsit'",)),
    Case("encoders-latent-dim", ("encoders", "--latent-dim", "7"), ("--latent-dim 7",)),
    Case("datasets-data-dir-file", ("datasets", "--data-dir", "{tmp}/afile"), ("--data-dir", "is a file"),
         prepare=a_file()),
    # --- sweep, collect, compare
    Case("sweep-preset-unknown", ("sweep", "--preset", "nope", "--dry-run"), ("Unknown preset 'nope'", "paper-table1")),
    Case("sweep-jobs-zero", ("sweep", "--encoder", "baseline", "--dataset", "digits", "--jobs", "0"),
         ("--jobs 0: give at least 1",)),
    Case("sweep-launcher-unknown", ("sweep", "--encoder", "baseline", "--dataset", "digits", "--launcher", "nope"),
         ("Unknown launcher 'nope'", "local, slurm, ray")),
    Case("sweep-grid-wrong-type", ("sweep", "--grid", "{tmp}/grid.toml", "--dry-run"),
         ("grid.toml: `encoder` must be a string or a list of them",), prepare=raw_file("grid.toml", b"encoder = 3\n")),
    Case("sweep-grid-unknown-key", ("sweep", "--grid", "{tmp}/grid.toml", "--dry-run"),
         ("grid.toml: unknown key(s) 'colour'",), prepare=raw_file("grid.toml", b'colour = "red"\n')),
    Case("collect-not-a-folder", ("collect", "--workdir", "{tmp}/nowhere"), ("{tmp}/nowhere is not a folder",)),
    Case("compare-one-encoder", ("compare", "--encoder", "baseline"), ("exactly two encoders", "got 1: baseline")),
    Case("compare-empty-workdir", ("compare", "--encoder", "baseline", "--encoder", "acai"), ("No scores stored",),
         prepare=empty_workdir),
    Case("export-option-of-another-tracker", ("export", "--to", "mlflow", "--logdir", "{tmp}/tb"),
         ("--logdir", "does not apply to --to mlflow")),
    Case("export-unknown-tracker", ("export", "--to", "neptune"), ("--to", "'neptune' is not one of")),
]


def held_lock(db: Path) -> sqlite3.Connection:
    """This process takes the database's lock and keeps it (exclusive locking mode): others
    can neither read nor write until it is closed."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("SELECT COUNT(*) FROM runs").fetchall()
    return conn


def read_only(args: list[str], ctx: Ctx) -> Outcome:
    """The command with the workdir read-only: chmod where this is not root; as root (which
    ignores modes), under a private mount namespace that binds the workdir read-only."""
    if os.geteuid() != 0:
        paths = [ctx.work, *ctx.work.rglob("*")]
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            return spawn(args, ctx)
        finally:
            for p in reversed(paths):
                p.chmod(modes[p])
    probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -o bind,ro "$0" "$0" && ! touch "$0/.probe"',
                            str(ctx.work)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no way to make a read-only workdir as root here (unshare -m: {probe.stderr.strip()[:200]})")
    return spawn(args, ctx, prefix=["unshare", "-m", "sh", "-c", 'mount -o bind,ro "$0" "$0" && shift && exec "$@"',
                                    str(ctx.work), "--"])


def execute(case: Case, ctx: Ctx, args: list[str]) -> Outcome:
    if case.mode == "inline":
        return invoke(args, ctx)
    if case.mode == "process":
        return spawn(args, ctx)
    if case.mode == "locked":
        conn = held_lock(ctx.work / "repeval.db")
        try:
            return spawn(args, ctx)
        finally:
            conn.close()
    if case.mode == "readonly":
        return read_only(args, ctx)
    raise ValueError(case.mode)


def error_paragraph(stderr: str) -> str:
    """The error as the command line prints it: ``Error: ...`` on stderr, one paragraph, last.
    Lines before it may be notices (a CPU budget announcement) or click's usage header."""
    assert "Error: " in stderr, stderr
    message = stderr[stderr.index("Error: "):].strip()
    assert "\n" not in message, f"the error is more than one paragraph:\n{stderr}"
    return message


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_bad_input_is_one_clear_paragraph_and_changes_nothing(case: Case, ctx: Ctx):
    if case.prepare is not None:
        case.prepare(ctx)
    ctx.env.update(case.env)
    args = [a.format(**ctx.fields) for a in case.args]
    if case.id == "device-cuda-index":
        import torch

        if torch.cuda.device_count() > 99:
            pytest.skip("this machine has a 100th CUDA device")
    before = snapshot(ctx.work)
    outcome = execute(case, ctx, args)
    assert outcome.exception is None, f"{case.id}: {outcome.exception!r}\n{outcome.stderr}"
    assert outcome.code == 2, f"{case.id}: exit {outcome.code}\n{outcome.stdout}\n{outcome.stderr}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    message = error_paragraph(outcome.stderr)
    for text in case.says:
        text = text.format(**ctx.fields)
        assert text in message, f"{case.id}: {text!r} not in:\n{message}"
    assert snapshot(ctx.work) == before, f"{case.id}: the failed command changed the store"
    if case.after is not None:
        case.after(ctx)


def test_the_table_covers_every_command_and_enough_cases():
    """At least 60 rows, and every command of the command line has bad inputs in them."""
    from repeval.cli import main as cli

    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.args[0] for c in CASES}
    missing = set(cli.commands) - commands - {"tasks"}  # `tasks` takes no input beyond --json
    assert not missing, f"no bad-input case for: {sorted(missing)}"
