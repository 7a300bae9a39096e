"""Fixtures of the Python API tests: digits projected to small embeddings, a CLI runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from repeval.cli import main


@pytest.fixture(scope="session")
def projected():
    """Digits train/test images projected by a fixed random matrix to 12 dimensions, and labels."""
    from repeval import data

    ds = data.load("digits")
    flat = {s: getattr(ds, s).x.numpy().reshape(len(getattr(ds, s)), -1) / 255.0 for s in ("train", "test")}
    projection = np.random.default_rng(0).normal(size=(flat["train"].shape[1], 12))
    return (flat["train"] @ projection, ds.train.y.numpy(), flat["test"] @ projection, ds.test.y.numpy())


@pytest.fixture
def shell(tmp_path):
    """``shell(*args)`` runs the command line in-process with --workdir TMP/work; returns stdout."""
    workdir = tmp_path / "work"

    def run(*args: str, expect: int = 0) -> str:
        result = CliRunner().invoke(main, [*args, "--workdir", str(workdir)], catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result.stdout

    run.workdir = workdir
    run.json = lambda *args: json.loads(run(*args))
    return run
