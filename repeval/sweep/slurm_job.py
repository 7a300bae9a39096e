"""The callable submitit runs on a SLURM node (or in its local executor): one sweep job.

Kept apart from :mod:`repeval.sweep.launch_slurm` because it imports submitit at module
level (it subclasses ``submitit.helpers.Checkpointable``); only the SLURM launcher imports it.
On preemption or timeout submitit calls :meth:`SweepJob.checkpoint`: the running
``repeval run`` is asked to checkpoint and stop, and the same job is requeued. That is safe
because training resumes exactly from the checkpoint, and a finished job's scores are kept.
"""

from __future__ import annotations

from typing import Any

import submitit

from repeval.sweep import worker


class SweepJob(submitit.helpers.Checkpointable):
    """``SweepJob()(payload)`` runs :func:`repeval.sweep.worker.run_job` and returns its status."""

    def __call__(self, payload: dict[str, Any]) -> int:
        return worker.run_job(payload)

    def checkpoint(self, payload: dict[str, Any]) -> submitit.helpers.DelayedSubmission:
        worker.stop_children()
        worker.wait_children()
        return submitit.helpers.DelayedSubmission(SweepJob(), {**payload, "attempt": payload.get("attempt", 1)})
