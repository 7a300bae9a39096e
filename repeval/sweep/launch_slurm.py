"""``--launcher slurm``: SLURM job arrays through submitit (extra ``repeval[slurm]``).

The first attempt of every job goes into one job array whose parallelism is bounded
(``--array-parallelism``, SLURM's ``%N``); retries are single jobs. Each job asks for
``--gpus-per-job``, ``--cpus-per-job``, ``--mem-gb``, ``--partition`` and an explicit
``--timeout-min`` (submitit's local executor would otherwise kill a job after 2 minutes);
``--slurm-param KEY=VALUE`` passes anything else submitit accepts for SLURM (e.g.
``--slurm-param account=proj``). On preemption or timeout the job checkpoints and is
requeued (:mod:`repeval.sweep.slurm_job`). The workdir must be on a filesystem the nodes
share; jobs write only their run directories, and the driver alone writes ``repeval.db``.

``--slurm-executor local`` runs the same code path through submitit's local executor, on
this machine and without SLURM (what the default test suite does).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.sweep.registry import Handle, Launcher, LaunchOptions, Session, missing_extra

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED")
SQUEUE_EVERY_S = 10.0


class _OnceAboutSacct:
    """A logging filter: submitit warns about a failing ``sacct`` at every poll on clusters
    without SLURM accounting; say it once (job states then come from ``squeue``)."""

    said = False

    def filter(self, record) -> bool:
        if "sacct error" not in record.getMessage():
            return True
        if self.said:
            return False
        self.said = True
        record.msg, record.args = ("sacct (SLURM accounting) is not available here; repeval reads job states "
                                   "from squeue instead."), ()
        return True


def _first_lines(exc: BaseException, n: int = 6) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: " + " / ".join(line.strip() for line in text[-n:] if line.strip())


class SlurmHandle(Handle):
    def __init__(self, job, cluster: str):
        self.job, self.cluster = job, cluster
        self.where = f"SLURM job {job.job_id}" if cluster == "slurm" else f"submitit local job {job.job_id}"
        self._last_squeue = time.monotonic()
        self._gone_since: float | None = None

    def poll(self) -> int | None:
        if not self.job.done():
            if self.cluster != "slurm" or not self._scheduler_says_ended():
                return None
        try:
            return int(self.job.result())
        except Exception as exc:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError, ...
            self.failure = _first_lines(exc)
            return 1

    def _scheduler_says_ended(self) -> bool:
        """Without SLURM accounting (no sacct) submitit cannot see a job that died without a
        result; ask squeue instead, and call it ended once squeue shows a final state (or no
        longer lists the job) and no result has appeared for a while."""
        if time.monotonic() - self._last_squeue < SQUEUE_EVERY_S:
            return False
        self._last_squeue = time.monotonic()
        try:
            out = subprocess.run(["squeue", "-h", "-j", str(self.job.job_id), "-o", "%T"], capture_output=True,
                                 text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return False
        if out and out.split()[0] not in FINAL_STATES:
            self._gone_since = None
            return False
        self._gone_since = self._gone_since or time.monotonic()
        if time.monotonic() - self._gone_since < 3 * SQUEUE_EVERY_S:
            return False
        if self.job.paths.result_pickle.exists():
            return True
        self.failure = (f"SLURM reports job {self.job.job_id} as {out.split()[0] if out else 'gone'} and it left no "
                        f"result (see {self.job.paths.stderr})")
        return True

    def stop(self) -> None:
        try:
            self.job.cancel(check=False)
        except Exception:  # noqa: BLE001 - already finished
            pass


class SlurmSession(Session):
    def __init__(self, options: LaunchOptions):
        try:
            import submitit
        except ImportError as exc:
            raise UserError(missing_extra("slurm", "submitit", "slurm", exc)) from None
        import logging

        from repeval.sweep import slurm_job  # noqa: F401  (imports submitit: fail here, not on a node)

        logging.getLogger("submitit").addFilter(_OnceAboutSacct())
        self.options = options
        if options.slurm_executor not in ("slurm", "local"):
            raise UserError(f"--slurm-executor {options.slurm_executor!r}: use slurm (submit to SLURM) or local "
                            "(submitit's local executor on this machine, for tests).")
        if options.slurm_executor == "slurm" and shutil.which("sbatch") is None:
            raise UserError("--launcher slurm: no `sbatch` on this machine's PATH, so there is no SLURM to submit "
                            "to. Run the sweep on a SLURM login node, or use --slurm-executor local to run the "
                            "same jobs through submitit on this machine.")
        gpus, cpus = _resources(options)
        self.device = "cuda" if gpus else "cpu"
        self.threads = options.threads or cpus
        self.capacity = 1 << 30  # everything is submitted; SLURM's array parallelism bounds what runs
        self.cluster = options.slurm_executor
        self.submitit = submitit
        self.executor = None  # made in begin(), in the sweep's own folder
        params: dict[str, Any] = {"timeout_min": options.timeout_min, "cpus_per_task": cpus, "gpus_per_node": gpus,
                                  "tasks_per_node": 1, "nodes": 1, "name": "repeval-sweep"}
        if options.mem_gb is not None:
            params["mem_gb"] = options.mem_gb
        parallel = options.jobs if options.jobs is not None else options.array_parallelism
        if parallel < 1:
            raise UserError(f"--jobs / --array-parallelism {parallel}: give at least 1 (jobs of the array that run "
                            "at once).")
        if self.cluster == "slurm":
            params["slurm_array_parallelism"] = parallel
            if options.partition:
                params["slurm_partition"] = options.partition
            for key, value in options.slurm_params.items():
                params[key if key.startswith("slurm_") else f"slurm_{key}"] = value
        elif options.partition or options.slurm_params:
            raise UserError("--partition and --slurm-param apply to SLURM; --slurm-executor local takes neither.")
        self.params = params
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:  # validate now (also for a dry run), submit later
            self._executor(Path(scratch))
        mem = f", {options.mem_gb:g} GB" if options.mem_gb is not None else ""
        where = "SLURM" if self.cluster == "slurm" else "submitit's local executor (no SLURM)"
        self.description = (f"slurm: job array on {where}, at most {parallel} at once, "
                            f"{gpus} GPU(s) and {cpus} CPU(s){mem} per job, timeout {options.timeout_min} min"
                            + (f", partition {options.partition}" if options.partition else ""))

    def _executor(self, folder: Path):
        executor = self.submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        try:
            executor.update_parameters(**self.params)
        except (ValueError, NameError, TypeError) as exc:
            raise UserError(f"submitit rejects the SLURM options {sorted(self.params)}: {exc}. Fix the option named "
                            "there (`repeval sweep --help` lists the SLURM options); nothing was launched.") from None
        return executor

    def begin(self) -> None:
        self.executor = self._executor(self.options.sweep_dir / "submitit")

    def start(self, payloads: list[dict[str, Any]]) -> list[Handle]:
        from repeval.sweep.slurm_job import SweepJob

        env = {"OMP_NUM_THREADS": str(self.threads)}
        payloads = [{**p, "env": {**p.get("env", {}), **env}} for p in payloads]
        try:
            if len(payloads) == 1:
                jobs = [self.executor.submit(SweepJob(), payloads[0])]
            else:
                jobs = self.executor.map_array(SweepJob(), payloads)
        except Exception as exc:  # noqa: BLE001 - sbatch refused the submission
            raise UserError(f"SLURM refused the submission: {_first_lines(exc)}. Check the SLURM options "
                            "(--partition, --gpus-per-job, --mem-gb, --slurm-param); nothing of it runs.") from None
        return [SlurmHandle(job, self.cluster) for job in jobs]


def _resources(options: LaunchOptions) -> tuple[int, int]:
    """(GPUs, CPUs) per job: ``--device cuda`` without ``--gpus-per-job`` means one GPU."""
    if options.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {options.device}: on a cluster launcher use auto, cpu or cuda (each job gets "
                        "its own devices; --gpus-per-job says how many).")
    gpus = options.gpus_per_job
    if gpus is None:
        gpus = 1 if options.device == "cuda" else 0
    if gpus < 0 or (options.device == "cuda" and gpus == 0):
        raise UserError(f"--gpus-per-job {gpus} with --device {options.device}: a CUDA job needs at least one GPU.")
    if options.device == "cpu" and gpus:
        raise UserError(f"--gpus-per-job {gpus} with --device cpu: leave out one of them.")
    cpus = options.cpus_per_job or options.threads or 1
    if cpus < 1:
        raise UserError(f"--cpus-per-job {cpus}: give at least 1.")
    return gpus, cpus


SLURM = Launcher("slurm", "SLURM job arrays through submitit (pip install 'repeval[slurm]'); --slurm-executor local "
                 "runs the same path on this machine", SlurmSession, extra="slurm")
