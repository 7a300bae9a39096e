"""`python:MODULE:FACTORY --weights FILE`: a user's model probed like any run, every bad input refused.

Bad inputs exit 2 with one paragraph and store nothing (``Cli.fails``); files whose loading
would run code (TorchScript, torch.export, pickles) are refused before anything runs them.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch

RUN = ("run", "--task", "linear", "--task", "knn", "--dataset", "digits")

MODES = """
    import json

    import torch
    from torch import nn


    class Mode(nn.Module):
        '''A flatten-and-slice encoder whose output shows one kind of fault.'''

        def __init__(self, mode, log=None):
            super().__init__()
            self.mode, self.log = mode, log
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            if self.log:
                with open(self.log, "a") as f:
                    f.write(json.dumps({"shape": list(x.shape), "min": float(x.min()), "max": float(x.max())}) + "\\n")
            z = self.scale * x.flatten(1)[:, :6]
            if self.mode == "rank":
                return z.sum(1)
            if self.mode == "batch":
                return z[:1]
            if self.mode == "tuple":
                return z, z
            if self.mode == "nan":
                z = z.clone()
                z[x[:, 0, 16, 16] > 0, 2] = float("nan")
            return z


    def rank():
        return Mode("rank")


    def batch():
        return Mode("batch")


    def pair():
        return Mode("tuple")


    def nan():
        return Mode("nan")


    def fine(log=None):
        return Mode("fine", log)


    def contract(log=None):
        m = Mode("fine", log)
        m.input_range, m.input_size, m.input_channels = (0.0, 1.0), 28, 3
        return m


    def bad_range():
        m = Mode("fine")
        m.input_range = (1, 0)
        return m


    def number():
        return 42


    def raises():
        raise RuntimeError("needs a GPU")


    class Decodes(Mode):
        def decode(self, z):
            return z[:, :3]


    def bad_decode():
        return Decodes("fine")


    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            from tiny_model import Tiny

            self.net = Tiny()

        def encode(self, x):
            return self.net.encode(x)


    def wrapped():
        return Wrapped()
"""


@pytest.fixture
def modes(module_file, tiny):
    return module_file(MODES, "modes.py")  # beside tiny_model.py, which Wrapped imports


def python(path, factory):
    return f"python:{path}:{factory}"


# ------------------------------------------------------------------------------ end to end
def test_model_with_safetensors_is_probed_stored_and_identified_by_its_files(cli, tiny, tiny_weights, digits_arrays):
    weights = tiny_weights()
    rows = cli.json(*RUN, "--encoder", python(tiny, "build"), "--weights", weights, "--json")
    assert {(r["encoder"], r["latent"], r["latent_dim"], r["task"]) for r in rows} == {
        ("tiny-8-0", "embedding", 8, "linear"), ("tiny-8-0", "embedding", 8, "knn")}
    (run_dir,) = (cli.workdir / "checkpoints").iterdir()
    spec = json.loads((run_dir / "spec.json").read_text())
    external = json.loads((run_dir / "provenance.json").read_text())["external"]
    from repeval.paths import file_digest

    assert spec["source"] == {"kind": "python", "factory": "build", "module_sha256": file_digest(tiny),
                              "weights_sha256": file_digest(weights), "strip_prefix": None, "add_prefix": None}
    assert external["weights_format"] == "safetensors" and external["weights_keys"] == 4
    assert external["factory"] == f"{tiny}:build" and external["class"] == "Tiny" and external["decoder"]
    assert (run_dir / "previews-embedding.npz").is_file()  # it decodes, so it has previews
    # the same weights give the same latents: the linear probe agrees with a direct computation
    other = tiny_weights(seed=1, name="tiny-8-0.safetensors")  # same stem (name), new contents: another run
    again = cli.json(*RUN, "--encoder", python(tiny, "build"), "--weights", other, "--json")
    assert {r["encoder"] for r in again} == {"tiny-8-0"}
    assert {r["run_id"] for r in rows}.isdisjoint({r["run_id"] for r in again})


def test_pt_state_dicts_hparams_as_factory_arguments_and_prefix_renames(cli, tiny, tiny_weights, modes):
    rows = cli.json(*RUN, "--encoder", python(tiny, "build"), "--weights", tiny_weights(dim=5, fmt="pt"),
                    "--hparam", "dim=5", "--name", "five", "--json")
    assert {(r["encoder"], r["latent_dim"]) for r in rows} == {("five", 5)}
    prefixed = tiny_weights(fmt="pt", prefix="module.")
    cli(*RUN, "--encoder", python(tiny, "build"), "--weights", prefixed, "--strip-prefix", "module.")
    cli(*RUN, "--encoder", python(modes, "wrapped"), "--weights", tiny_weights(), "--add-prefix", "net.",
        "--name", "wrapped")
    assert {r["encoder"] for r in cli.json("results", "--format", "json")} == {"five", "tiny-8-0module_", "wrapped"}


def test_declared_input_contract_is_honoured_and_latents_are_cached(cli, modes, tmp_path):
    log = tmp_path / "seen.jsonl"
    args = (*RUN, "--encoder", python(modes, "contract"), "--hparam", f"log={log}")
    cli(*args)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(s["shape"][1:] == [3, 28, 28] and 0.0 <= s["min"] <= s["max"] <= 1.0 for s in seen)
    assert sum(s["shape"][0] for s in seen if s["shape"][0] > 2) == 1257 + 540
    log.write_text("")
    cli(*args)  # the same run again: the latents come from the run directory's cache
    assert [json.loads(line)["shape"][0] for line in log.read_text().splitlines()] == [2]  # the dry batch only


@pytest.mark.slow
def test_a_model_with_decode_runs_the_interpolation_task_one_without_skips_it(cli, tiny, tiny_weights, modes):
    weights = tiny_weights()
    rows = cli.json("run", "--task", "interpolation", "--dataset", "lines", "--encoder", python(tiny, "build"),
                    "--weights", weights, "--json")
    assert {r["metric"] for r in rows} == {"mean_distance", "smoothness", "smoothness_strict", "detour",
                                           "endpoint_error", "n_undefined"}
    result = cli("run", "--task", "interpolation", "--task", "knn", "--dataset", "lines", "--encoder",
                 python(modes, "fine"), "--json")
    assert "task 'interpolation' decodes latents and the model has no decode(z); skipped" in result.output
    assert {r["task"] for r in json.loads(result.stdout)} == {"knn"}


# ------------------------------------------------------------------------------ bad modules and factories
def test_module_that_is_missing_not_importable_or_broken(cli, module_file, tmp_path):
    cli.fails(*RUN, "--encoder", python(tmp_path / "nope.py", "build"), says="the module file")
    cli.fails(*RUN, "--encoder", "python:no_such_pkg.models:build",
              says=("importing module 'no_such_pkg.models' failed with ModuleNotFoundError", "PYTHONPATH"))
    broken = module_file("def build(:\n", "broken.py")
    cli.fails(*RUN, "--encoder", python(broken, "build"), says=("importing", "failed with SyntaxError"))
    cli.fails(*RUN, "--encoder", "python:justamodule", says="python:MODULE:FACTORY")


def test_factory_that_is_missing_raises_or_returns_no_module(cli, modes):
    cli.fails(*RUN, "--encoder", python(modes, "nope"), says=("has no 'nope'", "contract, fine,"))
    cli.fails(*RUN, "--encoder", python(modes, "raises"), says="calling raises() raised RuntimeError: needs a GPU")
    cli.fails(*RUN, "--encoder", python(modes, "number"), says="number() returned a int, not a torch.nn.Module")
    cli.fails(*RUN, "--encoder", python(modes, "fine"), "--hparam", "width=3",
              says="calling fine(width=3) raised TypeError")


@pytest.mark.parametrize("factory, says", [
    ("rank", "forward(x) of a batch of 2 images returned shape (2,)"),
    ("batch", "forward(x) of a batch of 2 images returned shape (1, 6)"),
    ("pair", "forward(x) returned a tuple, not a tensor"),
    ("bad_range", "the model's input_range is (1, 0)"),
    ("bad_decode", "decode(z) of 2 latents returned shape (2, 3)"),
])
def test_outputs_of_the_wrong_kind(cli, modes, factory, says):
    cli.fails(*RUN, "--encoder", python(modes, factory), says=says)


def test_nan_latents_are_counted_and_located(cli, modes):
    from repeval import data

    train = data.load("digits").train.x[:, 0, 16, 16].numpy()
    bright = np.flatnonzero(train >= 128)  # to_float(x) > 0
    assert 0 < len(bright) < len(train)
    cli.fails(*RUN, "--encoder", python(modes, "nan"),
              says=f"the train latents hold {len(bright):,} NaN and 0 infinite values in {len(bright):,} of 1,257 "
                   f"images (first at image {bright[0]:,}, dimension 2)")


# ------------------------------------------------------------------------------ bad weights
def test_weights_that_are_missing_junk_or_do_not_fit(cli, tiny, tiny_weights, tmp_path):
    enc = python(tiny, "build")
    cli.fails(*RUN, "--encoder", enc, "--weights", tmp_path / "nope.safetensors", says="nope.safetensors: no such file")
    (tmp_path / "junk.bin").write_bytes(b"\x00junk" * 20)
    cli.fails(*RUN, "--encoder", enc, "--weights", tmp_path / "junk.bin",
              says="is neither a safetensors file nor a PyTorch weights file")
    message = cli.fails(*RUN, "--encoder", enc, "--weights", tiny_weights(prefix="module."),
                        says=("does not fit the model", "missing from the file (4): enc.weight, enc.bias",
                              "in the file but not in the model (4): module.dec.bias",
                              "add --strip-prefix module."))
    assert "--add-prefix" in message
    cli.fails(*RUN, "--encoder", enc, "--weights", tiny_weights(dim=4),
              says="with other shapes (3): enc.weight [file (4, 1024), model (8, 1024)], enc.bias [file (4,), "
                   "model (8,)]")
    cli.fails(*RUN, "--encoder", enc, "--weights", tiny_weights(), "--add-prefix", "x.",
              says=("(after --add-prefix x.)", "add --strip-prefix x."))


def _damaged(kind: str, folder, good_safetensors, good_pt):
    """A weights file that fails to parse, in one of the ways files get damaged or mistaken."""
    import io
    import struct

    path = folder / kind
    st, pt = good_safetensors.read_bytes(), good_pt.read_bytes()
    header = json.dumps({"enc.weight": {"dtype": "F32", "shape": [8, 1024], "data_offsets": [0, 10]}}).encode()
    legacy = io.BytesIO()
    torch.save({"w": torch.zeros(64, 64)}, legacy, _use_new_zipfile_serialization=False)
    content = {
        "huge-header.safetensors": struct.pack("<Q", 2**62) + b"garbage!" * 4,
        "huge-header.bin": struct.pack("<Q", 2**62) + b"garbage!" * 4,
        "header-past-the-end.safetensors": struct.pack("<Q", 10**7) + b'{"a": 1',
        "truncated.safetensors": st[: len(st) // 2],
        "truncated-header.safetensors": st[:20],
        "header-not-json.safetensors": struct.pack("<Q", 10) + b"{not json!" + bytes(16),
        "header-not-utf8.safetensors": struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc",
        "header-a-list.safetensors": struct.pack("<Q", 2) + b"[]",
        "offsets-outside-data.safetensors": struct.pack("<Q", len(header)) + header + bytes(8),
        "empty.safetensors": b"",
        "empty.pt": b"",
        "three-bytes.pt": b"abc",
        "text.pt": b"hello world\n" * 10,
        "truncated.pt": pt[: len(pt) // 2],
        "no-central-directory.pt": pt[:-30],
        "legacy-truncated.pt": legacy.getvalue()[: len(legacy.getvalue()) // 2],
    }
    if kind == "plain-zip.pt":  # a valid zip that is no torch archive
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("hello.txt", "hi")
    elif kind == "npz.pt":
        np.savez(path.with_suffix(".npz"), a=np.zeros(3))
        path.with_suffix(".npz").rename(path)
    elif kind == "folder.pt":
        path.mkdir()
    else:
        path.write_bytes(content[kind])
    return path


DAMAGED = {  # file -> what the one paragraph says
    "huge-header.safetensors": "is not a readable safetensors file (SafetensorError: header too large)",
    "huge-header.bin": "is neither a safetensors file nor a PyTorch weights file",
    "header-past-the-end.safetensors": "is not a readable safetensors file (SafetensorError:",
    "truncated.safetensors": "is not a readable safetensors file (SafetensorError:",
    "truncated-header.safetensors": "is not a readable safetensors file (SafetensorError:",
    "header-not-json.safetensors": "is not a readable safetensors file (SafetensorError: invalid JSON in header",
    "header-not-utf8.safetensors": "is not a readable safetensors file (SafetensorError:",
    "header-a-list.safetensors": "is not a readable safetensors file (SafetensorError:",
    "offsets-outside-data.safetensors": "is not a readable safetensors file (SafetensorError:",
    "empty.safetensors": "is empty (0 bytes)",
    "empty.pt": "is empty (0 bytes)",
    "three-bytes.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "text.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "truncated.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "no-central-directory.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "legacy-truncated.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "plain-zip.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "npz.pt": "is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says",
    "folder.pt": "is a directory",  # click refuses it (the API says "is a folder, not a weights file")
}


@pytest.mark.parametrize("kind", DAMAGED)
def test_weights_that_fail_to_parse_are_one_paragraph(cli, tiny, tiny_weights, tmp_path, kind):
    path = _damaged(kind, tmp_path, tiny_weights(), tiny_weights(fmt="pt"))
    message = cli.fails(*RUN, "--encoder", python(tiny, "build"), "--weights", path,
                        says=(str(path) if kind == "folder.pt" else f"--weights {path} ", DAMAGED[kind]))
    assert "weights_only=False" not in message and "weights_only` set to `False`" not in message  # never advised
    if kind != "folder.pt":
        assert "safetensors.torch.save_file(model.state_dict()" in message  # the fix


def test_a_state_dict_saved_under_a_safetensors_name_loads_as_pytorch(cli, tiny, tiny_weights, tmp_path):
    path = tmp_path / "mislabelled.safetensors"
    tiny_weights(fmt="pt").rename(path)  # torch.save's format; torch.load would hand the name to safetensors
    cli("run", "--task", "knn", "--dataset", "digits", "--encoder", python(tiny, "build"), "--weights", path)
    (run_dir,) = (cli.workdir / "checkpoints").iterdir()
    external = json.loads((run_dir / "provenance.json").read_text())["external"]
    assert external["weights_format"] == "pytorch (weights_only=True)" and external["weights_keys"] == 4


def test_training_checkpoint_dicts_point_at_their_state_dict(cli, tiny, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"enc.weight": torch.zeros(8, 1024)}, "epoch": 3}, path)
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--weights", path,
              says=("not all named tensors (keys: state_dict, epoch)", "under 'state_dict'"))


class Payload:
    """Unpickling this runs a shell command (the classic malicious checkpoint)."""

    marker = ""

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickles_with_code_are_refused_and_never_run(cli, tiny, tmp_path):
    marker = tmp_path / "pwned"
    Payload.marker = str(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"enc.weight": torch.zeros(8, 1024), "payload": Payload()}, evil)
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--weights", evil,
              says=("holds pickled Python objects (it refers to", "system", "would run code"))
    assert not marker.exists()


def test_whole_pickled_models_torchscript_and_export_archives_are_refused(cli, tiny, tmp_path):
    from torch import nn

    model = nn.Sequential(nn.Linear(1024, 8))
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--weights", whole,
              says=("holds pickled Python objects (it refers to torch.nn.modules", "safetensors.torch.save_file"))
    scripted = tmp_path / "scripted.pt"
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(model), scripted)
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--weights", scripted,
              says="is a TorchScript archive. Loading one runs the code inside it")
    exported = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1024),)), exported)
    assert zipfile.is_zipfile(exported)
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--weights", exported, says="is a torch.export program")


def test_options_that_do_not_fit_the_encoders_named(cli, tiny, tiny_weights):
    weights = tiny_weights()
    cli.fails(*RUN, "--encoder", "acai", "--weights", weights, says="this command names no python: encoder")
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--encoder", f"python:{tiny}:Tiny", "--weights", weights,
              says="names 2 python: encoders")
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--strip-prefix", "m.", says="give --weights too")
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--name", "pca", says="registered family 'pca'")
    cli.fails(*RUN, "--encoder", python(tiny, "build"), "--latent", "map", says="No chosen encoder has a latent 'map'")
