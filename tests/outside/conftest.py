"""Shared set-up of the outside-encoder tests: the CLI, the "nothing stored" check, users' files."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from repeval.cli import main


class Cli:
    """``repeval`` in-process, with its own workdir; ``fails`` checks the bad-input contract."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0):
        result = self.runner.invoke(main, [*map(str, args)], env={"REPEVAL_HOME": str(self.workdir)},
                                    catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    def fails(self, *args: str, says: tuple[str, ...] | str = ()) -> str:
        """Run a command that must fail on bad input: exit 2, one paragraph without a traceback,
        naming what ``says`` lists, and nothing stored (no run directory, no run or score row)."""
        before = self.stored()
        out = self(*args, expect=2).output
        message = out[out.index("Error: "):].strip()
        assert "Traceback" not in out, out
        assert message.startswith("Error: ") and "\n" not in message, out  # one paragraph
        for text in ([says] if isinstance(says, str) else says):
            assert text in message, f"{text!r} not in: {message}"
        assert self.stored() == before, "a failed command stored something"
        return message

    def stored(self) -> tuple[int, int, tuple[str, ...]]:
        """(runs, scores, run directories) in the workdir."""
        db = self.workdir / "repeval.db"
        counts = (0, 0)
        if db.is_file():
            with sqlite3.connect(db) as conn:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if {"runs", "scores"} <= tables:
                    counts = tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "scores"))
        dirs = self.workdir / "checkpoints"
        return (*counts, tuple(sorted(p.name for p in dirs.iterdir())) if dirs.is_dir() else ())

    def json(self, *args: str):
        return json.loads(self(*args).stdout)


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path / "work")


@pytest.fixture(scope="session")
def digits_arrays():
    """The digits splits as flat float images in [0, 1] and labels (numpy)."""
    from repeval import data

    ds = data.load("digits")
    flat = {split: getattr(ds, split).x.numpy().reshape(len(getattr(ds, split)), -1) / 255.0
            for split in ("train", "test")}
    return flat["train"], ds.train.y.numpy(), flat["test"], ds.test.y.numpy()


@pytest.fixture
def embeddings(tmp_path, digits_arrays):
    """``embeddings(**changes)`` writes an npz of digits embeddings (a fixed random projection
    to 12 dimensions, digits labels, meta naming the dataset) with ``changes`` applied (an
    array, or None to leave the key out) and returns its path."""
    x_train, y_train, x_test, y_test = digits_arrays
    projection = np.random.default_rng(0).normal(size=(x_train.shape[1], 12))
    base = {"z_train": x_train @ projection, "y_train": y_train, "z_test": x_test @ projection,
            "y_test": y_test, "meta": np.array(json.dumps({"dataset": "digits", "encoder": "projection"}))}
    count = [0]

    def write(name: str | None = None, **changes) -> Path:
        count[0] += 1
        path = tmp_path / (name or f"emb{count[0]}.npz")
        arrays = {k: v for k, v in {**base, **changes}.items() if v is not None}
        np.savez(path, **arrays)
        return path

    return write


@pytest.fixture
def module_file(tmp_path):
    """``module_file(source, name)`` writes a Python module (dedented) and returns its path."""

    def write(source: str, name: str = "user_model.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    return write


TINY_MODEL = """
    import torch
    from torch import nn


    class Tiny(nn.Module):
        '''A linear encoder of 32x32 grey images to DIM values, and a linear decoder.'''

        def __init__(self, dim=8):
            super().__init__()
            self.enc = nn.Linear(32 * 32, dim)
            self.dec = nn.Linear(dim, 32 * 32)

        def encode(self, x):
            return self.enc(x.flatten(1))

        def decode(self, z):
            return torch.tanh(self.dec(z)).view(-1, 1, 32, 32)


    def build(dim=8):
        return Tiny(dim)
"""


@pytest.fixture
def tiny(module_file):
    """The TINY_MODEL module's path."""
    return module_file(TINY_MODEL, "tiny_model.py")


@pytest.fixture
def tiny_weights(tmp_path, tiny):
    """``tiny_weights(dim=8, seed=0, fmt="safetensors", prefix="")`` saves a Tiny's state dict."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("tiny_for_weights", tiny)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def save(dim: int = 8, seed: int = 0, fmt: str = "safetensors", prefix: str = "", name: str | None = None):
        torch.manual_seed(seed)
        state = {prefix + k: v for k, v in module.build(dim).state_dict().items()}
        path = tmp_path / (name or f"tiny-{dim}-{seed}{prefix.replace('.', '_')}.{'pt' if fmt == 'pt' else fmt}")
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(state, str(path))
        else:
            torch.save(state, path)
        return path

    return save
