"""``repeval sweep``: the paper's grid (or any grid) as independent jobs, resumable.

The grid (:mod:`repeval.sweep.grid`, presets in :mod:`repeval.sweep.presets`) becomes one
job per run directory (:mod:`repeval.sweep.jobs`); a launcher (:mod:`repeval.sweep.registry`:
``local``, ``slurm``, ``ray``) decides where each job runs, never what it computes; every job
is ``repeval run`` of one spec (:mod:`repeval.sweep.worker`) that claims its run directory
(:mod:`repeval.sweep.claims`) and writes only that directory. The driver
(:mod:`repeval.sweep.driver`) alone writes ``repeval.db``, by collecting the run directories'
``scores.json`` (:mod:`repeval.sweep.collect`, also ``repeval collect``).

Importing this package registers the built-in launchers and presets, in this order.
"""

from __future__ import annotations

from repeval.sweep import launch_local, launch_ray, launch_slurm, presets
from repeval.sweep.registry import LAUNCHERS, register

for _launcher in (launch_local.LOCAL, launch_slurm.SLURM, launch_ray.RAY):
    register(_launcher)
for _preset in (presets.TABLE1, presets.TABLE2, presets.TABLE3, presets.PAPER):
    presets.register(_preset)

__all__ = ["LAUNCHERS"]
