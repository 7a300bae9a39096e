"""One training loop for every family (``docs/protocol.md`` §3.1).

The family supplies its losses per optimiser group (``encoders.base``); the loop owns the
rest: batches drawn from the dataset resident on the device, Adam per group (lr 1e-4,
β = (0.9, 0.999), ε = 1e-8 as TensorFlow's defaults), simultaneous updates from one
forward pass, the paper's online single-layer classifier on the stop-gradient latent,
progress, a loss history, NaN detection, periodic atomic checkpoints and exact resume. On
CUDA it trains in bf16 autocast with channels-last and fused Adam; the performance
machinery (weights cast once per step, the CUDA-graph step) is :mod:`repeval.acceleration`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from encoders import build_model
from repeval import checkpoint as ckpt
from repeval import provenance
from repeval.acceleration import CastOnce, GraphStep
from repeval.data.base import Dataset, to_float
from repeval.devices import eval_batch_size, is_cuda
from repeval.errors import TrainingDiverged, UserError
from repeval.specs import RunSpec

CHECKPOINT_EVERY_S = 300.0
HISTORY_POINTS = 200  # loss-history resolution (at most 100 steps per point)
STATUS_EVERY_S = 60.0  # without a terminal (logs, batch jobs), a status line this often


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


@dataclass
class _State:
    """What a checkpoint holds of a run in training: the model, the online classifier, one
    optimiser per group, the loss history and the next step."""

    model: nn.Module
    groups: dict[str, tuple[list[nn.Parameter], float]]
    optimizers: dict[str, torch.optim.Adam]
    classifier: nn.Linear
    clf_opt: torch.optim.Adam
    history: dict[str, list] = field(default_factory=lambda: {
        "step": [], "images": [], "online_images": [], "online_accuracy": []})
    step: int = 0

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.classifier.load_state_dict(state["classifier"])
        self.clf_opt.load_state_dict(state["classifier_optimizer"])
        for g, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][g])
        _set_rng(state["rng"])
        self.history, self.step = state["history"], int(state["step"])

    def snapshot(self, step: int, steps: int, colors: int) -> dict[str, Any]:
        return _to_cpu({
            "model": self.model.state_dict(), "classifier": self.classifier.state_dict(),
            "classifier_optimizer": self.clf_opt.state_dict(),
            "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
            "rng": _get_rng(), "step": step, "complete": step >= steps, "colors": colors,
            "history": self.history,
        })


class Trainer:
    """Trains one :class:`RunSpec` on one dataset and device into ``<workdir>/checkpoints``.

    After :meth:`run`, ``model`` is the trained module in memory.
    """

    def __init__(self, spec: RunSpec, dataset: Dataset, device: str, workdir: Path, *,
                 amp: bool | None = None, graphs: bool | None = None, cast_once: bool | None = None,
                 progress: bool = True,
                 log: Callable[[str], Any] | None = None,
                 checkpoint_every_s: float = CHECKPOINT_EVERY_S):
        self.spec, self.dataset, self.device = spec, dataset, device
        self.cuda = is_cuda(device)
        self.amp = self.cuda if amp is None else amp
        if graphs is None:  # REPEVAL_CUDA_GRAPHS=0 turns the CUDA-graph step off
            graphs = os.environ.get("REPEVAL_CUDA_GRAPHS", "1") != "0"
        self.graphs = self.cuda and graphs
        if cast_once is None:  # REPEVAL_CAST_ONCE=0 turns it off (bf16 only: same numbers, fewer kernels)
            cast_once = os.environ.get("REPEVAL_CAST_ONCE", "1") != "0"
        self.cast_once = self.amp and cast_once
        self._cast: CastOnce | None = None
        self._graph: GraphStep | None = None
        self.progress = progress
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.checkpoint_every_s = checkpoint_every_s
        self.path = ckpt.run_dir(workdir, spec)
        self.stop_requested = False
        self.model: nn.Module | None = None

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
        self.model = model
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
    def _setup(self, model, existing: ckpt.Checkpoint) -> _State:
        """Optimisers and the online classifier (initialised after the model, from the same
        seeded generator), restored from ``existing`` when it holds a checkpoint."""
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)
        groups = model.optimizer_groups(self.spec.lr)
        optimizers = {g: _adam(params, lr, self.cuda, self.graphs) for g, (params, lr) in groups.items()}
        classifier = _classifier(model.feature_dim, self.dataset.num_classes).to(self.device)
        clf_opt = _adam(list(classifier.parameters()), self.spec.lr, self.cuda, self.graphs)
        state = _State(model, groups, optimizers, classifier, clf_opt)
        if existing.exists():  # resume exactly where the last checkpoint stopped
            state.restore(existing.load_state(self.device))
            self.log(f"resuming {self.spec.run_id} at step {state.step:,} of {self.spec.steps:,}")
        return state

    def _step_function(self, state: _State, data: Dataset, loss_names: list[str]) -> Callable:
        """One step on the images ``idx``: forward, simultaneous updates; returns the logged
        values (``loss_names`` is filled on the first call)."""
        forward = _Forward(state.model, state.classifier)
        # autocast's weight cache must be off inside a CUDA graph capture (and gains nothing across steps)
        autocast = self._autocast(cache_enabled=False)

        def train_step(idx: torch.Tensor) -> torch.Tensor:
            x = to_float(data.train.x[idx])
            if self.cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            cast = self._cast
            with autocast:
                if cast is not None:
                    out, logits = cast(forward, x)
                elif self.cast_once:  # first step: find the layers whose weights can be cast once
                    (out, logits), self._cast = CastOnce.survey(forward, x)
                else:
                    out, logits = forward(x)
            losses = {**out.losses, "classifier": F.cross_entropy(logits.float(), data.train.y[idx])}
            _update(state, out.losses, losses["classifier"], cast)
            logged = {**losses, **{k: v for k, v in out.logs.items() if k not in losses}}
            if not loss_names:
                loss_names.extend(logged)
            return torch.stack([v.detach().float().reshape(()) for v in logged.values()])

        if self.graphs:
            self._graph = GraphStep(train_step, self.log, self.spec.encoder)
            return self._graph
        return lambda idx, last=False: train_step(idx)

    def _train(self, model, existing: ckpt.Checkpoint, max_steps: int | None) -> ckpt.Checkpoint:
        spec, device = self.spec, self.device
        state = self._setup(model, existing)
        data = self.dataset.to(device)
        stream = BatchStream(len(data.train), spec.batch_size, spec.seed, device)
        log_every = max(1, min(100, spec.steps // HISTORY_POINTS))
        eval_every = max(1, spec.online_eval_every // spec.batch_size)
        start, end = state.step, spec.steps if max_steps is None else min(spec.steps, state.step + max_steps)
        loss_names: list[str] = []
        step_fn = self._step_function(state, data, loss_names)
        log = _LossLog(self, state.history, loss_names, {*state.groups, "classifier"}, log_every, start)
        last_save = time.monotonic()

        def save(step: int) -> ckpt.Checkpoint:
            return ckpt.save(self.path, spec, state.snapshot(step, spec.steps, self.dataset.channels),
                             self._provenance())

        model.train()
        with _stop_on_signals(self), log.bar(total=spec.steps, initial=start):
            for step in range(start, end):
                # ---- forward, backward, update
                done = step + 1
                log.add(step, step_fn(stream.indices(step), last=done == end))
                # ---- every log point: NaN check, history, progress
                at_log_point = log.due(done, end, self.stop_requested)
                if at_log_point:
                    log.flush(done)
                # ---- the online classifier on the test split
                if done % eval_every == 0 or done == spec.steps:
                    state.history["online_images"].append(done * spec.batch_size)
                    state.history["online_accuracy"].append(self._online_accuracy(model, state.classifier, data))
                    model.train()
                # ---- checkpoint on time, or stop on a signal
                if at_log_point and done < end and (
                        self.stop_requested or time.monotonic() - last_save > self.checkpoint_every_s):
                    save(done)
                    last_save = time.monotonic()
                    if self.stop_requested:
                        raise UserError(f"Interrupted at step {done:,} of {spec.steps:,}; checkpoint saved in "
                                        f"{self.path}. Run the same command again to resume.")
        return save(end)

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
        family = encoders.get(self.spec.encoder)
        record["latents"] = dict(family.latents)  # which tensor is which; first = default
        if getattr(family, "regulariser", None) is not None:  # a composed family, FAMILY+REGULARISER
            record["regulariser"] = family.regulariser.record(family, self.spec.hparams)
        return record


class _LossLog:
    """Per-step loss values kept on the device and read back once per log point: there they
    are checked for NaN/inf (the run stops, naming family, loss and step), averaged into the
    history, and shown on the progress bar (or as a status line without a terminal)."""

    def __init__(self, trainer: Trainer, history: dict[str, list], names: list[str], shown: set[str],
                 every: int, start: int):
        self.trainer, self.history, self.names, self.shown, self.every = trainer, history, names, shown, every
        self.interval_start = start  # first step whose losses are in ``buffer``
        self.buffer: torch.Tensor | None = None
        self.t_interval = self.last_status = time.monotonic()
        self._bar = None

    @contextmanager
    def bar(self, total: int, initial: int):
        spec = self.trainer.spec
        self._bar = _progress(total=total, initial=initial, enabled=self.trainer.progress,
                              desc=f"{spec.encoder} {spec.dataset} {spec.latent_dim}d")
        self.t_interval = time.monotonic()
        with self._bar:
            yield

    def add(self, step: int, values: torch.Tensor) -> None:
        if self.buffer is None:
            self.buffer = torch.zeros(self.every, len(values), device=values.device)
        self.buffer[step - self.interval_start] = values

    def due(self, done: int, end: int, stopping: bool) -> bool:
        return done - self.interval_start == self.every or done == end or stopping

    def flush(self, done: int) -> None:
        spec, trainer = self.trainer.spec, self.trainer
        rows = self.buffer[: done - self.interval_start].cpu()
        bad = ~torch.isfinite(rows)
        if bad.any():
            i, j = map(int, bad.nonzero()[0])
            first = self.interval_start + i
            raise TrainingDiverged(
                f"{spec.encoder}: loss {self.names[j]!r} became {rows[i, j].item()} at step "
                f"{first:,} ({first * spec.batch_size:,} images) of run {spec.run_id}. The last "
                f"good checkpoint is kept in {trainer.path}; try another --seed or a smaller "
                "learning rate.")
        means = rows.mean(0).tolist()
        self.history["step"].append(done)
        self.history["images"].append(done * spec.batch_size)
        for name, value in zip(self.names, means):
            self.history.setdefault(name, []).append(value)
        elapsed = time.monotonic() - self.t_interval
        self.t_interval = time.monotonic()
        shown = [(n, v) for n, v in zip(self.names, means) if n in self.shown]
        status = (" ".join(f"{n}={v:.4g}" for n, v in shown) +
                  f" img/s={len(rows) * spec.batch_size / max(elapsed, 1e-9):.0f}")
        self._bar.set_postfix_str(status)
        self._bar.update(len(rows))
        if self._bar.disable and trainer.progress and time.monotonic() - self.last_status > STATUS_EVERY_S:
            trainer.log(f"{spec.run_id}: step {done:,}/{spec.steps:,} {status}")  # no terminal: a line
            self.last_status = time.monotonic()
        self.interval_start = done


def _update(state: _State, losses, clf_loss, cast: CastOnce | None = None) -> None:
    """Simultaneous update: each group's loss is differentiated w.r.t. its own parameters only
    (through their bf16 copies where ``cast`` made them)."""
    def grad(loss, params, retain_graph=False):
        if cast is None:
            return torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
        grads = torch.autograd.grad(loss, cast.inputs(params), retain_graph=retain_graph, allow_unused=True)
        return cast.grads(params, grads)

    names = list(state.groups)
    for i, g in enumerate(names):
        params = state.groups[g][0]
        for p, grad_p in zip(params, grad(losses[g], params, retain_graph=i < len(names) - 1)):
            p.grad = grad_p
    clf_params = list(state.classifier.parameters())
    for p, grad_p in zip(clf_params, grad(clf_loss, clf_params)):
        p.grad = grad_p
    for opt in (*state.optimizers.values(), state.clf_opt):
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


def _classifier(in_features: int, num_classes: int) -> nn.Linear:
    """The paper's online single-layer classifier: dense, Glorot-uniform, zero bias (docs/protocol.md §5.1)."""
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
