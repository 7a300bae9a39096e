"""Operations per training step on the trainer's CUDA path, counted on any machine.

A batch-64 step of the paper's models is launch-bound on a GPU: its kernels are too small
to fill the device, so the step's time follows the number of kernels it launches (even
replayed from a CUDA graph, each kernel costs a few microseconds). Without a GPU the
nearest measurable figure is the number of ATen operations the step dispatches, counted
here with a ``TorchDispatchMode`` while ``repeval.train.Trainer`` trains on the CPU with
the CUDA path's settings: bf16 autocast, fused Adam, ACAI's decoder and critic over both
halves in one pass. Operations that launch no kernel (views, ``detach``, host reads) are
counted apart.

Contenders, per family: ``autocast`` (each conv/dense call casts its float32 weight and
bias to bf16, and their gradients back) and ``cast_once`` (``Trainer(cast_once=True)``:
the weights cast once per step in one multi-tensor copy, gradients back in one more).
Per-step figures are the difference of two runs (8 and 16 steps) over their 8 extra steps,
so set-up, the first (surveying) step and the final checkpoint cancel. Counts are exact
and machine-independent; what they are worth in GPU time only a GPU says
(``benchmarks/gpu_check.sh``, part ``cast_once``).

    python benchmarks/bench_step_ops.py [--families acai,baseline]
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import encoders.acai  # noqa: E402

# ACAI's decoder and critic over both halves in one pass, as on CUDA
BATCHED_PAIRS = functools.partial(encoders.acai._paired, batched=True)

FAMILIES = ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai")
NO_KERNEL = {"view", "_unsafe_view", "detach", "t", "unsqueeze", "squeeze", "expand", "as_strided",
             "_reshape_alias", "alias", "lift_fresh", "slice", "select", "split", "split_with_sizes",
             "chunk", "unbind", "permute", "transpose", "_local_scalar_dense", "_record_function_enter_new",
             "_record_function_exit", "empty", "empty_like", "empty_strided", "is_same_size"}
CASTS = {"_to_copy", "_foreach_copy_"}


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_run(family: str, dataset, steps: int, cast_once: bool) -> collections.Counter[str]:
    import repeval.train as rt
    from repeval.specs import PAPER_BUDGET, make_spec

    spec = make_spec(family, "mnist", latent_dim=256, budget=PAPER_BUDGET, seed=0)
    adam = rt._adam
    with tempfile.TemporaryDirectory() as work, OpCounter() as counter, \
            mock.patch.object(rt, "_adam", lambda params, lr, cuda, capturable=False: adam(params, lr, True)), \
            mock.patch.object(encoders.acai, "_paired", BATCHED_PAIRS):
        rt.Trainer(spec, dataset, "cpu", Path(work), amp=True, cast_once=cast_once, progress=False,
                   log=lambda *a, **k: None, checkpoint_every_s=1e9).run(max_steps=steps)
    return counter.counts


def per_step(family: str, dataset, cast_once: bool, short: int = 8, long: int = 16) -> dict[str, Any]:
    a, b = count_run(family, dataset, short, cast_once), count_run(family, dataset, long, cast_once)
    diff = {k: (b[k] - a[k]) / (long - short) for k in set(a) | set(b)}
    kernels = {k: v for k, v in diff.items() if k not in NO_KERNEL and v}
    return {"ops": round(sum(kernels.values()), 1), "casts": round(sum(kernels.get(k, 0) for k in CASTS), 1),
            "no_kernel_ops": round(sum(v for k, v in diff.items() if k in NO_KERNEL), 1),
            "top": dict(sorted(((k, round(v, 1)) for k, v in kernels.items()), key=lambda kv: -kv[1])[:8])}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir")
    p.add_argument("--out", help="directory for bench_step_ops.json (default $OUT)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    dataset = common.load_dataset(args.dataset, args.data_dir)
    report: dict[str, Any] = {"machine": common.machine(), "families": {}}
    print("# ATen operations per training step, trainer's CUDA settings (bf16 autocast, fused Adam, "
          "batched ACAI passes), counted on the CPU")
    print(f"{'family':10s} {'autocast':>9s} {'cast_once':>9s} {'ratio':>6s}   casts autocast -> cast_once")
    for family in args.families.split(","):
        r = {label: per_step(family, dataset, flag) for label, flag in (("autocast", False), ("cast_once", True))}
        r["ratio_cast_once_over_autocast"] = round(r["cast_once"]["ops"] / r["autocast"]["ops"], 3)
        report["families"][family] = r
        print(f"{family:10s} {r['autocast']['ops']:9.0f} {r['cast_once']['ops']:9.0f} "
              f"{r['ratio_cast_once_over_autocast']:6.3f}   "
              f"{r['autocast']['casts']:.0f} -> {r['cast_once']['casts']:.0f}",
              flush=True)
    common.write_results("bench_step_ops", report, args.out)
    return report


if __name__ == "__main__":
    main()
