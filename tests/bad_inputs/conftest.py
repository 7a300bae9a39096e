"""Fixtures of the bad-input suite: a store with runs in it, copied for every case."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from badinput_support import SEED_RUNS, Ctx
from click.testing import CliRunner

from repeval.cli import main


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A workdir with two runs and their scores (made once; every case works on a copy)."""
    work = tmp_path_factory.mktemp("seeded") / "work"
    for args in SEED_RUNS:
        result = CliRunner().invoke(main, args, env={"REPEVAL_HOME": str(work)}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    with sqlite3.connect(work / "repeval.db") as conn:
        runs = dict(conn.execute("SELECT encoder, run_id FROM runs"))
    conn.close()
    assert set(runs) == {"baseline", "pca"}
    return work, runs


@pytest.fixture
def ctx(seeded_store, tmp_path) -> Ctx:
    work, runs = seeded_store
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return Ctx(copy, scratch, runs)

