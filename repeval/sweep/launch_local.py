"""``--launcher local`` (the default): a pool of worker processes on this machine.

On a machine with GPUs, one job per visible device (``CUDA_VISIBLE_DEVICES`` set per job to
one of the devices the driver sees), or ``--jobs-per-gpu N`` jobs sharing each device. On a
CPU, ``--jobs N`` workers (default 1) with ``--threads`` each (default: cores / jobs). Each
job is a process of its own (``python -m repeval.sweep.worker``, which runs ``repeval run``),
in its own process group, so the terminal's Ctrl-C reaches only the driver, which then asks
every job to checkpoint and stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.paths import atomic_write_text
from repeval.sweep.jobs import LOG_NAME
from repeval.sweep.registry import Handle, Launcher, LaunchOptions, Session, python


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (ids or UUIDs)."""
    import torch

    if not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None and listed.strip():
        return [d.strip() for d in listed.split(",") if d.strip()][:n]
    return [str(i) for i in range(n)]


class LocalHandle(Handle):
    def __init__(self, process: subprocess.Popen, slot: int, gpu: str | None):
        self.process, self.slot, self.gpu = process, slot, gpu
        self.where = f"pid {process.pid}" + (f", GPU {gpu}" if gpu is not None else "")

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the worker passes it on; the job checkpoints

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the worker and its `repeval run`
            except ProcessLookupError:
                pass


class LocalSession(Session):
    def __init__(self, options: LaunchOptions):
        from repeval.devices import resolve_device

        self.options = options
        if options.jobs is not None and options.jobs < 1:
            raise UserError(f"--jobs {options.jobs}: give at least 1 (the number of jobs that run at once).")
        if options.threads is not None and options.threads < 1:
            raise UserError(f"--threads {options.threads}: give at least 1.")
        if options.jobs_per_gpu is not None and options.jobs_per_gpu < 1:
            raise UserError(f"--jobs-per-gpu {options.jobs_per_gpu}: give at least 1.")
        device = resolve_device(options.device)
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        if self.device == "cuda":
            gpus = visible_gpus()
            if device.startswith("cuda:"):
                index = int(device.partition(":")[2])
                if index >= len(gpus):
                    raise UserError(f"--device {device}: this machine shows {len(gpus)} GPU(s).")
                gpus = [gpus[index]]
            per = options.jobs_per_gpu or 1
            self.slots: list[str | None] = [g for g in gpus for _ in range(per)]
            if options.jobs is not None:
                self.slots = self.slots[:options.jobs]
            where = f"{len(gpus)} GPU(s) ({', '.join(gpus)}), {per} job(s) per GPU"
        else:
            if options.jobs_per_gpu is not None:
                raise UserError("--jobs-per-gpu applies to GPUs, and this sweep runs on the CPU. Use --jobs N "
                                "for N jobs at once on the CPU.")
            self.slots = [None] * (options.jobs or 1)
            where = "the CPU"
        self.capacity = len(self.slots)
        self.threads = options.threads or max(1, options.cores // self.capacity)
        self.description = (f"local: {self.capacity} job(s) at once on {where}, {self.threads} thread(s) each "
                            f"({options.cores} core(s) here)")
        self.busy: dict[int, LocalHandle] = {}

    def _free_slot(self) -> int:
        for slot, handle in list(self.busy.items()):
            if handle.poll() is not None:
                del self.busy[slot]
        free = [i for i in range(len(self.slots)) if i not in self.busy]
        if not free:
            raise RuntimeError("no free slot: the driver started more jobs than the capacity")
        return free[0]

    def start(self, payloads: list[dict[str, Any]]) -> list[Handle]:
        handles = []
        for payload in payloads:
            slot = self._free_slot()
            gpu = self.slots[slot]
            env = {"OMP_NUM_THREADS": str(self.threads)}
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            payload = {**payload, "env": {**payload.get("env", {}), **env}}
            payload["options"] = {**payload["options"], "threads": self.threads}
            file = Path(self.options.sweep_dir) / "jobs" / f"{payload['job']['run_id']}.json"
            atomic_write_text(file, json.dumps(payload, indent=1, sort_keys=True))
            run_dir = Path(payload["options"]["workdir"]) / "checkpoints" / payload["job"]["run_id"]
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(run_dir / LOG_NAME, "ab") as log:  # the worker's own messages, beside its job's
                process = subprocess.Popen([python(), "-m", "repeval.sweep.worker", str(file)],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           env={**os.environ, **env}, start_new_session=True,
                                           cwd=payload.get("cwd"))
            handle = LocalHandle(process, slot, gpu)
            self.busy[slot] = handle
            handles.append(handle)
        return handles


LOCAL = Launcher("local", "worker processes on this machine: one job per visible GPU (--jobs-per-gpu to share), "
                 "or --jobs N on the CPU with --threads each", LocalSession)
