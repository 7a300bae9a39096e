"""Bad inputs from Python: every row of the shell's bad-input tables that applies to arrays or
modules, driven through ``repeval.probe``, ``repeval.evaluate`` and ``repeval.Probe``.

Each must raise :class:`repeval.UserError` (a ``ValueError``) whose text is the shell's for the
same input apart from the leading "where" phrase (the shell says ``--encoder latents:FILE:``,
Python ``repeval.probe(name='arrays'):``), and store nothing (with a workdir: no score or run
row, no run directory). The rows with no shell face (``test_fraction``, the tracker object, a
data-frame kind, the estimator's own arguments) check the type and the text's key phrases.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import struct
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import repeval
from repeval.cli import main

RNG = np.random.default_rng(0)
N, M, D = 30, 15, 4
BASE = {"z_train": RNG.normal(size=(N, D)), "y_train": np.arange(N) % 3, "z_test": RNG.normal(size=(M, D)),
        "y_test": np.arange(M) % 3}
PROBE_WHERE = "repeval.probe(name='arrays'): "


# ------------------------------------------------------------------------------ helpers
def stored(workdir: Path) -> tuple[int, int, tuple[str, ...]]:
    """(run rows, score rows, run directories) in ``workdir``."""
    db, counts = workdir / "repeval.db", (0, 0)
    if db.is_file():
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if {"runs", "scores"} <= tables:
                counts = tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "scores"))
    dirs = workdir / "checkpoints"
    return (*counts, tuple(sorted(p.name for p in dirs.iterdir())) if dirs.is_dir() else ())


def shell_error(workdir: Path, *args: str) -> str:
    """``repeval ARGS --workdir WORKDIR`` must fail on bad input: exit 2, one paragraph, nothing
    stored; returns the paragraph without ``Error: ``."""
    result = CliRunner().invoke(main, [*map(str, args), "--workdir", str(workdir)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    out = result.output
    message = out[out.index("Error: ") + len("Error: "):].strip()
    assert "Traceback" not in out and "\n" not in message, out
    assert stored(workdir) == (0, 0, ())
    return message


def api_error(call, workdir: Path | None = None) -> str:
    """``call()`` must raise repeval.UserError (a ValueError) and store nothing; returns its text."""
    with pytest.raises(repeval.UserError) as caught:
        call()
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert message and "\n" not in message and "Traceback" not in message
    if workdir is not None:
        assert stored(workdir) == (0, 0, ()), "a failed call stored something"
    return message


def after(message: str, where: str) -> str:
    """``message`` without its leading "where" phrase (messages that have none are whole)."""
    return message[len(where):] if message.startswith(where) else message


def write_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------ arrays
def _changed(**changes):
    return lambda: {**BASE, **{k: (v() if callable(v) else v) for k, v in changes.items()}}


def _nan_test():
    z = np.zeros((M, D))
    z[3, 1] = z[3, 2] = np.nan
    z[7, 0] = np.inf
    return z


def _labels(n, fn):
    return fn(np.arange(n) % 3)


ARRAYS = {  # id -> (arrays, the text every face says, the side a Probe sees it on: fit or score[, what fit says])
    "rank-1": (_changed(z_train=np.zeros(N)), "z_train has shape (30,); expected (N, D)", "fit"),
    "rank-1-test": (_changed(z_test=np.zeros(M)), "z_test has shape (15,); expected (N, D)", "score"),
    "no-rows": (_changed(z_train=np.zeros((0, D)), y_train=np.zeros(0, int)), "z_train has shape (0, 4)", "fit"),
    "no-columns": (_changed(z_train=np.zeros((N, 0)), z_test=np.zeros((M, 0))), "z_train has shape (30, 0)", "fit"),
    "strings": (_changed(z_train=np.array([["a", "b"]] * N)), "z_train has dtype <U1; latents must be real", "fit"),
    "complex": (_changed(z_train=np.ones((N, D), complex)), "z_train has dtype complex128", "fit"),
    "bool": (_changed(z_train=np.ones((N, D), bool)), "z_train has dtype bool", "fit"),
    "nan-inf": (_changed(z_test=_nan_test), "the test latents hold 2 NaN and 1 infinite values in 2 of 15 rows "
                                            "(first at row 3, dimension 1)", "score"),
    "float32-overflow": (_changed(z_train=lambda: np.full((N, D), 1e300)),
                         "0 NaN and 120 infinite values in 30 of 30 rows", "fit"),
    "lengths": (_changed(y_train=(np.arange(N) % 3)[:-5]), "z_train has 30 rows but y_train has 25 labels", "fit"),
    "lengths-test": (_changed(y_test=(np.arange(M) % 3)[:-1]), "z_test has 15 rows but y_test has 14 labels", "score"),
    "labels-negative": (_changed(y_train=_labels(N, lambda y: y - 1), y_test=_labels(M, lambda y: y - 1)),
                        "they run from -1 to 1", "fit"),
    "labels-gap": (_changed(y_train=_labels(N, lambda y: np.where(y == 2, 5, y)),
                            y_test=_labels(M, lambda y: np.where(y == 2, 5, y))), "they run from 0 to 5", "fit"),
    "labels-float": (_changed(y_train=(np.arange(N) % 3).astype(float)), "y_train has shape (30,) and dtype float64",
                     "fit"),
    "labels-2d": (_changed(y_train=(np.arange(N) % 3)[:, None]), "y_train has shape (30, 1) and dtype int64", "fit"),
    "one-class": (_changed(y_train=np.zeros(N, int), y_test=np.zeros(M, int)),
                  "every label is 0; probes need at least two classes", "fit"),
    "one-class-in-train": (_changed(y_train=np.zeros(N, int)), "Every train label is 0", "fit",
                           "every label is 0; probes need at least two classes"),  # fit sees the train split only
    "widths-differ": (_changed(z_test=np.zeros((M, 7))), "train latents are shaped (4,) per row but test latents (7,)",
                      "score"),
    "test-class-unseen": (_changed(y_train=np.arange(N) % 2), "The test labels hold class(es) 2 that no train label "
                                                             "has", "score"),
}


@pytest.mark.parametrize("case", ARRAYS)
def test_bad_arrays_raise_the_shells_paragraph_and_store_nothing(case, tmp_path):
    make, says, side, *fit_says = ARRAYS[case]
    arrays = make()
    path = write_npz(tmp_path / "bad.npz", arrays)
    shell = shell_error(tmp_path / "shell", "run", "--encoder", f"latents:{path}", "--dataset", "mine",
                        "--task", "knn")
    assert says in shell
    work = tmp_path / "api"
    api = api_error(lambda: repeval.probe(*(arrays[k] for k in ("z_train", "y_train", "z_test", "y_test")),
                                          tasks=("knn",), dataset="mine", workdir=work), work)
    assert after(api, PROBE_WHERE) == after(shell, f"--encoder latents:{path}: ")
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items() if v.dtype.kind in "biufc"}
    if len(tensors) == 4:  # torch tensors say the same
        assert api_error(lambda: repeval.probe(*(tensors[k] for k in ("z_train", "y_train", "z_test", "y_test")),
                                               tasks=("knn",), dataset="mine")) == api
    # the estimator: the train side's problems at fit, the test side's at score
    estimator = repeval.Probe("knn")
    if side == "fit":
        text = api_error(lambda: estimator.fit(arrays["z_train"], arrays["y_train"]))
        if fit_says:
            says = fit_says[0]
        else:  # the shell's text of the train side
            assert after(text, "Probe('knn', random_state=None).fit: ") == after(shell, f"--encoder latents:{path}: ")
    else:
        estimator.fit(arrays["z_train"], arrays["y_train"])
        text = api_error(lambda: estimator.score(arrays["z_test"], arrays["y_test"]))
        assert after(text, "repeval.probe(name='probe'): ") == after(shell, f"--encoder latents:{path}: ")
    assert says in text


def test_object_arrays_are_refused_without_being_read():
    objects = np.empty((N, 1), dtype=object)
    objects[:] = [[{"a": 1}]] * N
    numbers = np.array([[1.0, 2.0]] * N, dtype=object)  # numbers, but as Python objects
    for z in (objects, numbers):
        message = api_error(lambda: repeval.probe(z, BASE["y_train"], BASE["z_test"], BASE["y_test"], tasks="knn"))
        assert message.startswith(PROBE_WHERE) and "z_train has dtype object; latents must be real numbers" in message
        assert "has dtype object" in api_error(lambda: repeval.Probe("knn").fit(z, BASE["y_train"]))


def test_values_that_are_no_arrays():
    message = api_error(lambda: repeval.probe([[1.0, 2.0], [3.0]], BASE["y_train"], tasks="knn"))
    assert "z_train is a ragged list" in message and "one row per example" in message
    assert "z_train is a dict; give a NumPy array or a torch tensor" in api_error(
        lambda: repeval.probe({"a": 1}, BASE["y_train"], tasks="knn"))
    assert "give z_test together with y_test" in api_error(
        lambda: repeval.probe(BASE["z_train"], BASE["y_train"], BASE["z_test"], tasks="knn"))


# ------------------------------------------------------------------------------ tasks and settings
SETTINGS = {  # id -> (shell options, probe's keyword arguments, Probe, the text)
    "task-unknown": (("--task", "knn", "--task", "svm"), {"tasks": ("knn", "svm")}, lambda: repeval.Probe("svm"),
                     "Unknown task 'svm'. Known tasks: linear"),
    "setting-unknown": (("--task", "knn", "--set", "knn.neighbours=5"),
                        {"tasks": "knn", "settings": {"knn": {"neighbours": 5}}},
                        lambda: repeval.Probe("knn", neighbours=5), "Unknown setting 'neighbours'"),
    "setting-out-of-range": (("--task", "knn", "--task", "kmeans", "--set", "kmeans.restarts=0"),
                             {"tasks": ("knn", "kmeans"), "settings": {"kmeans": {"restarts": 0}}},
                             lambda: repeval.Probe("kmeans", restarts=0), "kmeans.restarts=0 is not allowed"),
    "setting-out-of-range-dotted": (("--task", "kmeans", "--set", "kmeans.restarts=0"),
                                    {"tasks": "kmeans", "settings": {"kmeans.restarts": 0}}, None,
                                    "kmeans.restarts=0 is not allowed"),
    "setting-k-zero": (("--task", "knn", "--set", "knn.k=0"), {"tasks": "knn", "settings": {"knn.k": 0}},
                       lambda: repeval.Probe("knn", k=0), "k must be an integer >= 1"),
    "setting-of-another-task": (("--task", "knn", "--set", "kmeans.restarts=2"),
                                {"tasks": "knn", "settings": {"kmeans": {"restarts": 2}}}, None,
                                "--set kmeans.restarts=... must name one of this run's tasks (knn)"),
    "probe-seeds-zero": (("--task", "kmeans", "--probe-seeds", "0"), {"tasks": "kmeans", "probe_seeds": 0}, None,
                         "must be a whole number of at least 1"),
}


@pytest.mark.parametrize("case", SETTINGS)
def test_bad_tasks_and_settings_raise_the_shells_paragraph(case, tmp_path):
    options, kwargs, estimator, says = SETTINGS[case]
    path = write_npz(tmp_path / "good.npz", BASE)
    shell = shell_error(tmp_path / "shell", "run", "--encoder", f"latents:{path}", "--dataset", "mine", *options)
    work = tmp_path / "api"
    api = api_error(lambda: repeval.probe(*BASE.values(), dataset="mine", workdir=work, **kwargs), work)
    assert api == shell and says in api
    if estimator is not None:
        for call in (lambda: estimator().fit(BASE["z_train"], BASE["y_train"]),
                     lambda: estimator().score(BASE["z_test"], BASE["y_test"])):
            assert says in api_error(call)


def test_bad_arguments_of_the_python_calls():
    z, y = BASE["z_train"], BASE["y_train"]
    assert "tasks=3: give a task name or a list" in api_error(lambda: repeval.probe(z, y, tasks=3))
    assert "settings=[1]: give a dict" in api_error(lambda: repeval.probe(z, y, tasks="knn", settings=[1]))
    assert "is not a usable encoder name" in api_error(lambda: repeval.probe(z, y, tasks="knn", name="a b"))
    assert "is the name of the registered family 'acai'" in api_error(lambda: repeval.probe(z, y, name="acai"))
    assert "--device 'tpu' is not one of" in api_error(lambda: repeval.probe(z, y, tasks="knn", device="tpu"))
    assert "random_state=-1): give a non-negative integer" in api_error(
        lambda: repeval.Probe("knn", random_state=-1).fit(z, y))
    assert "decodes latents with the model; a Probe reads latents only" in api_error(
        lambda: repeval.Probe("interpolation").fit(z, y))
    assert "score was called before fit" in api_error(lambda: repeval.Probe("knn").score(z, y))


# ------------------------------------------------------------------------------ the split made for one pair
@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2, float("nan"), "0.2", True, None])
def test_a_test_fraction_that_is_no_share(fraction, tmp_path):
    message = api_error(lambda: repeval.probe(BASE["z_train"], BASE["y_train"], tasks="knn", test_fraction=fraction,
                                              workdir=tmp_path), tmp_path)
    assert message.startswith(PROBE_WHERE) and f"test_fraction={fraction!r} must be a number strictly between 0 and 1" \
        in message


def test_a_class_with_one_example_or_too_few_to_split(tmp_path):
    y = np.r_[BASE["y_train"][:-1], 3]
    message = api_error(lambda: repeval.probe(BASE["z_train"], y, tasks="knn", workdir=tmp_path), tmp_path)
    assert "class(es) 3 have a single example" in message and "Give z_test and y_test yourself" in message
    few = np.array([0, 0, 1, 1, 2, 2, 0])
    message = api_error(lambda: repeval.probe(BASE["z_train"][:7], few, tasks="knn", test_fraction=0.1))
    assert "7 examples of 3 classes cannot be split 0.1 / 0.9" in message
    # the arrays are checked before any split: a bad array is named, not the split
    assert "y_train has shape (30,) and dtype float64" in api_error(
        lambda: repeval.probe(BASE["z_train"], y.astype(float), tasks="knn"))


# ------------------------------------------------------------------------------ results
def test_an_unknown_frame_kind_and_a_tracker_of_an_unknown_kind():
    results = repeval.probe(*BASE.values(), tasks="knn")
    assert "to_dataframe(kind='tall'): choose 'long'" in api_error(lambda: results.to_dataframe("tall"))
    message = api_error(lambda: results.log_to(object()))
    assert message.startswith("Cannot log scores to a builtins.object") and "log_metrics" in message


# ------------------------------------------------------------------------------ modules
MODES = """
    import torch
    from torch import nn


    class Mode(nn.Module):
        '''A flatten-and-slice encoder whose output shows one kind of fault.'''

        def __init__(self, mode):
            super().__init__()
            self.mode = mode
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            z = self.scale * x.flatten(1)[:, :6]
            if self.mode == "rank":
                return z.sum(1)
            if self.mode == "batch":
                return z[:1]
            if self.mode == "pair":
                return z, z
            if self.mode == "raises":
                raise RuntimeError("needs a GPU")
            if self.mode == "complex":
                return z.to(torch.complex64)
            if self.mode == "nan":
                return z * float("nan")
            return z


    def build(mode):
        m = Mode(mode)
        if mode == "range":
            m.input_range = (1, 0)
        return m
"""

MODULE_CASES = {
    "rank": "forward(x) of a batch of 2 images returned shape (2,); expected the batch first",
    "batch": "forward(x) of a batch of 2 images returned shape (1, 6)",
    "pair": "forward(x) returned a tuple, not a tensor",
    "raises": "forward(x) of a batch shaped (2, 1, 32, 32) (torch.float32) raised RuntimeError: needs a GPU",
    "complex": "forward(x) returned complex latents; return real numbers",
    "nan": "the train latents hold 7,542 NaN and 0 infinite values in 1,257 of 1,257 images",
    "range": "the model's input_range is (1, 0)",
}


@pytest.fixture(scope="module")
def modes(tmp_path_factory):
    path = tmp_path_factory.mktemp("modes") / "modes.py"
    path.write_text(textwrap.dedent(MODES))
    spec = importlib.util.spec_from_file_location("modes_for_api", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


@pytest.mark.parametrize("mode", MODULE_CASES)
def test_modules_whose_output_is_not_latents_raise_the_shells_paragraph(mode, modes, tmp_path):
    path, module = modes
    typed = f"python:{path}:build"
    shell = shell_error(tmp_path / "shell", "run", "--encoder", typed, "--hparam", f"mode={mode}", "--dataset",
                        "digits", "--task", "knn")
    work = tmp_path / "api"
    api = api_error(lambda: repeval.evaluate(module.build(mode), "digits", tasks=("knn",), workdir=work), work)
    assert after(api, "repeval.evaluate(Mode): ") == after(shell, f"--encoder {typed}: ")
    assert MODULE_CASES[mode] in api


def test_an_encoder_that_is_no_module_nor_name():
    assert "encoder is a object; give a registered name" in api_error(
        lambda: repeval.evaluate(object(), "digits", tasks="knn"))
    assert "latent=3: give a family's latent name" in api_error(
        lambda: repeval.evaluate("pca", "digits", tasks="knn", latent=3))


def test_a_module_on_signals_is_refused_as_the_shell_refuses_a_python_encoder(modes, tmp_path):
    path, module = modes
    shell = shell_error(tmp_path / "shell", "run", "--encoder", f"python:{path}:build", "--dataset", "shepard",
                        "--task", "knn")
    work = tmp_path / "api"
    api = api_error(lambda: repeval.evaluate(module.build("fine"), "shepard", tasks=("knn",), workdir=work), work)
    said = "is a model from outside repeval, which repeval feeds images (B, C, 32, 32); 'shepard' holds 1×1024 signals"
    assert said in api and said in shell


# ------------------------------------------------------------------------------ weights that fail to parse
class Tiny(torch.nn.Module):
    def __init__(self, dim: int = 8):
        super().__init__()
        self.enc = torch.nn.Linear(32 * 32, dim)

    def encode(self, x):
        return self.enc(x.flatten(1))


TINY_FILE = """
    import torch


    class Tiny(torch.nn.Module):
        def __init__(self, dim=8):
            super().__init__()
            self.enc = torch.nn.Linear(32 * 32, dim)

        def encode(self, x):
            return self.enc(x.flatten(1))


    def build():
        return Tiny()
"""


def _damaged(kind: str, folder: Path) -> Path:
    """A weights file of Tiny that fails to parse (the kinds of tests/outside/test_python_encoders.py)."""
    from safetensors.torch import save_file

    state = Tiny().state_dict()
    save_file(state, str(folder / "good.safetensors"))
    torch.save(state, folder / "good.pt")
    st, pt = (folder / "good.safetensors").read_bytes(), (folder / "good.pt").read_bytes()
    header = json.dumps({"enc.weight": {"dtype": "F32", "shape": [8, 1024], "data_offsets": [0, 10]}}).encode()
    path = folder / kind
    content = {
        "huge-header.safetensors": struct.pack("<Q", 2**62) + b"garbage!" * 4,
        "huge-header.bin": struct.pack("<Q", 2**62) + b"garbage!" * 4,
        "truncated.safetensors": st[: len(st) // 2],
        "header-not-json.safetensors": struct.pack("<Q", 10) + b"{not json!" + bytes(16),
        "offsets-outside-data.safetensors": struct.pack("<Q", len(header)) + header + bytes(8),
        "empty.safetensors": b"",
        "three-bytes.pt": b"abc",
        "truncated.pt": pt[: len(pt) // 2],
    }
    if kind == "plain-zip.pt":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("hello.txt", "hi")
    else:
        path.write_bytes(content[kind])
    return path


DAMAGED = {
    "huge-header.safetensors": "is not a readable safetensors file (SafetensorError: header too large)",
    "huge-header.bin": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "truncated.safetensors": "is not a readable safetensors file (SafetensorError:",
    "header-not-json.safetensors": "is not a readable safetensors file (SafetensorError: invalid JSON in header",
    "offsets-outside-data.safetensors": "is not a readable safetensors file (SafetensorError:",
    "empty.safetensors": "is empty (0 bytes)",
    "three-bytes.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "truncated.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "plain-zip.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
}


@pytest.mark.parametrize("kind", DAMAGED)
def test_weights_that_fail_to_parse_raise_the_shells_paragraph(kind, tmp_path):
    path = _damaged(kind, tmp_path)
    work = tmp_path / "api"
    api = api_error(lambda: repeval.evaluate(Tiny(), "digits", weights=path, tasks=("knn",), workdir=work), work)
    assert api.startswith(f"--weights {path} ") and DAMAGED[kind] in api
    assert "weights_only=False" not in api and "safetensors.torch.save_file(model.state_dict()" in api
    module = tmp_path / "tiny_weights_model.py"
    module.write_text(textwrap.dedent(TINY_FILE))
    shell = shell_error(tmp_path / "shell", "run", "--encoder", f"python:{module}:build", "--weights", path,
                        "--dataset", "digits", "--task", "knn")
    assert api == shell


def test_weights_that_are_a_folder_or_missing(tmp_path):
    assert "is a folder, not a weights file" in api_error(
        lambda: repeval.evaluate(Tiny(), "digits", weights=tmp_path, tasks="knn"))
    assert "nope.pt: no such file" in api_error(
        lambda: repeval.evaluate(Tiny(), "digits", weights=tmp_path / "nope.pt", tasks="knn"))


def test_a_state_dict_under_a_safetensors_name_loads(tmp_path):
    torch.manual_seed(3)
    trained = Tiny()
    torch.save(trained.state_dict(), tmp_path / "mislabelled.safetensors")
    loaded = repeval.evaluate(Tiny(), "digits", weights=tmp_path / "mislabelled.safetensors", tasks="knn")
    assert loaded.score("knn") == repeval.evaluate(trained, "digits", tasks="knn").score("knn")
