"""``--launcher ray``: Ray core tasks (extra ``repeval[ray]``).

Each job is one Ray task asking for ``--gpus-per-job`` GPUs (Ray sets
``CUDA_VISIBLE_DEVICES`` for it) and ``--cpus-per-job`` CPUs; Ray retries a task whose
worker process died up to ``--retries`` times (``max_retries``), and the driver retries a
job whose ``repeval run`` failed. ``--ray-address`` joins an existing cluster (repeval must
be installed on its nodes and the workdir shared with them); without it a local Ray is
started on this machine (``--jobs N`` caps its CPUs at N x CPUs per job) and shut down at the
end. What a task returns is only its exit status: the results are the run directories.
"""

from __future__ import annotations

from typing import Any

from repeval.errors import UserError
from repeval.sweep.launch_slurm import _first_lines, _resources
from repeval.sweep.registry import Handle, Launcher, LaunchOptions, Session, missing_extra


def run_task(payload: dict[str, Any]) -> int:
    """The Ray task: one sweep job on whichever node Ray chose."""
    from repeval.sweep import worker

    return worker.run_job(payload)


class RayHandle(Handle):
    def __init__(self, ref, ray):
        self.ref, self.ray = ref, ray
        self.where = f"Ray task {ref.task_id().hex()[:12]}"

    def poll(self) -> int | None:
        ready, _ = self.ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            return int(self.ray.get(self.ref))
        except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, TaskCancelledError, ...
            self.failure = _first_lines(exc)
            return 1

    def stop(self) -> None:
        try:
            self.ray.cancel(self.ref)  # raises KeyboardInterrupt in the task: the job checkpoints
        except Exception:  # noqa: BLE001 - already finished
            pass

    def kill(self) -> None:
        try:
            self.ray.cancel(self.ref, force=True)
        except Exception:  # noqa: BLE001
            pass


class RaySession(Session):
    def __init__(self, options: LaunchOptions):
        try:
            import ray
        except ImportError as exc:
            raise UserError(missing_extra("ray", "ray", "ray", exc)) from None
        if options.jobs is not None and options.jobs < 1:
            raise UserError(f"--jobs {options.jobs}: give at least 1.")
        if options.partition or options.slurm_params:
            raise UserError("--partition and --slurm-param apply to --launcher slurm, not ray.")
        self.ray, self.options = ray, options
        self.gpus, self.cpus = _resources(options)
        self.device = "cuda" if self.gpus else "cpu"
        self.threads = options.threads or self.cpus
        self.capacity = 1 << 30  # Ray schedules by the resources each task asks for
        self.started_here = False
        self.remote = None
        where = f"the Ray cluster at {options.ray_address}" if options.ray_address else "a local Ray on this machine"
        self.description = (f"ray: tasks on {where}, {self.gpus} GPU(s) and {self.cpus} CPU(s) per job, "
                            f"max_retries {options.retries}")

    def begin(self) -> None:
        """Start (or join) Ray: only once the plan has something to run."""
        ray, options = self.ray, self.options
        if not ray.is_initialized():
            init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if options.ray_address:
                init["address"] = options.ray_address
            elif options.jobs is not None:
                init["num_cpus"] = options.jobs * self.cpus
            try:
                ray.init(**init)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError ...
                raise UserError(f"Ray could not start or connect ({_first_lines(exc)}). Check --ray-address "
                                "(host:port of a running cluster, or leave it out for a local Ray).") from None
            self.started_here = True
        available = ray.cluster_resources()
        if self.gpus > available.get("GPU", 0) or self.cpus > available.get("CPU", 0):
            self.close()
            raise UserError(f"Each job asks for {self.gpus} GPU(s) and {self.cpus} CPU(s), but the Ray cluster has "
                            f"{available.get('GPU', 0):g} GPU(s) and {available.get('CPU', 0):g} CPU(s): no job "
                            "could ever start. Lower --gpus-per-job / --cpus-per-job; nothing was launched.")
        self.remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=options.retries)(run_task)

    def start(self, payloads: list[dict[str, Any]]) -> list[Handle]:
        env = {"OMP_NUM_THREADS": str(self.threads)}
        return [RayHandle(self.remote.remote({**p, "env": {**p.get("env", {}), **env}}), self.ray) for p in payloads]

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


RAY = Launcher("ray", "Ray core tasks, on a local Ray or an existing cluster (--ray-address); "
               "pip install 'repeval[ray]'", RaySession, extra="ray")
