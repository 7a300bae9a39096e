"""Fixtures of the sweep tests: a cache shared by their processes, one uninterrupted reference sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import run_sweep, score_rows


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep-cache")


@pytest.fixture(scope="session")
def reference(tmp_path_factory, sweep_cache):
    """An uninterrupted 2-worker sweep of GRID: (workdir, score rows)."""
    work = tmp_path_factory.mktemp("reference")
    run_sweep(work, sweep_cache, "--jobs", "2")
    rows = score_rows(work)
    assert {r[0].split("-")[0] for r in rows} == {"baseline", "pixels"}
    return work, rows
