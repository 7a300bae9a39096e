"""Shared test set-up: an isolated cache per test session, and the opt-in data root."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _fp32_everywhere():
    """fp32 for the whole session, module- and session-scoped fixtures included (they are built
    before any function-scoped fixture runs): the suite's numbers must not depend on the machine,
    and on a CPU with native bf16 ``--precision auto`` would train in bf16. A test that changes
    either (tests/test_precision.py) does so with its own ``monkeypatch``, undone after it."""
    from repeval import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPEVAL_PRECISION", "fp32")
        patch.setattr(precision, "cpu_bf16", lambda: None)
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes dataset caches into a fresh temporary folder, never ~/.cache."""
    monkeypatch.setenv("REPEVAL_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("REPEVAL_DATA", raising=False)
    monkeypatch.delenv("REPEVAL_HOME", raising=False)
    monkeypatch.delenv("REPEVAL_ALLOW_UNVERIFIED", raising=False)


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The data root of real datasets named by REPEVAL_TEST_DATA (opt-in tests skip without it)."""
    root = os.environ.get("REPEVAL_TEST_DATA")
    if not root:
        pytest.skip("set REPEVAL_TEST_DATA to a torchvision-layout data root to run this test")
    return Path(root)
