"""The launcher registry: where a sweep's jobs run (``repeval sweep --launcher NAME``).

A :class:`Launcher` opens a :class:`Session` for the sweep's options; the session says what
the jobs compute on (``device``), how many the driver keeps in flight (``capacity``) and
starts job payloads (:mod:`repeval.sweep.worker`), returning a :class:`Handle` per job that
the driver polls. A launcher never changes what a job computes. Built-ins: ``local``,
``slurm`` (submitit, extra ``repeval[slurm]``) and ``ray`` (extra ``repeval[ray]``); outside
packages add launchers through the entry-point group ``repeval.launchers``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from repeval.registry import Registry


@dataclass
class LaunchOptions:
    """Everything a launcher may use; each launcher reads its own and validates them."""

    workdir: Path
    sweep_dir: Path
    device: str = "auto"  # auto, cpu, cuda
    jobs: int | None = None  # local: concurrent jobs; ray: CPUs of a local Ray = jobs x cpus per job
    threads: int | None = None  # CPU threads per job
    jobs_per_gpu: int | None = None
    retries: int = 2
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    partition: str | None = None
    timeout_min: int = 24 * 60
    array_parallelism: int = 64
    slurm_params: dict[str, Any] = field(default_factory=dict)
    slurm_executor: str = "slurm"  # slurm, or local (submitit's local executor: no SLURM needed)
    ray_address: str | None = None

    @property
    def cores(self) -> int:
        from repeval.threads import available_cores

        return len(available_cores())


class Handle:
    """One started job attempt."""

    where: str = ""
    failure: str = ""  # what the launcher itself reported (e.g. a scheduler's error), if anything

    def poll(self) -> int | None:
        """``None`` while the job runs, else its exit status."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the job to stop: it checkpoints first."""
        raise NotImplementedError

    def kill(self) -> None:
        """Stop the job at once (after a second Ctrl-C)."""
        self.stop()


class Session:
    """A launcher opened for one sweep."""

    device: str = "cpu"
    threads: int | None = None
    capacity: int = 1
    description: str = ""
    env: dict[str, str]

    def begin(self) -> None:
        """Called once before the first job starts (e.g. Ray starts here, not for a dry run)."""

    def start(self, payloads: list[dict[str, Any]]) -> list[Handle]:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Launcher:
    name: str
    summary: str
    open: Callable[[LaunchOptions], Session]
    extra: str | None = None  # the pip extra it needs, e.g. "slurm"


LAUNCHERS: Registry[Launcher] = Registry("launcher", "repeval.launchers", "`repeval sweep --help` lists them.")


def register(launcher: Launcher) -> Launcher:
    return LAUNCHERS.register(launcher)


def missing_extra(launcher: str, module: str, extra: str, exc: BaseException) -> str:
    """The one-paragraph message for a launcher whose optional dependency is not installed."""
    return (f"--launcher {launcher} needs the Python package {module!r}, which is not importable here ({exc}). "
            f"Install it with: pip install 'repeval[{extra}]' (or pip install {module}); nothing was launched.")


def python() -> str:
    return sys.executable
