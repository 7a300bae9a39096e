"""One training loop for every family (``acai.md`` §3.1).

The family supplies its losses per optimiser group (``encoders.base``); the loop owns the
rest: batches drawn from the dataset resident on the device, Adam per group (lr 1e-4,
β = (0.9, 0.999), ε = 1e-8 as TensorFlow's defaults), simultaneous updates from one
forward pass, the paper's online single-layer classifier on the stop-gradient latent, bf16
autocast (weights cast once per step) / channels-last / fused Adam / a CUDA-graph step on
CUDA, progress, a loss history, NaN detection, periodic atomic checkpoints and exact resume.

Batches: the images seen at positions ``p = step·B … step·B + B − 1`` of the stream are
``perm_e[p mod N]`` with ``e = p // N`` and ``perm_e`` a permutation seeded by (seed, e) —
a function of the step alone, so a resumed run sees exactly the batches an uninterrupted
one would. (The paper streams with a 1,024-image shuffle buffer; a full permutation per
epoch is the stronger shuffle.)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repeval import checkpoint as ckpt
from repeval import provenance
from repeval.data.base import Dataset, to_float
from repeval.extract import eval_batch_size
from repeval.errors import TrainingDiverged, UserError
from repeval.specs import RunSpec

CHECKPOINT_EVERY_S = 300.0
HISTORY_POINTS = 200  # loss-history resolution (at most 100 steps per point)
STATUS_EVERY_S = 60.0  # without a terminal (logs, batch jobs), a status line this often


def build_model(spec: RunSpec, colors: int):
    """The family of ``spec`` with the paper's architecture for its dataset and latent size."""
    import encoders
    from encoders.base import LATENT_SHAPES, Arch

    family = encoders.get(spec.encoder)
    if spec.latent_dim in LATENT_SHAPES:
        arch = Arch.for_latent_dim(colors, spec.depth, spec.latent_dim)
    else:  # reference encoders (pca) accept any number of components
        arch = Arch(colors, spec.depth, 1, spec.latent_dim)
    return family(arch, **spec.hparams)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; an unavailable CUDA is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was requested but torch sees no CUDA device "
                        f"(torch {torch.__version__}). Use --device cpu or --device auto.")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N.")
    return device


class BatchStream:
    """The batch at each step, as a pure function of (seed, step); see the module docstring."""

    def __init__(self, n: int, batch_size: int, seed: int, device: str):
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = torch.randperm(self.n, generator=g).to(self.device)
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        first, last = start // self.n, (start + self.batch_size - 1) // self.n
        if first == last:
            offset = start - first * self.n
            return self._perm(first)[offset:offset + self.batch_size]
        pos = torch.arange(start, start + self.batch_size)
        return torch.cat([self._perm(e)[(pos[pos // self.n == e] % self.n).to(self.device)]
                          for e in range(first, last + 1)])


@contextmanager
def _stop_on_signals(trainer: "Trainer"):
    """Ctrl-C (SIGINT) or SIGTERM (e.g. a scheduler's preemption) asks the loop to finish its
    step, checkpoint and stop, so nothing is lost; a second Ctrl-C stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Trains one :class:`RunSpec` on one dataset and device into ``<workdir>/checkpoints``."""

    def __init__(self, spec: RunSpec, dataset: Dataset, device: str, workdir: Path, *,
                 amp: bool | None = None, graphs: bool | None = None, cast_once: bool | None = None,
                 progress: bool = True,
                 log: Callable[[str], Any] | None = None,
                 checkpoint_every_s: float = CHECKPOINT_EVERY_S):
        self.spec, self.dataset, self.device = spec, dataset, device
        self.cuda = device.startswith("cuda")
        self.amp = self.cuda if amp is None else amp
        if graphs is None:  # REPEVAL_CUDA_GRAPHS=0 turns the CUDA-graph step off
            graphs = os.environ.get("REPEVAL_CUDA_GRAPHS", "1") != "0"
        self.graphs = self.cuda and graphs
        if cast_once is None:  # REPEVAL_CAST_ONCE=0 turns it off (bf16 only: same numbers, fewer kernels)
            cast_once = os.environ.get("REPEVAL_CAST_ONCE", "1") != "0"
        self.cast_once = self.amp and cast_once
        self._cast: _CastOnce | None = None
        self._graph: _GraphStep | None = None
        self.progress = progress
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.checkpoint_every_s = checkpoint_every_s
        self.path = ckpt.run_dir(workdir, spec)
        self.stop_requested = False

    # ----------------------------------------------------------------- public
    def run(self, max_steps: int | None = None) -> ckpt.Checkpoint:
        """Train to the spec's budget (resuming if a checkpoint exists) and return it.

        ``max_steps`` bounds the steps taken in this call; the run stays resumable.
        """
        existing = ckpt.Checkpoint(self.path)
        if existing.exists() and existing.load_state().get("complete"):
            return existing
        torch.manual_seed(self.spec.seed)
        model = build_model(self.spec, self.dataset.channels).to(self.device)
        if not model.learned:
            return self._fit_reference(model)
        return self._train(model, existing, max_steps)

    # ----------------------------------------------------------------- reference encoders
    def _fit_reference(self, model) -> ckpt.Checkpoint:
        model.fit(to_float(self.dataset.train.x.to(self.device)))
        state = {"model": model.state_dict(), "colors": self.dataset.channels, "step": 0,
                 "complete": True, "history": {}}
        return ckpt.save(self.path, self.spec, _to_cpu(state), self._provenance())

    # ----------------------------------------------------------------- learned families
    def _train(self, model, existing: ckpt.Checkpoint, max_steps: int | None) -> ckpt.Checkpoint:
        spec, device = self.spec, self.device
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)
        groups = model.optimizer_groups(spec.lr)
        optimizers = {g: _adam(params, lr, self.cuda, self.graphs) for g, (params, lr) in groups.items()}
        classifier = _classifier(model.feature_dim, self.dataset.num_classes).to(device)
        clf_opt = _adam(list(classifier.parameters()), spec.lr, self.cuda, self.graphs)
        history: dict[str, list] = {"step": [], "images": [], "online_images": [], "online_accuracy": []}
        start = 0
        if existing.exists():  # resume exactly where the last checkpoint stopped
            state = existing.load_state(device)
            model.load_state_dict(state["model"])
            classifier.load_state_dict(state["classifier"])
            clf_opt.load_state_dict(state["classifier_optimizer"])
            for g, opt in optimizers.items():
                opt.load_state_dict(state["optimizers"][g])
            _set_rng(state["rng"])
            history, start = state["history"], int(state["step"])
            self.log(f"resuming {spec.run_id} at step {start:,} of {spec.steps:,}")

        data = self.dataset.to(device)
        stream = BatchStream(len(data.train), spec.batch_size, spec.seed, device)
        log_every = max(1, min(100, spec.steps // HISTORY_POINTS))
        eval_every_steps = max(1, spec.online_eval_every // spec.batch_size)
        end = spec.steps if max_steps is None else min(spec.steps, start + max_steps)
        # autocast's weight cache must be off inside a CUDA graph capture (and gains nothing across steps)
        autocast = self._autocast(cache_enabled=False)
        group_losses = {*groups, "classifier"}  # one loss per optimiser group, shown on the progress bar
        loss_names: list[str] = []
        buffer: torch.Tensor | None = None  # per-step loss values since the last log point
        last_save = last_status = time.monotonic()

        forward = _Forward(model, classifier)

        def train_step(idx: torch.Tensor) -> torch.Tensor:
            """One step on the images ``idx``: forward, simultaneous updates; the logged values."""
            x = to_float(data.train.x[idx])
            if self.cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            cast = self._cast
            with autocast:
                if cast is not None:
                    out, logits = cast(forward, x)
                elif self.cast_once:  # first step: find the layers whose weights can be cast once
                    (out, logits), self._cast = _CastOnce.survey(forward, x)
                else:
                    out, logits = forward(x)
            losses = {**out.losses, "classifier": F.cross_entropy(logits.float(), data.train.y[idx])}
            _update(groups, optimizers, out.losses, classifier, clf_opt, losses["classifier"], cast)
            logged = {**losses, **{k: v for k, v in out.logs.items() if k not in losses}}
            if not loss_names:
                loss_names.extend(logged)
            return torch.stack([v.detach().float().reshape(()) for v in logged.values()])

        graph = self._graph = _GraphStep(train_step, self.log, spec.encoder) if self.graphs else None

        def snapshot(step: int) -> dict[str, Any]:
            return _to_cpu({
                "model": model.state_dict(), "classifier": classifier.state_dict(),
                "classifier_optimizer": clf_opt.state_dict(),
                "optimizers": {g: o.state_dict() for g, o in optimizers.items()},
                "rng": _get_rng(), "step": step, "complete": step >= spec.steps,
                "colors": self.dataset.channels, "history": history,
            })

        bar = _progress(total=spec.steps, initial=start, enabled=self.progress,
                        desc=f"{spec.encoder} {spec.dataset} {spec.latent_dim}d")
        model.train()
        interval_start = start  # first step whose losses are in ``buffer``
        with _stop_on_signals(self), bar:
            t_interval = time.monotonic()
            for step in range(start, end):
                idx = stream.indices(step)
                values = graph(idx, last=step + 1 == end) if graph is not None else train_step(idx)
                if buffer is None:
                    buffer = torch.zeros(log_every, len(values), device=device)
                buffer[step - interval_start] = values
                done = step + 1
                at_log_point = done - interval_start == log_every or done == end or self.stop_requested
                if at_log_point:  # check every step's losses since the last log point, keep their mean
                    rows = buffer[: done - interval_start].cpu()
                    bad = ~torch.isfinite(rows)
                    if bad.any():
                        i, j = map(int, bad.nonzero()[0])
                        first = interval_start + i
                        raise TrainingDiverged(
                            f"{spec.encoder}: loss {loss_names[j]!r} became {rows[i, j].item()} at step "
                            f"{first:,} ({first * spec.batch_size:,} images) of run {spec.run_id}. The last "
                            f"good checkpoint is kept in {self.path}; try another --seed or a smaller "
                            "learning rate.")
                    means = rows.mean(0).tolist()
                    history["step"].append(done)
                    history["images"].append(done * spec.batch_size)
                    for name, value in zip(loss_names, means):
                        history.setdefault(name, []).append(value)
                    elapsed = time.monotonic() - t_interval
                    t_interval = time.monotonic()
                    shown = [(n, v) for n, v in zip(loss_names, means) if n in group_losses]
                    status = (" ".join(f"{n}={v:.4g}" for n, v in shown) +
                              f" img/s={len(rows) * spec.batch_size / max(elapsed, 1e-9):.0f}")
                    bar.set_postfix_str(status)
                    bar.update(len(rows))
                    if bar.disable and self.progress and time.monotonic() - last_status > STATUS_EVERY_S:
                        self.log(f"{spec.run_id}: step {done:,}/{spec.steps:,} {status}")  # no terminal: a line
                        last_status = time.monotonic()
                    interval_start = done
                if done % eval_every_steps == 0 or done == spec.steps:
                    history["online_images"].append(done * spec.batch_size)
                    history["online_accuracy"].append(self._online_accuracy(model, classifier, data))
                    model.train()
                if at_log_point and done < end and (
                        self.stop_requested or time.monotonic() - last_save > self.checkpoint_every_s):
                    ckpt.save(self.path, spec, snapshot(done), self._provenance())
                    last_save = time.monotonic()
                    if self.stop_requested:
                        raise UserError(f"Interrupted at step {done:,} of {spec.steps:,}; checkpoint saved in "
                                        f"{self.path}. Run the same command again to resume.")
        return ckpt.save(self.path, spec, snapshot(end), self._provenance())

    @torch.no_grad()
    def _online_accuracy(self, model, classifier, data: Dataset) -> float:
        """Test accuracy of the online classifier on the full test split (paper: every 65,536 images)."""
        model.eval()
        correct, batch = 0, eval_batch_size(self.device)
        for i in range(0, len(data.test), batch):
            x = to_float(data.test.x[i:i + batch])
            with self._autocast():
                feats = model.features(x)
            pred = classifier(feats.float()).argmax(1)
            correct += int((pred == data.test.y[i:i + batch]).sum())
        return correct / len(data.test)

    def _autocast(self, cache_enabled: bool = True):
        """bf16 autocast when ``amp`` (by default on CUDA only), else nothing."""
        if not self.amp:
            return nullcontext()
        return torch.autocast("cuda" if self.cuda else "cpu", dtype=torch.bfloat16, cache_enabled=cache_enabled)

    def _provenance(self) -> dict[str, Any]:
        import encoders

        record = provenance.collect(self.device, self.dataset)
        record["precision"] = "bf16 autocast" if self.amp else "fp32"
        if self._cast is not None:
            record["precision"] += f" (weights of {len(self._cast)} layers cast once per step)"
        record["training_step"] = self._graph.mode if self._graph is not None else "eager"
        record["latents"] = dict(encoders.get(self.spec.encoder).latents)  # which tensor is which; first = default
        return record


def _update(groups, optimizers, losses, classifier, clf_opt, clf_loss, cast: "_CastOnce | None" = None) -> None:
    """Simultaneous update: each group's loss is differentiated w.r.t. its own parameters only
    (through their bf16 copies where ``cast`` made them)."""
    def grad(loss, params, retain_graph=False):
        if cast is None:
            return torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
        grads = torch.autograd.grad(loss, cast.inputs(params), retain_graph=retain_graph, allow_unused=True)
        return cast.grads(params, grads)

    names = list(groups)
    for i, g in enumerate(names):
        params = groups[g][0]
        for p, grad_p in zip(params, grad(losses[g], params, retain_graph=i < len(names) - 1)):
            p.grad = grad_p
    clf_params = list(classifier.parameters())
    for p, grad_p in zip(clf_params, grad(clf_loss, clf_params)):
        p.grad = grad_p
    for opt in (*optimizers.values(), clf_opt):
        opt.step()


def _adam(params, lr: float, cuda: bool, capturable: bool = False) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=cuda or None,
                            capturable=capturable)


class _Forward(nn.Module):
    """The step's forward pass, the family's and the online classifier's, under one root
    module (so that :func:`torch.func.functional_call` can run it on other weights)."""

    def __init__(self, model: nn.Module, classifier: nn.Module):
        super().__init__()
        self.model, self.classifier = model, classifier

    def forward(self, x: torch.Tensor):
        out = self.model.training_step(x)
        return out, self.classifier(out.features.detach().float())


class _CastOnce:
    """The bf16 copies of the conv and dense weights, made once per step.

    Under autocast each conv or dense call casts its float32 weight and bias to bf16, and
    the backward pass casts their gradients back: one small kernel per tensor each way, 129
    of the 333 operations of an ACAI step on the CUDA path (``benchmarks/bench_step_ops.py``),
    which a launch-bound batch-64 step pays in full. Here each eligible layer runs on bf16 leaf tensors
    refreshed by one multi-tensor copy per step, and their bf16 gradients go to float32
    buffers by one more: the same roundings in the same places, so the same numbers as
    autocast (tested bit for bit). Eligible are the layers the first step ran under bf16
    autocast only, and at most once with gradients on: a layer differentiated through twice
    would sum its gradient in bf16 where autocast sums in float32, and one run in full
    precision (the VAE heads) keeps float32 weights.
    """

    LAYERS = (nn.Conv2d, nn.Linear)

    def __init__(self, root: nn.Module, names: list[str]):
        named = dict(root.named_parameters())
        self.names = names
        self.params = [named[n] for n in names]
        self.shadows = [torch.empty_like(p, dtype=torch.bfloat16).requires_grad_() for p in self.params]
        self.shadow_of = {id(p): s for p, s in zip(self.params, self.shadows)}
        self.buffers = {id(p): torch.zeros_like(p) for p in self.params}  # float32 gradients

    def __len__(self) -> int:
        return len({n.rsplit(".", 1)[0] for n in self.names})

    @classmethod
    def survey(cls, root: nn.Module, *args) -> tuple[Any, "_CastOnce"]:
        """``root(*args)`` as usual, noting which layers qualify; the result and the caster."""
        calls: dict[str, list[tuple[bool, bool]]] = {}  # per call: (under bf16 autocast, grad enabled)

        def note(name):
            def hook(module, inputs):
                kind = next(module.parameters()).device.type
                bf16 = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
                calls[name].append((bf16, torch.is_grad_enabled()))
            return hook

        handles = []
        for name, module in root.named_modules():
            if isinstance(module, cls.LAYERS) and next(module.parameters(), None) is not None:
                calls[name] = []
                handles.append(module.register_forward_pre_hook(note(name)))
        try:
            result = root(*args)
        finally:
            for h in handles:
                h.remove()
        layers = {name for name, seen in calls.items()
                  if seen and all(bf16 for bf16, _ in seen) and sum(grad for _, grad in seen) <= 1}
        names = [n for n, p in root.named_parameters()
                 if n.rsplit(".", 1)[0] in layers and p.requires_grad and p.dtype == torch.float32]
        return result, cls(root, names)

    def __call__(self, root: nn.Module, *args):
        """``root(*args)`` on the bf16 copies of the current weights."""
        with torch.no_grad():
            torch._foreach_copy_(self.shadows, self.params)
        return torch.func.functional_call(root, dict(zip(self.names, self.shadows)), args)

    def inputs(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """What to differentiate with respect to: the bf16 copy where there is one."""
        return [self.shadow_of.get(id(p), p) for p in params]

    def grads(self, params, grads) -> list[torch.Tensor | None]:
        """Gradients from :meth:`inputs`' order back to float32, in one multi-tensor copy."""
        out = [self.buffers[id(p)] if g is not None and id(p) in self.buffers else g for p, g in zip(params, grads)]
        pairs = [(o, g) for o, g in zip(out, grads) if o is not g]
        if pairs:
            torch._foreach_copy_([o for o, _ in pairs], [g for _, g in pairs])
        return out


class _GraphStep:
    """The training step replayed from one CUDA graph: at the paper's batch of 64 the GPU
    time of a step is smaller than the cost of launching its hundreds of kernels, and a
    graph launches them all at once (benchmarks/RESULTS.md §6: 4.1–6.8× on an H200).

    The first ``WARMUP`` steps run eagerly on a side stream (they allocate the optimisers'
    state and pick cuDNN algorithms); the step is then captured once with the batch's
    indices in a static buffer, and every later step copies its indices there and replays.
    Random draws inside the step (ACAI's α, dropout masks, denoising noise, VAE samples)
    are fresh at every replay: PyTorch advances the CUDA generator per replay. A family
    whose step cannot be captured (a host synchronisation inside it) trains eagerly, and
    the log says why.
    """

    WARMUP = 3

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], log: Callable[[str], Any], family: str):
        self.step, self.log, self.family = step, log, family
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.side = torch.cuda.Stream()

    def __call__(self, idx: torch.Tensor, last: bool = False) -> torch.Tensor:
        if self.graph is not None:
            self.static_idx.copy_(idx)
            self.graph.replay()
            return self.static_values
        if self.failed:
            return self.step(idx)
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            values = self.step(idx)
        torch.cuda.current_stream().wait_stream(self.side)
        self.eager_steps += 1
        if self.eager_steps >= self.WARMUP and not last:
            self._capture(idx)
        return values

    @property
    def mode(self) -> str:
        """How the steps so far ran, for provenance."""
        if self.graph is not None:
            return "CUDA graph"
        return "eager (CUDA graph capture failed)" if self.failed else "eager"

    def _capture(self, idx: torch.Tensor) -> None:
        self.static_idx = idx.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.static_values = self.step(self.static_idx)
        except Exception as exc:  # noqa: BLE001 - a step that cannot be captured still trains
            torch.cuda.synchronize()
            self.failed = True
            self.log(f"{self.family}: its training step cannot be captured in a CUDA graph "
                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); training eagerly.")
            return
        self.graph = graph


def _classifier(in_features: int, num_classes: int) -> nn.Linear:
    """The paper's online single-layer classifier: dense, Glorot-uniform, zero bias (acai.md §5.1)."""
    layer = nn.Linear(in_features, num_classes)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _get_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=None if enabled else True, desc=desc, unit="step",
                dynamic_ncols=True, mininterval=1.0)


def train(spec: RunSpec, dataset: Dataset, device: str, workdir: Path, **kwargs) -> ckpt.Checkpoint:
    """Train (or resume, or reuse) ``spec`` and return its checkpoint. See :class:`Trainer`."""
    max_steps = kwargs.pop("max_steps", None)
    return Trainer(spec, dataset, device, workdir, **kwargs).run(max_steps=max_steps)

