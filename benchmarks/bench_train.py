"""Training throughput of every family: repeval's trainer against pythae and a plain loop.

The model is the paper's (MNIST, latent 256 = 4×4×16 map, depth 16, batch 64, Adam 1e-4),
built once per run by ``repeval.train.build_model``; the contenders train *the same module
instances* (pythae gets repeval's ``Encoder``/``Decoder`` stacks wrapped as its
``BaseEncoder``/``BaseDecoder``), fresh for every run:

- ``repeval`` — ``repeval.train.Trainer(...).run(max_steps=S)`` in a fresh work directory
  (online classifier, loss history, NaN checks, final checkpoint all included);
- ``pythae`` — pythae 0.1.2's ``BaseTrainer`` (``AdversarialTrainer`` for the AAE), one
  epoch over ``S·64`` images, where pythae has the family (AE, VAE, Adversarial_AE, VQVAE);
- ``plain`` — a plain PyTorch loop: random batch, ``model.training_step``, one
  ``backward(inputs=group)`` per optimiser group, Adam per group; nothing else.

Three figures: **steady-state images/s** of each run (64 / its median step time, the first
step left out, so model construction, the first step, the online evaluations the trainer
makes at 1,024 images and every doubling after, and the final save are excluded), median
over ``--reps`` runs; **step-median images/s**, 64 / the median time of all those steps of
all runs; and the **end-to-end** wall time of the whole call. Contenders run interleaved (see
``common.interleaved``).

Loss definitions differ in scale only where pythae fixes them (see ``PEER_NOTES``); the
compute per step is the same network, forward and backward.

Run with the benchmark venv (pythae installed) for the pythae column:
``/work/venv-bench/bin/python benchmarks/bench_train.py --quick``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from unittest import mock

os.environ.setdefault("TQDM_DISABLE", "1")  # pythae always adds a progress bar

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import torch  # noqa: E402

FAMILIES = ("baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai")
PYTHAE_FAMILY = {"baseline": "AE", "vae": "VAE", "aae": "Adversarial_AE", "vqvae": "VQVAE"}
PEER_NOTES = {
    "baseline": "pythae AE loss = sum of squared errors per image, mean over the batch "
                "(= 1024 x repeval's mean MSE); same gradients up to that scale.",
    "vae": "pythae VAE with reconstruction_loss='bce': the decoder ends in a sigmoid and pythae "
           "takes BCE of probabilities against x in [0, 1] (repeval: BCE with logits against "
           "(x+1)/2, numerically safer); KL identical; same value of the loss.",
    "aae": "pythae Adversarial_AE, deterministic_posterior=True, reconstruction_loss_scale=2/1024 "
           "and adversarial_loss_scale=1 so that its loss equals repeval's (mean MSE + BCE(codes->1)); "
           "its discriminator outputs probabilities (sigmoid + BCE) and is evaluated 3 times per "
           "step (repeval: 2, on logits); its autoencoder backward also fills the discriminator's "
           "grads, which are then zeroed.",
    "vqvae": "pythae VQVAE with use_ema=True, 2^14 codes of size 256, 10 vectors per image "
             "(repeval's projection reshaped to a 256x10x1 map), commitment factor 10, decay 0.999. "
             "Differences: pythae's reconstruction term is the per-image sum (repeval: mean); it "
             "looks codes up by a one-hot matmul; it writes the Laplace-smoothed counts back "
             "into its EMA state; its codebook starts in +-1/K (repeval +-sqrt(3/K)).",
}


# ----------------------------------------------------------------------------- helpers
def make_spec(family: str):
    from repeval.specs import PAPER_BUDGET
    from repeval.specs import make_spec as _make_spec

    # the paper's budget spaces the online evaluations out; steady_rate takes the median step
    return _make_spec(family, "mnist", latent_dim=256, budget=PAPER_BUDGET, seed=0)


def build(family: str):
    from encoders import build_model

    torch.manual_seed(0)
    return build_model(make_spec(family), 1)


def stamped(fn: Callable, stamps: list[float]) -> Callable:
    """``fn`` recording ``time.perf_counter()`` at every call into ``stamps``."""

    def wrapper(*args, **kwargs):
        stamps.append(time.perf_counter())
        return fn(*args, **kwargs)

    return wrapper


def step_times(stamps: list[float]) -> list[float]:
    """Seconds of every step but the first (from one step's start to the next's)."""
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]


def steady_rate(stamps: list[float], batch: int) -> float:
    """Images/s of the median step, the first (warm-up) step left out.

    The median, not the span from first to last step: the trainer evaluates its online classifier
    on the whole test set at 1,024 images and every doubling after (``repeval.specs.ONLINE_FIRST``),
    i.e. inside step 16 of a batch-64 run, and a span over more than 16 steps would count that
    evaluation (seconds, and of a different size on every dataset) as training time."""
    if len(stamps) < 3:
        raise ValueError("need at least 3 steps for a steady-state rate")
    return batch / statistics.median(step_times(stamps))


# ----------------------------------------------------------------------------- contenders
def run_repeval(family: str, dataset, steps: int, device: str) -> tuple[float, list[float]]:
    import encoders
    from repeval.train import Trainer

    spec = make_spec(family)
    cls = encoders.get(family)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as work, \
            mock.patch.object(cls, "training_step", stamped(cls.training_step, stamps)):
        start = time.perf_counter()
        Trainer(spec, dataset, device, Path(work), progress=False, log=lambda *a, **k: None,
                checkpoint_every_s=1e9).run(max_steps=steps)
        total = time.perf_counter() - start
    return total, stamps


def run_plain(family: str, dataset, steps: int, device: str) -> tuple[float, list[float]]:
    from repeval.data.base import to_float

    start = time.perf_counter()
    model = build(family).to(device)
    groups = model.optimizer_groups(1e-4)
    opts = [(params, torch.optim.Adam(params, lr=lr)) for params, lr in groups.values()]
    x_all = dataset.train.x.to(device)
    gen = torch.Generator().manual_seed(0)
    stamps: list[float] = []
    model.train()
    for _ in range(steps):
        stamps.append(time.perf_counter())
        idx = torch.randint(0, len(x_all), (64,), generator=gen)
        out = model.training_step(to_float(x_all[idx]))
        names = list(groups)
        for i, (name, (params, opt)) in enumerate(zip(names, opts)):
            opt.zero_grad(set_to_none=True)
            out.losses[name].backward(inputs=params, retain_graph=i < len(names) - 1)
        for _, opt in opts:
            opt.step()
    return time.perf_counter() - start, stamps


def pythae_model(family: str):
    """The pythae model of ``family`` around repeval's freshly built modules."""
    from pythae.models import AE, VAE, VQVAE, Adversarial_AE, Adversarial_AE_Config, AEConfig, VAEConfig, VQVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseDiscriminator, BaseEncoder

    m = build(family)
    shape = m.arch.latent_shape
    dim = m.arch.latent_dim

    class MapEncoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.stack = m.encoder
            self.heads = torch.nn.ModuleDict({"mu": m.mu, "log_var": m.log_var}) if family == "vae" else None
            self.project = m.project if family == "vqvae" else None

        def forward(self, x):
            h = self.stack(x).flatten(1)
            if family == "vae":
                return ModelOutput(embedding=self.heads["mu"](h), log_covariance=self.heads["log_var"](h))
            if family == "aae":
                return ModelOutput(embedding=h, log_covariance=torch.zeros_like(h))
            if family == "vqvae":  # num_latents vectors of size dim, as a (B, dim, num_latents, 1) map
                codes = self.project(h).view(h.shape[0], m.num_latents, dim)
                return ModelOutput(embedding=codes.permute(0, 2, 1).unsqueeze(-1))
            return ModelOutput(embedding=h)

    class MapDecoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.stack = m.decoder
            self.head = torch.nn.ModuleDict({"hidden": m.hidden, "out": m.out}) if family == "vqvae" else None

        def forward(self, z):
            if family == "vqvae":
                q = z.squeeze(-1).permute(0, 2, 1).reshape(z.shape[0], -1)
                z = self.head["out"](torch.relu(self.head["hidden"](torch.relu(q))))
            x = self.stack(z.reshape(z.shape[0], *shape))
            return ModelOutput(reconstruction=torch.sigmoid(x) if family == "vae" else x)

    class Discriminator(BaseDiscriminator):
        def __init__(self):
            super().__init__()
            self.net = m.discriminator

        def forward(self, z):
            return ModelOutput(embedding=torch.sigmoid(self.net(z)))

    common_cfg = dict(input_dim=(1, 32, 32), latent_dim=dim)
    if family == "baseline":
        return AE(AEConfig(**common_cfg), encoder=MapEncoder(), decoder=MapDecoder())
    if family == "vae":
        return VAE(VAEConfig(**common_cfg, reconstruction_loss="bce"), encoder=MapEncoder(), decoder=MapDecoder())
    if family == "aae":
        cfg = Adversarial_AE_Config(**common_cfg, reconstruction_loss="mse", deterministic_posterior=True,
                                    adversarial_loss_scale=1.0, reconstruction_loss_scale=2.0 / 1024)
        return Adversarial_AE(cfg, encoder=MapEncoder(), decoder=MapDecoder(), discriminator=Discriminator())
    if family == "vqvae":
        cfg = VQVAEConfig(**common_cfg, use_ema=True, decay=float(m.hp["decay"]), num_embeddings=m.codebook_size,
                          commitment_loss_factor=float(m.hp["beta"]))
        return VQVAE(cfg, encoder=MapEncoder(), decoder=MapDecoder())
    raise KeyError(family)


def pythae_dataset(family: str, dataset, steps: int):
    from pythae.data.datasets import BaseDataset

    from repeval.data.base import to_float

    n = steps * 64
    x = to_float(dataset.train.x[:n])
    if family == "vae":
        x = (x + 1) / 2  # pythae's BCE wants targets in [0, 1]
    return BaseDataset(x, dataset.train.y[:n])


def run_pythae(family: str, data, steps: int, device: str) -> tuple[float, list[float]]:
    from pythae.trainers import AdversarialTrainer, AdversarialTrainerConfig, BaseTrainer, BaseTrainerConfig

    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        model = pythae_model(family)
        base = dict(output_dir=work, num_epochs=1, per_device_train_batch_size=64, no_cuda=device == "cpu",
                    steps_saving=None, seed=0)
        if family == "aae":
            trainer = AdversarialTrainer(model, data, training_config=AdversarialTrainerConfig(
                **base, autoencoder_learning_rate=1e-4, discriminator_learning_rate=1e-4))
        else:
            trainer = BaseTrainer(model, data, training_config=BaseTrainerConfig(**base, learning_rate=1e-4))
        stamps: list[float] = []
        trainer.model.forward = stamped(trainer.model.forward, stamps)
        trainer.train()
        total = time.perf_counter() - start
    return total, stamps


def have_pythae() -> bool:
    """Whether pythae imports; if so, its trainers' INFO console logging is silenced."""
    try:
        import pythae.trainers  # noqa: F401
    except ImportError:
        return False
    for name in ("pythae", "pythae.trainers.base_trainer.base_trainer",
                 "pythae.trainers.adversarial_trainer.adversarial_trainer",
                 "pythae.trainers.training_callbacks"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return True


# ----------------------------------------------------------------------------- measurement
def measure_family(family: str, dataset, steps: int, reps: int, device: str, with_plain: bool) -> dict[str, Any]:
    contenders: dict[str, Callable[[], tuple[float, list[float]]]] = {
        "repeval": lambda: run_repeval(family, dataset, steps, device)}
    if family in PYTHAE_FAMILY and have_pythae():
        data = pythae_dataset(family, dataset, steps)
        contenders["pythae"] = lambda: run_pythae(family, data, steps, device)
    if with_plain or len(contenders) == 1:
        contenders["plain"] = lambda: run_plain(family, dataset, steps, device)
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    totals: dict[str, list[float]] = {k: [] for k in contenders}
    steps_s: dict[str, list[float]] = {k: [] for k in contenders}  # every step of every run
    load_before = common.load_average()
    names = list(contenders)
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            total, stamps = contenders[name]()
            totals[name].append(total)
            rates[name].append(steady_rate(stamps, 64))
            steps_s[name] += step_times(stamps)
    step_rate = {k: 64 / statistics.median(v) for k, v in steps_s.items()}
    result: dict[str, Any] = {
        "steps": steps, "reps": reps, "load_before": load_before, "load_after": common.load_average(),
        "images_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "images_per_s_all": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "end_to_end_s": {k: round(statistics.median(v), 3) for k, v in totals.items()},
        # 64 / the median step time over all runs: robust to the few steps a page-fault storm
        # of the allocator slows (they move a run's rate by ±10 % on this machine)
        "images_per_s_step_median": {k: round(v, 1) for k, v in step_rate.items()},
    }
    for peer in ("pythae", "plain"):
        if peer in rates:
            result[f"ratio_repeval_over_{peer}"] = round(
                statistics.median(rates["repeval"]) / statistics.median(rates[peer]), 3)
            result[f"step_median_ratio_repeval_over_{peer}"] = round(step_rate["repeval"] / step_rate[peer], 3)
            result[f"end_to_end_ratio_repeval_over_{peer}"] = round(
                statistics.median(totals["repeval"]) / statistics.median(totals[peer]), 3)
    if family in PEER_NOTES and "pythae" in rates:
        result["peer_notes"] = PEER_NOTES[family]
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    common.as_the_cli()  # train as `repeval train` does (common's docstring)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--steps", type=int, help="training steps per run (default: quick 10, full 24)")
    p.add_argument("--reps", type=int, help="interleaved repetitions (default: quick 3, full 5)")
    p.add_argument("--full", action="store_true", help="more steps and repetitions; plain loop for every family")
    p.add_argument("--quick", action="store_true", help="the default: short runs")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the comparison (default 1)")
    p.add_argument("--device", default=os.environ.get("DEVICE", "cpu"))
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir")
    p.add_argument("--out", help="directory for bench_train.json (default $OUT)")
    args = p.parse_args(argv)
    steps = args.steps or (24 if args.full else 10)
    reps = args.reps or (5 if args.full else 3)
    dataset = common.load_dataset(args.dataset, args.data_dir)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": common.machine(), "device": args.device, "dataset": args.dataset,
                              "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "pythae": have_pythae(), "families": {}}
    print(f"# training throughput, {args.dataset}, batch 64, {steps} steps x {reps} reps, "
          f"{args.threads} thread(s), load {common.load_average()}")
    for family in args.families.split(","):
        r = measure_family(family, dataset, steps, reps, args.device, with_plain=args.full)
        report["families"][family] = r
        ratios = "  ".join(f"{k.replace('ratio_', '')}={v}" for k, v in r.items()
                           if k.startswith(("ratio_", "step_median_ratio_")))
        print(f"{family:10s} " + "  ".join(f"{k}={v:,.0f} img/s" for k, v in r["images_per_s"].items())
              + f"  {ratios}  (load {r['load_before']}->{r['load_after']})", flush=True)
    common.write_results("bench_train", report, args.out)
    return report


if __name__ == "__main__":
    main()
