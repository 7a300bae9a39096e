"""GPU check of repeval: correctness and throughput on one CUDA device, time-boxed.

Run through ``benchmarks/gpu_check.sh`` (which finds Python, torch and the data first).
Every part runs in its own ``try`` with its own time box (SIGALRM) inside a global
deadline, so one failure or a slow part never loses the others; results are rewritten to
``<out>/gpu_check.json`` and ``<out>/gpu_check.md`` after every part.

Parts, in order:

a. correctness
   - ``extract_equivalence`` — a tiny ACAI run trained on the CPU; its latents extracted on
     the CPU and on the device (``repeval.extract.encode``) must agree (max relative error
     ≤ 1e-4 with cuDNN TF32 off; the default TF32 setting is reported too);
   - ``bf16_vs_fp32`` — the trainer with bf16 autocast vs float32, same seed and steps,
     baseline and ACAI: final training MSE and test reconstruction MSE of both (bf16
     "tracks" fp32 when the test MSEs differ by ≤ 15 %);
b. throughput
   - ``acai_throughput`` — ``repeval.train.Trainer`` on MNIST ACAI at batch 64 (its CUDA-graph
     step): steady images/s from two runs of different length, and the projected time for
     the paper's 2^24 images (+ its 256 online evaluations) against the 10-minute target;
   - ``cast_once`` — ACAI and baseline in the trainer with the conv/dense weights cast to bf16
     once per step (``cast_once=True``, the trainer's bf16 default) against autocast's
     per-call casts: images/s of both, and the test MSE each reaches (the same numbers by
     construction; CPU tests check it bit for bit);
   - ``trainer_families`` — every family in the trainer, CUDA-graph step vs eager: images/s
     and the test reconstruction MSE after the same steps;
   - ``extract_throughput`` — ``encode`` of the 60,000 train images (images/s per batch size);
     its latents feed the probes below;
   - ``kmeans_1000`` — the paper's protocol, 1,000 restarts on 60,000×256 latents, with
     ``resolve_settings("kmeans", device)`` (target < 30 s);
   - ``knn`` — the kNN probe on the device, and its agreement with the CPU;
   - ``cli_run`` — ``repeval run --encoder acai --task all --budget 65536 --device cuda``
     through the CLI (in-process): the product's whole GPU path, with its scores;
c. ``kmeans_backends`` — the torch k-means backend with the same restarts on CPU and
   device: same inertia and labels?
d. ``sweep_concurrency`` — what ``repeval sweep --jobs-per-gpu N`` would get: N = 1, 2, 4
   training processes (baseline, then ACAI) sharing the device, each warmed up (graph
   captured) before a common start; aggregate images/s (``benchmarks/bench_sweep.py``).
e. packed training (``repeval.packed``)
   - ``packed_correctness`` — packed against single runs of the same seeds, same steps: each
     member's test reconstruction MSE against its single run's (baseline within 5 %, ACAI
     within 15 %: its own random draws);
   - ``packed_throughput`` — aggregate images/s of 1, 2, 4, 8 and 16 packed seeds of ACAI and
     the baseline (target: 8 ACAI seeds at least 6x one run).

   - ``grid_projection`` — the paper's grid (sweep preset ``paper``, 3 seeds) projected from
     measured packed rates: every family at MNIST-256, ACAI at each data shape (target: under
     4 device-hours).

``--profile packed`` (the default) runs acai_throughput, cast_once and the packed parts,
under 6 minutes on an H200; ``--profile full`` runs every part.

``--small`` (implied by ``--device cpu``) shrinks every size so the script's code paths
can be exercised on a CPU; parts that need CUDA say ``skipped``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    import faiss
    FAISS = True
except ImportError:  # GPU images often lack faiss; repeval's CUDA paths use torch only
    sys.modules["faiss"] = types.ModuleType("faiss")
    FAISS = False

PAPER_IMAGES = 2 ** 24
TARGET_TRAIN_S = 300.0  # ACAI at 2^24 images in under 5 minutes
TARGET_KMEANS_S = 30.0


# Which parts each profile runs (None: all). "packed" fits the 6 minutes a lent GPU can give it.
PROFILES: dict[str, set[str] | None] = {
    "packed": {"acai_throughput", "cast_once", "packed_correctness", "packed_throughput", "grid_projection"},
    "full": None,
}


class PartTimeout(Exception):
    pass


@contextmanager
def time_box(seconds: float):
    """Raise :class:`PartTimeout` in the main thread after ``seconds``."""

    def handler(signum, frame):
        raise PartTimeout(f"time box of {seconds:.0f} s exceeded")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Check:
    """Shared state of one run: device, data, sizes, results, output files."""

    def __init__(self, args):
        self.device = args.device
        self.small = args.small or not self.device.startswith("cuda")
        self.out = Path(args.out) if args.out else None
        self.deadline = time.monotonic() + args.deadline
        self.results: dict[str, Any] = {"machine": common.machine(), "device": self.device, "small": self.small,
                                        "faiss": FAISS, "parts": {}}
        if self.device.startswith("cuda"):
            props = torch.cuda.get_device_properties(0)
            self.results["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2 ** 30, 1),
                                   "torch_cuda": torch.version.cuda,
                                   "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                                   "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
        self.dataset_arg, self.data_dir = args.dataset, args.data_dir
        self.dataset, self.data_note = self.load_data(args)
        self.results["data"] = self.data_note
        self.work = Path(tempfile.mkdtemp(prefix="repeval-gpu-check-"))
        self.acai_checkpoint = None  # set by acai_throughput
        self.latents = None  # set by extract_throughput
        self.partial: dict[str, Any] = {}  # a part's results so far, kept on timeout or error

    def load_data(self, args):
        from repeval.data import DataOptions, load

        if args.dataset != "digits":
            try:
                options = DataOptions(Path(args.data_dir) if args.data_dir else None, allow_unverified=True)
                return load(args.dataset, options), f"{args.dataset} from {args.data_dir or 'the default location'}"
            except Exception as exc:  # noqa: BLE001 - fall back to the bundled dataset, and say so
                note = f"{args.dataset} unavailable ({type(exc).__name__}: {str(exc)[:300]}); "
        else:
            note = ""
        return load("digits"), note + "digits (scikit-learn's 8x8 digits at 32x32; 1,257 train / 540 test): " \
                                      "sizes are smaller than MNIST's, throughput figures are not the paper's"

    def spec(self, family: str, budget: int | None = None):
        from repeval.specs import PAPER_BUDGET, make_spec

        # --precision auto for the device, as `repeval train` resolves it (bf16 on a GPU from Ampere on)
        return make_spec(family, "mnist", latent_dim=256, budget=budget or PAPER_BUDGET, seed=0,
                         device=self.device, precision="auto")

    def run(self, name: str, fn: Callable[[], dict[str, Any]], box: float) -> None:
        left = self.deadline - time.monotonic()
        if left < 5:
            self.results["parts"][name] = {"status": "skipped", "reason": "global deadline reached"}
        else:
            start = time.monotonic()
            self.partial = {}
            print(f"--- {name} (box {min(box, left):.0f} s)", flush=True)
            try:
                with time_box(min(box, left)):
                    r = fn()
                r.setdefault("status", "ok")
            except PartTimeout as exc:
                r = {**self.partial, "status": "timeout", "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one part's failure must not lose the others
                r = {**self.partial, "status": "error", "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()[-3000:]}
            r["seconds"] = round(time.monotonic() - start, 1)
            self.results["parts"][name] = r
            print(json.dumps({k: v for k, v in r.items() if k != "traceback"}, default=str)[:2000], flush=True)
            if r["status"] == "error":
                print(r["traceback"], flush=True)
        self.write()

    def write(self) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=2, default=str))
        (self.out / "gpu_check.md").write_text(markdown(self.results))


# ------------------------------------------------------------------------------ parts
def extract_equivalence(c: Check) -> dict[str, Any]:
    from repeval.extract import encode
    from repeval.train import Trainer

    if not c.device.startswith("cuda"):
        return {"status": "skipped", "reason": "needs CUDA (compares CPU and device latents)"}
    steps = 20  # the paper's budget in the spec keeps online evaluations out of these few steps
    ckpt = Trainer(c.spec("acai"), c.dataset, "cpu", c.work / "tiny", progress=False,
                   log=lambda *a, **k: None).run(max_steps=steps)
    x = c.dataset.test.x[:2048]
    z_cpu = encode(ckpt.load_model("cpu"), x, "map", "cpu")
    model = ckpt.load_model(c.device)
    out: dict[str, Any] = {"images": len(x), "train_steps_on_cpu": steps, "latent_max_abs": float(np.abs(z_cpu).max())}
    for label, tf32 in (("default_tf32_setting", torch.backends.cudnn.allow_tf32), ("tf32_off", False)):
        previous = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            z_dev = encode(model, x, "map", c.device)
        finally:
            torch.backends.cudnn.allow_tf32 = previous
        diff = np.abs(z_dev - z_cpu)
        out[label] = {"cudnn_allow_tf32": tf32, "max_abs_diff": float(diff.max()),
                      "max_rel_diff": float(diff.max() / np.abs(z_cpu).max()),
                      "mean_abs_diff": float(diff.mean())}
    out["pass"] = out["tf32_off"]["max_rel_diff"] <= 1e-4
    out["default_within_1e-4"] = out["default_tf32_setting"]["max_rel_diff"] <= 1e-4
    return out


def bf16_vs_fp32(c: Check) -> dict[str, Any]:
    from repeval.data.base import to_float
    from repeval.train import Trainer

    if not c.device.startswith("cuda"):
        return {"status": "skipped", "reason": "bf16 autocast is the trainer's CUDA path"}
    steps = 300
    x = to_float(c.dataset.test.x[:2048].to(c.device))
    out: dict[str, Any] = {"steps": steps}
    for family in ("baseline", "acai"):
        fam: dict[str, Any] = {}
        for label, amp in (("bf16", True), ("fp32", False)):
            ckpt = Trainer(c.spec(family), c.dataset, c.device, c.work / f"prec-{family}-{label}", amp=amp,
                           progress=False, log=lambda *a, **k: None).run(max_steps=steps)
            history = ckpt.history
            model = ckpt.load_model(c.device)
            with torch.no_grad():
                test_mse = float(((model.decode(model.encode(x)) - x) ** 2).mean())
            fam[label] = {"train_mse_last": history["mse"][-1], "train_mse_curve": history["mse"],
                          "test_mse": test_mse}
        rel = abs(fam["bf16"]["test_mse"] - fam["fp32"]["test_mse"]) / fam["fp32"]["test_mse"]
        fam["test_mse_rel_diff"] = round(rel, 4)
        fam["tracks"] = rel <= 0.15
        out[family] = fam
    out["pass"] = all(out[f]["tracks"] for f in ("baseline", "acai"))
    return out


def trainer_run(c: Check, family: str, steps: int, workdir: Path, **kwargs) -> tuple[float, Any]:
    """Seconds of ``Trainer.run(max_steps=steps)`` (synchronised) and its checkpoint."""
    from repeval.train import Trainer

    sync(c.device)
    start = time.perf_counter()
    ckpt = Trainer(c.spec(family), c.dataset, c.device, workdir, progress=False,
                   log=lambda m: print(f"    [{family}] {m}", flush=True), **kwargs).run(max_steps=steps)
    sync(c.device)
    return time.perf_counter() - start, ckpt


def trainer_rate(c: Check, family: str, short: int, long: int, tag: str, **kwargs) -> tuple[float, float, Any]:
    """Steady images/s of the real trainer: two fresh runs of ``short`` and ``long`` steps,
    64·(long − short) / (t_long − t_short), so start-up, warm-up, capture and the final
    checkpoint cancel; also the long run's seconds and checkpoint. A discarded run comes
    first: the process's one-off costs (CUDA context, cuDNN autotuning, lazy loading) would
    otherwise land in the short run only and inflate the rate (seen: 35k vs 24k img/s)."""
    trainer_run(c, family, short, c.work / f"{tag}-{family}-warmup", **kwargs)
    t_short, _ = trainer_run(c, family, short, c.work / f"{tag}-{family}-short", **kwargs)
    t_long, ckpt = trainer_run(c, family, long, c.work / f"{tag}-{family}-long", **kwargs)
    return 64 * (long - short) / max(t_long - t_short, 1e-9), t_long, ckpt


def packed_rate(c: Check, family: str, members: int, short: int, long: int, tag: str, spec=None, dataset=None,
                **kwargs) -> tuple[float, float, list]:
    """Aggregate images/s of ``members`` seeds of ``family`` trained as one pack
    (``repeval.packed.PackedTrainer``), measured as :func:`trainer_rate` measures one run;
    ``spec`` and ``dataset`` default to MNIST at latent 256."""
    from dataclasses import replace

    from repeval.packed import PackedTrainer

    specs = [replace(spec or c.spec(family), seed=s) for s in range(members)]
    dataset = dataset or c.dataset

    def timed(steps: int, workdir: Path) -> tuple[float, list]:
        sync(c.device)
        start = time.perf_counter()
        ckpts = PackedTrainer(specs, dataset, c.device, workdir, progress=False,
                              log=lambda m: print(f"    [{family} x{members}] {m}", flush=True),
                              **kwargs).run(max_steps=steps)
        sync(c.device)
        return time.perf_counter() - start, ckpts

    timed(short, c.work / f"{tag}-{family}-{members}-warmup")
    t_short, _ = timed(short, c.work / f"{tag}-{family}-{members}-short")
    t_long, ckpts = timed(long, c.work / f"{tag}-{family}-{members}-long")
    return 64 * members * (long - short) / max(t_long - t_short, 1e-9), t_long, ckpts


def packed_throughput(c: Check) -> dict[str, Any]:
    """Aggregate images/s of 1 (the single trainer), 2, 4, 8 and 16 packed seeds, ACAI and the
    baseline; the target: 8 packed ACAI seeds at least 6x one run's images/s."""
    sizes = (1, 2) if c.small else (1, 2, 4, 8, 16)
    short, long = (3, 6) if c.small else (100, 600)
    out = c.partial
    out.update({"steps": [short, long], "members": list(sizes)})
    for family in ("acai", "baseline"):
        fam: dict[str, Any] = {}
        out[family] = fam
        for m in sizes:
            if m == 1:
                rate, _, ckpt = trainer_rate(c, family, short, long, "pack1")
                mode = ckpt.provenance.get("training_step")
            else:
                rate, _, ckpts = packed_rate(c, family, m, short, long, "pack")
                mode = ckpts[0].provenance.get("training_step")
            fam[str(m)] = {"images_per_s": round(rate, 1), "training_step": mode}
            fam[str(m)]["x_single"] = round(rate / fam["1"]["images_per_s"], 2)
            print(f"    {family} x{m}: {fam[str(m)]}", flush=True)
    eight = out["acai"].get("8", {}).get("x_single")
    out["pass"] = None if c.small else eight is not None and eight >= 6.0
    return dict(out)


def packed_correctness(c: Check) -> dict[str, Any]:
    """Packed against single runs of the same seeds on the device, same steps: the test
    reconstruction MSE of each member against its single run (baseline: the same numbers up
    to rounding, within 5 %; ACAI: its own draws, the same distribution, within 15 %)."""
    from dataclasses import replace

    from repeval.packed import PackedTrainer
    from repeval.train import Trainer

    steps = 3 if c.small else 400
    out: dict[str, Any] = {"steps": steps}
    for family, tolerance in (("baseline", 0.05), ("acai", 0.15)):
        specs = [replace(c.spec(family), seed=s) for s in (0, 1)]
        members = PackedTrainer(specs, c.dataset, c.device, c.work / f"pc-{family}-pack", progress=False,
                                log=lambda *a: None).run(max_steps=steps)
        fam: dict[str, Any] = {"tolerance": tolerance}
        for spec, member in zip(specs, members):
            alone = Trainer(spec, c.dataset, c.device, c.work / f"pc-{family}-{spec.seed}", progress=False,
                            log=lambda *a: None).run(max_steps=steps)
            packed_mse, single_mse = test_mse(c, member), test_mse(c, alone)
            fam[f"seed_{spec.seed}"] = {"packed_test_mse": packed_mse, "single_test_mse": single_mse,
                                         "rel_diff": round(abs(packed_mse - single_mse) / single_mse, 4)}
        fam["pass"] = all(v["rel_diff"] <= tolerance for k, v in fam.items() if k.startswith("seed_"))
        out[family] = fam
    out["pass"] = all(out[f]["pass"] for f in ("baseline", "acai"))
    return out


def grid_projection(c: Check) -> dict[str, Any]:
    """The paper's grid (``repeval sweep --preset paper``: every family, MNIST 32/256, SVHN
    32/256, CIFAR-10 256/1024, lines; 3 seeds; 2^24 images), projected from measured packed
    rates (3 seeds per pack): every family at MNIST-256, and ACAI at each of the grid's data
    shapes, a family's rate at a shape taken as its MNIST-256 rate times ACAI's ratio there.
    Target: under 4 device-hours."""
    from repeval.data.base import make_dataset
    from repeval.specs import make_spec
    from repeval.sweep.grid import cells
    from repeval.sweep.jobs import build_jobs
    from repeval.sweep.presets import PRESETS

    jobs = [j for j in build_jobs(cells(PRESETS.get("paper").build()), "cuda") if j.learned]
    shapes = sorted({(j.spec["dataset"], j.spec["latent_dim"]) for j in jobs})
    families = sorted(dict.fromkeys(j.spec["encoder"] for j in jobs), key=lambda f: f != "acai")  # acai first
    members, (short, long) = 3, ((2, 4) if c.small else (50, 350))
    out = c.partial
    out.update({"members_per_pack": members, "runs": len(jobs), "shapes": [list(s) for s in shapes]})
    base = out.setdefault("family_rates_mnist_256", {})
    for family in (families[:1] if c.small else families):  # a dry run times ACAI alone
        base[family] = round(packed_rate(c, family, members, short, long, "grid")[0], 1)
    rng = np.random.default_rng(0)
    ratio = out.setdefault("acai_shape_ratio", {"mnist-256": 1.0})
    reference = base["acai"]
    others = [s for s in shapes if s != ("mnist", 256)]
    for dataset, dim in ([s for s in others if s[0] == "mnist"][:1] if c.small else others):  # dry run: the cheapest
        channels = 3 if dataset in ("svhn", "svhn-extra", "cifar10") else 1
        x = rng.integers(0, 256, (2048, channels, 32, 32), dtype=np.uint8)
        synthetic = make_dataset(dataset, x, rng.integers(0, 10, 2048), x[:512], rng.integers(0, 10, 512),
                                 num_classes=10, info={"source": "synthetic, for timing"})
        spec = make_spec("acai", dataset, latent_dim=dim, budget=PAPER_IMAGES, seed=0, device=c.device,
                         precision="auto")
        rate = packed_rate(c, "acai", members, short, long, f"grid-{dataset}-{dim}", spec=spec, dataset=synthetic)[0]
        ratio[f"{dataset}-{dim}"] = round(rate / reference, 3)
    seconds = 0.0
    for j in jobs:
        rate = base.get(j.spec["encoder"], base.get("acai", reference)) * ratio.get(
            f"{j.spec['dataset']}-{j.spec['latent_dim']}", 1.0)
        seconds += j.spec["budget"] / rate  # aggregate rate of a pack of 3 runs: each run's share is 1/3 of it
    out["projected_device_hours"] = round(seconds / 3600, 2)
    out["target_hours"] = 4
    out["pass"] = None if c.small else seconds / 3600 <= 4
    return dict(out)


def test_mse(c: Check, ckpt) -> float:
    from repeval.data.base import to_float

    model = ckpt.load_model(c.device)
    x = to_float(c.dataset.test.x[:2048].to(c.device))
    with torch.no_grad():
        return float(((model.decode(model.encode(x)) - x) ** 2).mean())


def acai_throughput(c: Check) -> dict[str, Any]:
    import repeval.train as rt

    short, long = (10, 30) if c.small else (300, 2300)
    rate, total, ckpt = trainer_rate(c, "acai", short, long, "rate")
    c.acai_checkpoint = ckpt
    model = ckpt.load_model(c.device)
    classifier = rt._classifier(model.feature_dim, c.dataset.num_classes).to(c.device)
    trainer = rt.Trainer(ckpt.spec, c.dataset, c.device, c.work / "eval", progress=False)
    data = c.dataset.to(c.device)
    trainer._online_accuracy(model, classifier, data)
    sync(c.device)
    start = time.perf_counter()
    trainer._online_accuracy(model, classifier, data)
    sync(c.device)
    eval_s = time.perf_counter() - start
    evals = sum(ckpt.spec.online_eval_due(n) for n in range(64, PAPER_IMAGES + 1, 64))
    projected = PAPER_IMAGES / rate + evals * eval_s
    return {"steps": [short, long], "training_step": ckpt.provenance.get("training_step"),
            "images_per_s": round(rate, 1), "steps_per_s": round(rate / 64, 1),
            "end_to_end_s": round(total, 2), "online_eval_s": round(eval_s, 4), "online_evals_in_2^24": evals,
            "projected_2^24_s": round(projected, 1), "target_s": TARGET_TRAIN_S,
            "pass": None if c.small else projected <= TARGET_TRAIN_S}


def cast_once(c: Check) -> dict[str, Any]:
    """The trainer with each layer's bf16 weights made once per step, against autocast's
    per-call casts (``repeval.acceleration.CastOnce``): images/s, test MSE after the same steps."""
    short, long = (6, 14) if c.small else (300, 1800)
    amp = True  # on the CPU (dry run) bf16 autocast runs there too
    out = c.partial
    out["steps"] = [short, long]
    for family in ("acai", "baseline"):
        fam: dict[str, Any] = {}
        for label, flag in (("autocast", False), ("cast_once", True)):
            rate, _, ckpt = trainer_rate(c, family, short, long, f"cast-{label}", amp=amp, cast_once=flag)
            fam[label] = {"images_per_s": round(rate, 1), "test_mse": test_mse(c, ckpt),
                          "precision": ckpt.provenance.get("precision"),
                          "training_step": ckpt.provenance.get("training_step")}
        fam["speedup"] = round(fam["cast_once"]["images_per_s"] / fam["autocast"]["images_per_s"], 3)
        fam["test_mse_rel_diff"] = abs(fam["cast_once"]["test_mse"] - fam["autocast"]["test_mse"]) / \
            fam["autocast"]["test_mse"]
        if family == "acai":
            fam["projected_2^24_s"] = round(PAPER_IMAGES / fam["cast_once"]["images_per_s"], 1)
        out[family] = fam
    # the same numbers up to cuDNN's run-to-run nondeterminism in float summation order
    out["pass"] = all(out[f]["test_mse_rel_diff"] <= 0.01 for f in ("acai", "baseline"))
    return out


def trainer_families(c: Check) -> dict[str, Any]:
    """Every family in the real trainer, CUDA-graph step against eager: steady images/s and
    the test reconstruction MSE each reaches after the same steps (same seed)."""
    if not c.device.startswith("cuda"):
        return {"status": "skipped", "reason": "the CUDA-graph step is the trainer's CUDA path"}
    short, long = 100, 600
    out = c.partial
    out["steps"] = [short, long]
    for family in ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai"):
        fam: dict[str, Any] = {}
        for label, graphs in (("graph", True), ("eager", False)):
            rate, _, ckpt = trainer_rate(c, family, short, long, f"fam-{label}", graphs=graphs)
            fam[label] = {"images_per_s": round(rate, 1), "training_step": ckpt.provenance.get("training_step"),
                          "test_mse": round(test_mse(c, ckpt), 5)}
        fam["speedup"] = round(fam["graph"]["images_per_s"] / fam["eager"]["images_per_s"], 2)
        fam["test_mse_rel_diff"] = round(abs(fam["graph"]["test_mse"] - fam["eager"]["test_mse"])
                                         / fam["eager"]["test_mse"], 4)
        out[family] = fam
        print(f"    {family}: {fam}", flush=True)
    families = [k for k, v in out.items() if isinstance(v, dict)]
    out["pass"] = all(out[f]["graph"]["training_step"] == "CUDA graph" and out[f]["test_mse_rel_diff"] <= 0.15
                      for f in families)
    return dict(out)


def extract_throughput(c: Check) -> dict[str, Any]:
    from encoders import build_model
    from repeval.extract import encode
    from repeval.probes import Latents
    from repeval.specs import make_spec

    if c.acai_checkpoint is not None:
        model, source = c.acai_checkpoint.load_model(c.device), "the ACAI run of acai_throughput"
    else:
        torch.manual_seed(0)
        model = build_model(make_spec("acai", "mnist", latent_dim=256), c.dataset.channels).to(c.device).eval()
        source = "an untrained ACAI (acai_throughput did not finish)"
    x_train = c.dataset.train.x[:8192] if c.small else c.dataset.train.x
    rates = {}
    for batch in ((256, 1024) if c.small else (1024, 4096, 16384)):
        encode(model, x_train[:batch], "map", c.device, batch)  # warm-up (cuDNN algorithm choice)
        sync(c.device)
        start = time.perf_counter()
        z_train = encode(model, x_train, "map", c.device, batch)
        rates[f"batch_{batch}"] = round(len(x_train) / (time.perf_counter() - start), 1)
    z_test = encode(model, c.dataset.test.x, "map", c.device)
    y_train = c.dataset.train.y[:len(x_train)].numpy()
    c.latents = Latents(z_train, y_train, z_test, c.dataset.test.y.numpy(), c.dataset.num_classes)
    return {"encoder": source, "images": len(x_train), "images_per_s": rates}


def need_latents(c: Check):
    if c.latents is None:
        raise RuntimeError("no latents: extract_throughput did not finish")
    return c.latents


def kmeans_1000(c: Check) -> dict[str, Any]:
    from repeval.probes import TASKS, resolve_settings

    latents = need_latents(c)
    overrides = {"restarts": 20, "niter": 20} if c.small else {}
    if not FAISS and not c.device.startswith("cuda"):
        overrides["backend"] = "torch"  # a dry run without faiss: the backend the GPU uses
    settings = resolve_settings("kmeans", c.device, overrides)
    start = time.perf_counter()
    result = TASKS["kmeans"].run(latents, settings, c.device)
    sync(c.device)
    seconds = time.perf_counter() - start
    return {"settings": settings.__dict__, "shape": list(latents.z_train.shape), "kmeans_s": round(seconds, 2),
            "target_s": TARGET_KMEANS_S, "pass": None if c.small else seconds <= TARGET_KMEANS_S,
            "scores": result.scores, "details": result.details}


def torch_knn_accuracy(latents, settings, device: str) -> float:
    """kNN accuracy with repeval's torch search on ``device`` and its vote (the faiss-free path)."""
    from repeval.probes import knn

    bank = knn._prepare(latents.z_train, settings.metric)
    queries = knn._prepare(latents.z_test, settings.metric)
    scores, idx = knn.search_torch(bank, queries, settings.k, settings.metric, device)
    totals = knn.vote(scores, latents.y_train[idx], latents.num_classes, settings.temperature)
    return float((knn.ranked_classes(totals)[:, 0] == latents.y_test).mean())


def knn_check(c: Check) -> dict[str, Any]:
    from repeval.probes import TASKS, resolve_settings

    latents = need_latents(c)
    settings = resolve_settings("knn", c.device)
    if c.device.startswith("cuda") or FAISS:
        def on_device():
            return TASKS["knn"].run(latents, settings, c.device).scores["accuracy"]
    else:  # a dry run without faiss: the torch search the GPU uses
        def on_device():
            return torch_knn_accuracy(latents, settings, c.device)
    on_device()  # warm-up
    sync(c.device)
    start = time.perf_counter()
    dev_accuracy = on_device()
    dev_s = time.perf_counter() - start
    start = time.perf_counter()
    if FAISS:
        cpu_accuracy, backend = TASKS["knn"].run(latents, settings, "cpu").scores["accuracy"], "faiss"
    else:  # faiss absent: repeval's torch search on the CPU, same vote
        cpu_accuracy, backend = torch_knn_accuracy(latents, settings, "cpu"), "torch"
    cpu_s = time.perf_counter() - start
    return {"device_s": round(dev_s, 3), "cpu_s": round(cpu_s, 3), "cpu_backend": backend,
            "device_accuracy": dev_accuracy, "cpu_accuracy": cpu_accuracy,
            "pass": abs(dev_accuracy - cpu_accuracy) <= 1e-3}


def cli_run(c: Check) -> dict[str, Any]:
    """The product end to end on the device: ``repeval run --task all`` through the CLI, in-process."""
    import contextlib
    import io

    from repeval.cli import main as repeval_main

    cuda = c.device.startswith("cuda")
    argv = ["run", "--encoder", "acai", "--dataset", c.dataset_arg if cuda else "digits",
            "--budget", "65536" if cuda else "2048", "--device", c.device, "--workdir", str(c.work / "cli"), "--json"]
    argv += ["--data-dir", c.data_dir] if c.data_dir and cuda else []
    if cuda or FAISS:
        argv += ["--task", "all"]
    else:  # a dry run without faiss: the tasks whose CPU path needs no faiss
        argv += ["--task", "linear", "--task", "kmeans", "--set", "kmeans.backend=torch"]
    stdout = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        repeval_main(argv, standalone_mode=False)
    seconds = time.perf_counter() - start
    rows = json.loads(stdout.getvalue())
    scores = {f"{r['task']}.{r['metric']}": r["value"] for r in rows}
    return {"argv": " ".join(argv), "seconds": round(seconds, 1), "scores": scores,
            "pass": all(np.isfinite(v) for v in scores.values()) and len(scores) > 0}


def kmeans_backends(c: Check) -> dict[str, Any]:
    from repeval.probes import kmeans as km

    if not c.device.startswith("cuda"):
        return {"status": "skipped", "reason": "compares CPU and CUDA"}
    latents = need_latents(c)
    train, _, _ = km.whiten(latents.z_train, latents.z_test)
    settings = km.KMeansSettings(restarts=20, niter=100, backend="torch")
    out: dict[str, Any] = {"restarts": settings.restarts, "niter": settings.niter}
    for label, device in (("device", c.device), ("cpu", "cpu")):
        start = time.perf_counter()
        centroids, details = km.torch_kmeans(train, latents.num_classes, settings, device)
        sync(device)
        labels, inertia = km.nearest_centroid(train, centroids, "cpu")
        out[label] = {"seconds": round(time.perf_counter() - start, 2), "inertia": inertia,
                      "details": details, "labels": labels}
    a, b = out["device"].pop("labels"), out["cpu"].pop("labels")
    out["label_agreement"] = float((a == b).mean())
    out["inertia_rel_diff"] = abs(out["device"]["inertia"] - out["cpu"]["inertia"]) / out["cpu"]["inertia"]
    out["pass"] = out["inertia_rel_diff"] <= 1e-4
    return out


def sweep_concurrency(c: Check) -> dict[str, Any]:
    """Aggregate training images/s of 1, 2 and 4 processes on one device (bench_sweep.concurrency)."""
    import bench_sweep

    cuda = c.device.startswith("cuda")
    counts, steps, warmup = ((1, 2, 4), 3000, 50) if cuda and not c.small else ((1, 2), 5, 2)
    dataset = c.dataset_arg if cuda else "digits"
    out: dict[str, Any] = {"counts": list(counts), "steps": steps}
    for family in ("baseline", "acai"):
        c.partial = out
        out[family] = bench_sweep.concurrency(c.device, family, counts=counts, steps=steps, warmup=warmup,
                                              dataset=dataset, data_dir=c.data_dir if cuda else None, timeout=120)
    best = {f: max(counts, key=lambda n: out[f][str(n)]["aggregate_images_per_s"]) for f in ("baseline", "acai")}
    out["best_jobs_per_gpu"] = best
    return out


# ------------------------------------------------------------------------------ report
def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = ["# repeval GPU check", "",
             f"- date: {m['date']}; device: {results['device']}"
             + (f" ({results['gpu']['name']}, {results['gpu']['memory_gib']} GiB, CUDA {results['gpu']['torch_cuda']})"
                if "gpu" in results else ""),
             f"- host CPU: {m['cpu']}, {m['cores']} cores, load {m['load_1min']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             f"- data: {results.get('data')}; faiss installed: {results['faiss']}"
             + ("; SMALL sizes (dry run)" if results["small"] else ""), "",
             "| part | status | pass | key figures |", "|---|---|---|---|"]
    for name, r in results["parts"].items():
        verdict = r.get("pass")
        lines.append(f"| {name} | {r.get('status')} | {'' if verdict is None else verdict} | {key_figures(name, r)} |")
    return "\n".join(lines) + "\n"


def key_figures(name: str, r: dict[str, Any]) -> str:
    if r.get("status") in ("error", "timeout", "skipped"):
        return str(r.get("error") or r.get("reason", ""))[:200].replace("|", "/")
    if name == "extract_equivalence":
        return (f"max rel diff TF32-off {r['tf32_off']['max_rel_diff']:.2e}, default "
                f"{r['default_tf32_setting']['max_rel_diff']:.2e} (cudnn.allow_tf32="
                f"{r['default_tf32_setting']['cudnn_allow_tf32']})")
    if name == "bf16_vs_fp32":
        return "; ".join(f"{f}: test MSE bf16 {r[f]['bf16']['test_mse']:.4f} vs fp32 {r[f]['fp32']['test_mse']:.4f}"
                         for f in ("baseline", "acai") if f in r)
    if name == "acai_throughput":
        return (f"{r['images_per_s']:,.0f} img/s ({r['steps_per_s']} steps/s, {r['training_step']} step); "
                f"2^24 images projected "
                f"{r['projected_2^24_s']:.0f} s vs target {r['target_s']:.0f} s")
    if name == "cast_once":
        return "; ".join(f"{f} {v['cast_once']['images_per_s']:,.0f} vs {v['autocast']['images_per_s']:,.0f} img/s "
                         f"(x{v['speedup']}, MSE diff {v['test_mse_rel_diff']:.2%})"
                         for f, v in r.items() if isinstance(v, dict) and "speedup" in v)
    if name == "trainer_families":
        return "; ".join(f"{f} {v['graph']['images_per_s']:,.0f} vs {v['eager']['images_per_s']:,.0f} img/s "
                         f"(x{v['speedup']}, MSE diff {v['test_mse_rel_diff']:.1%})"
                         for f, v in r.items() if isinstance(v, dict) and "graph" in v)
    if name == "extract_throughput":
        return ", ".join(f"{k}: {v:,.0f} img/s" for k, v in r["images_per_s"].items())
    if name == "kmeans_1000":
        return (f"{r['settings']['restarts']} restarts on {r['shape']}: {r['kmeans_s']} s "
                f"(target {r['target_s']:.0f} s); accuracy {r['scores'].get('accuracy', float('nan')):.4f}")
    if name == "knn":
        return (f"device {r['device_s']} s vs CPU ({r['cpu_backend']}) {r['cpu_s']} s; accuracy "
                f"{r['device_accuracy']:.4f} / {r['cpu_accuracy']:.4f}")
    if name == "cli_run":
        return f"{r['seconds']} s: " + ", ".join(f"{k} {v:.4f}" for k, v in r["scores"].items())
    if name == "packed_throughput":
        return "; ".join(f"{f}: " + ", ".join(f"x{m} {v['images_per_s']:,.0f} img/s ({v['x_single']}x)"
                                             for m, v in r[f].items()) for f in ("acai", "baseline") if f in r)
    if name == "grid_projection":
        return (f"{r['runs']} runs of the paper grid: {r['projected_device_hours']} device-hours projected "
                f"(target {r['target_hours']} h) from packs of {r['members_per_pack']}")
    if name == "packed_correctness":
        return "; ".join(f"{f}: test MSE rel diff " + ", ".join(f"{v['rel_diff']:.1%}" for k, v in r[f].items()
                                                                if k.startswith("seed_")) for f in ("baseline", "acai"))
    if name == "sweep_concurrency":
        return "; ".join(f"{f}: " + ", ".join(f"x{n} {r[f][str(n)]['aggregate_images_per_s']:,.0f} img/s"
                                             for n in r["counts"] if str(n) in r[f])
                         for f in ("baseline", "acai") if f in r)
    if name == "kmeans_backends":
        return (f"torch backend R={r['restarts']}: device {r['device']['seconds']} s, cpu {r['cpu']['seconds']} s; "
                f"inertia rel diff {r['inertia_rel_diff']:.1e}, label agreement {r['label_agreement']:.4f}")
    return ""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=os.environ.get("DEVICE", "cuda"))
    p.add_argument("--dataset", default="mnist", help="mnist, npz:PATH or digits")
    p.add_argument("--data-dir")
    p.add_argument("--out", default=os.environ.get("OUT"))
    p.add_argument("--deadline", type=float, default=float(os.environ.get("GPU_CHECK_DEADLINE_S", 450)),
                   help="seconds for all parts together")
    p.add_argument("--small", action="store_true", help="tiny sizes (implied on the CPU)")
    p.add_argument("--only", help="comma-separated part names (overrides --profile)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=os.environ.get("GPU_CHECK_PROFILE", "packed"),
                   help="which parts: packed (the default: packed training's figures, under 6 minutes) or full")
    p.add_argument("--keep-work", action="store_true",
                   help="keep the scratch directory of checkpoints and runs (removed at the end by default: "
                        "a few hundred MiB per run)")
    args = p.parse_args(argv)
    if not args.device.startswith("cuda"):  # a dry run on a small, possibly shared CPU
        torch.set_num_threads(1)
        if FAISS:
            faiss.omp_set_num_threads(1)
    c = Check(args)
    print(f"# repeval GPU check on {c.device}; data: {c.data_note}; faiss: {FAISS}", flush=True)
    parts = [("extract_equivalence", extract_equivalence, 60), ("bf16_vs_fp32", bf16_vs_fp32, 90),
             ("acai_throughput", acai_throughput, 75), ("cast_once", cast_once, 80),
             ("trainer_families", trainer_families, 150), ("extract_throughput", extract_throughput, 40),
             ("kmeans_1000", kmeans_1000, 90), ("knn", knn_check, 40), ("cli_run", cli_run, 120),
             ("kmeans_backends", kmeans_backends, 60), ("sweep_concurrency", sweep_concurrency, 200),
             ("packed_correctness", packed_correctness, 60), ("packed_throughput", packed_throughput, 150),
             ("grid_projection", grid_projection, 110)]
    only = set(args.only.split(",")) if args.only else PROFILES[args.profile]
    try:
        for name, fn, box in parts:
            if only is None or name in only:
                c.run(name, lambda fn=fn: fn(c), box)
    finally:  # also on Ctrl-C or a timeout of the whole script: the results so far are already written
        if args.keep_work:
            print(f"# scratch kept: {c.work}", flush=True)
        else:
            shutil.rmtree(c.work, ignore_errors=True)
    print(markdown(c.results))
    return c.results


if __name__ == "__main__":
    main()
