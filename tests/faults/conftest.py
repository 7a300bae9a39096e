"""Fixtures of the fault-injection suite: the process launcher and the uninterrupted runs that
every interrupted one must end up equal to."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # html_tables, shared with the report tests

from faultlib import RUN, TRAIN, Launcher  # noqa: E402


@pytest.fixture(scope="session")
def launcher(tmp_path_factory) -> Launcher:
    """Processes of the fork server (one per command), with a shared dataset cache."""
    scratch = tmp_path_factory.mktemp("processes")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the fork server imports torch with it
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPEVAL_")}
    env.update(OMP_NUM_THREADS="1", REPEVAL_CACHE=str(scratch / "cache"), MPLBACKEND="Agg")
    launcher = Launcher(scratch, env)
    launcher.run(["tasks"])  # starts the fork server: its imports are paid here, once
    return launcher


@dataclass
class Reference:
    """The uninterrupted runs: a training (``train_work``), a store with two runs probed by every
    task (``work``), its report and baseline, and how long each command took."""

    train_work: Path
    work: Path
    report: Path
    baseline: Path
    seconds: dict[str, float]


@pytest.fixture(scope="session")
def reference(launcher, tmp_path_factory) -> Reference:
    root = tmp_path_factory.mktemp("reference")
    seconds = {}

    def timed(name, args):
        t0 = time.monotonic()
        launcher.run(args)
        seconds[name] = time.monotonic() - t0

    timed("train", [*TRAIN, "--workdir", root / "train"])
    timed("run", [*RUN, "--workdir", root / "work"])
    timed("report", ["report", "--workdir", root / "work", "--out", root / "report.html"])
    timed("check", ["check", "--workdir", root / "work", "--write-baseline", root / "baseline.json"])
    return Reference(root / "train", root / "work", root / "report.html", root / "baseline.json", seconds)
