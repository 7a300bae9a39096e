"""One training loop for every family (``docs/protocol.md`` §3.1).

The family supplies its losses per optimiser group (``encoders.base``); the loop owns the
rest: batches drawn from the dataset resident on the device, Adam per group (lr 1e-4,
β = (0.9, 0.999), ε = 1e-8 as TensorFlow's defaults), simultaneous updates from one
forward pass, the paper's online single-layer classifier on the stop-gradient latent,
progress, a loss history, NaN detection, periodic atomic checkpoints and exact resume. It
trains in bf16 autocast when the spec's precision is bf16 (``repeval/precision.py``), keeps
activations channels-last on every device, and uses fused Adam on CUDA; the performance
machinery (weights cast once per step, the CUDA-graph step) is :mod:`repeval.acceleration`.

Batches: the images seen at positions ``p = step·B … step·B + B − 1`` of the stream are
``perm_e[p mod N]`` with ``e = p // N`` and ``perm_e`` a permutation seeded by (seed, e) —
a function of the step alone, so a resumed run sees exactly the batches an uninterrupted
one would. (The paper streams with a 1,024-image shuffle buffer; a full permutation per
epoch is the stronger shuffle.)

Nothing in a step depends on the budget: the loss-history points (:func:`log_due`) and the
online evaluations (:meth:`RunSpec.online_eval_due`) follow the position alone, and the
losses since the last history point travel in the checkpoint. So the state of a run after
``n`` images *is* the final state of the run of ``n`` images with the same spec and seed;
the trainer writes it as that run's complete directory (a **snapshot**) at every power of
two from 2^12 images on, and at any ``snapshots`` asked for; and a longer run starts from
the finished run of the largest smaller power-of-two budget when there is one.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from encoders import build_model
from repeval import checkpoint as ckpt
from repeval import precision as precisions
from repeval import provenance
from repeval.acceleration import CastOnce, GraphStep
from repeval.data.base import Dataset, Example, to_float
from repeval.devices import eval_batch_size, is_cuda
from repeval.errors import TrainingDiverged, UserError
from repeval.specs import ONLINE_FIRST, RunSpec

CHECKPOINT_EVERY_S = 300.0
LOG_POINTS_PER_DOUBLING = 16  # loss-history resolution: 16 points per doubling of the steps ...
LOG_EVERY_MAX = 256  # ... and at least one point every 256 steps
STATUS_EVERY_S = 60.0  # without a terminal (logs, batch jobs), a status line this often
FIRST_SNAPSHOT = 2 ** 12  # images; snapshots at every power of two from here up to the budget


def log_due(done: int) -> bool:
    """Whether the loss history gets a point (the mean since the last one) after ``done``
    steps: every step at first, then 16 points per doubling, at most 256 steps apart. A
    function of the step alone, so a shorter run's history is a prefix of a longer one's."""
    return done % max(1, min(LOG_EVERY_MAX, (1 << (done.bit_length() - 1)) // LOG_POINTS_PER_DOUBLING)) == 0


def snapshot_points(spec: RunSpec, extra: Iterable[int] = ()) -> list[int]:
    """Image counts below the budget at which a run of ``spec`` writes a snapshot: every power
    of two from 2^12, plus ``extra`` (each a positive multiple of the batch below the budget:
    a :class:`UserError` otherwise)."""
    points = set()
    images = FIRST_SNAPSHOT
    while images < spec.budget:
        points.add(images)
        images *= 2
    for n in extra:
        if n <= 0 or n % spec.batch_size or n >= spec.budget:
            raise UserError(f"--snapshots {n}: a snapshot must be a positive multiple of the batch "
                            f"({spec.batch_size} images) below the budget ({spec.budget:,}); e.g. "
                            f"{max(spec.batch_size, (spec.budget // 2) // spec.batch_size * spec.batch_size):,}.")
        points.add(int(n))
    return sorted(points)


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
    pending: torch.Tensor | None = None  # the per-step losses since the last history point

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.classifier.load_state_dict(state["classifier"])
        self.clf_opt.load_state_dict(state["classifier_optimizer"])
        for g, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][g])
        _set_rng(state["rng"])
        self.history, self.step = state["history"], int(state["step"])
        self.pending = state.get("pending_losses")

    def snapshot(self, step: int, steps: int, example: Example, pending: torch.Tensor | None = None,
                 history: dict[str, list] | None = None) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(), "classifier": self.classifier.state_dict(),
            "classifier_optimizer": self.clf_opt.state_dict(),
            "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
            "rng": _get_rng(), "step": step, "complete": step >= steps,
            **example.to_state(),
            "history": self.history if history is None else history,
        }
        if pending is not None and len(pending):
            state["pending_losses"] = pending
        return _to_cpu(state)


class Trainer:
    """Trains one :class:`RunSpec` on one dataset and device into ``<workdir>/checkpoints``.

    ``snapshots``: extra image counts at which to write a snapshot (the powers of two from
    2^12 always are, unless ``snapshots`` is ``None``). After :meth:`run`, ``model`` is the
    trained module in memory.
    """

    def __init__(self, spec: RunSpec, dataset: Dataset, device: str, workdir: Path, *,
                 amp: bool | None = None, graphs: bool | None = None, cast_once: bool | None = None,
                 channels_last: bool | None = None, progress: bool = True,
                 log: Callable[[str], Any] | None = None,
                 checkpoint_every_s: float = CHECKPOINT_EVERY_S,
                 snapshots: Iterable[int] | None = ()):
        self.spec, self.dataset, self.device = spec, dataset, device
        self.cuda = is_cuda(device)
        # bf16 autocast when the spec says bf16 (``amp`` overrides it, for tests that compare the two)
        self.amp = spec.precision == "bf16" if amp is None else amp
        if graphs is None:  # REPEVAL_CUDA_GRAPHS=0 turns the CUDA-graph step off
            graphs = os.environ.get("REPEVAL_CUDA_GRAPHS", "1") != "0"
        self.graphs = self.cuda and graphs
        if cast_once is None:  # REPEVAL_CAST_ONCE=0 turns it off (bf16 only: same numbers, fewer kernels)
            cast_once = os.environ.get("REPEVAL_CAST_ONCE", "1") != "0"
        self.cast_once = self.amp and cast_once
        if channels_last is None:  # REPEVAL_CHANNELS_LAST=0 turns it off (a layout: the same function, other roundings)
            channels_last = os.environ.get("REPEVAL_CHANNELS_LAST", "1") != "0"
        self.channels_last = channels_last and dataset.example.kind == "image"  # a layout of 4-D tensors only
        self._cast: CastOnce | None = None
        self._graph: GraphStep | None = None
        self.progress = progress
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        if self.amp and spec.budget and (slow := precisions.warning("bf16", device)):
            self.log(slow)
        self.checkpoint_every_s = checkpoint_every_s
        self.workdir = Path(workdir)
        self.path = ckpt.run_dir(workdir, spec)
        self.snapshots = [] if snapshots is None or not spec.budget else snapshot_points(spec, snapshots)
        self.stop_requested = False
        self.model: nn.Module | None = None
        self._continued_from: dict[str, Any] | None = None

    # ----------------------------------------------------------------- public
    def run(self, max_steps: int | None = None) -> ckpt.Checkpoint:
        """Train to the spec's budget (resuming if a checkpoint exists) and return it.

        ``max_steps`` bounds the steps taken in this call; the run stays resumable.
        """
        existing = self._existing()
        if existing.is_complete():
            return existing
        torch.manual_seed(self.spec.seed)
        model = build_model(self.spec, self.dataset.example).to(self.device)
        self.model = model
        if not model.learned:
            return self._fit_reference(model)
        return self._train(model, existing, max_steps)

    def _existing(self) -> ckpt.Checkpoint:
        existing = verified_checkpoint(self.path, self.log)
        if existing.exists() and self.spec.budget:
            recorded = str(existing.provenance.get("precision", "fp32"))
            if recorded.startswith("bf16") != self.amp:  # a GPU run from before the precision was in the spec
                raise UserError(f"{self.path} was trained in {recorded.split(' ')[0]}, but this run is "
                                f"{'bf16' if self.amp else 'fp32'}: GPU runs made before the precision became "
                                "part of a run's identity trained in bf16 under an fp32 name. Move that directory "
                                "away (or delete it) and run again, or pass --precision bf16 to train anew.")
        return existing

    # ----------------------------------------------------------------- reference encoders
    def _fit_reference(self, model) -> ckpt.Checkpoint:
        model.fit(to_float(self.dataset.train.x.to(self.device)))
        state = {"model": model.state_dict(), **self.dataset.example.to_state(), "step": 0,
                 "complete": True, "history": {}}
        return ckpt.save(self.path, self.spec, _to_cpu(state), self._provenance())

    # ----------------------------------------------------------------- learned families
    def _setup(self, model, existing: ckpt.Checkpoint) -> _State:
        """Optimisers and the online classifier (initialised after the model, from the same
        seeded generator), restored from ``existing`` when it holds a checkpoint."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        groups = model.optimizer_groups(self.spec.lr)
        optimizers = {g: _adam(params, lr, self.cuda, self.graphs) for g, (params, lr) in groups.items()}
        classifier = _classifier(model.feature_dim, self.dataset.num_classes).to(self.device)
        clf_opt = _adam(list(classifier.parameters()), self.spec.lr, self.cuda, self.graphs)
        state = _State(model, groups, optimizers, classifier, clf_opt)
        if existing.exists():  # resume exactly where the last checkpoint stopped
            state.restore(existing.load_state(self.device))
            self._continued_from = existing.provenance.get("continued_from")
            self.log(f"resuming {self.spec.run_id} at step {state.step:,} of {self.spec.steps:,}")
        elif (shorter := self._shorter_run()) is not None:  # its final state is this run's state there
            state.restore(shorter.load_state(self.device))
            self._continued_from = {"run_id": shorter.path.name, "images": state.step * self.spec.batch_size}
            self.log(f"{self.spec.run_id}: continuing from the finished run {shorter.path.name} "
                     f"({state.step * self.spec.batch_size:,} images)")
        return state

    def _shorter_run(self) -> ckpt.Checkpoint | None:
        """The finished run of this spec at the largest smaller power-of-two budget (from 2^10
        images, where history points and online evaluations of both runs coincide), if any.
        Nothing in a step depends on the budget, so its final state is this run's state after
        that many images, and training continues from it exactly (tested bit for bit)."""
        spec = self.spec
        images = 1 << ((spec.budget - 1).bit_length() - 1) if spec.budget > 1 else 0
        while images >= ONLINE_FIRST and images >= spec.batch_size:
            if log_due(images // spec.batch_size) and spec.online_eval_due(images):
                candidate = ckpt.Checkpoint(ckpt.run_dir(self.workdir, replace(spec, budget=images)))
                try:
                    if candidate.is_complete():
                        candidate.verify()
                        return candidate
                except ckpt.DamagedCheckpoint:
                    pass  # a damaged run is no place to start from; it is reported when asked for
            images //= 2
        return None

    def _step_function(self, state: _State, data: Dataset, loss_names: list[str]) -> Callable:
        """One step on the images ``idx``: forward, simultaneous updates; returns the logged
        values (``loss_names`` is filled on the first call)."""
        forward = _Forward(state.model, state.classifier)
        # autocast's weight cache must be off inside a CUDA graph capture (and gains nothing across steps)
        autocast = self._autocast(cache_enabled=False)

        def train_step(idx: torch.Tensor) -> torch.Tensor:
            x = to_float(data.train.x[idx])
            if self.channels_last:
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
        start, end = state.step, spec.steps if max_steps is None else min(spec.steps, state.step + max_steps)
        loss_names: list[str] = []
        step_fn = self._step_function(state, data, loss_names)
        log = _LossLog(self, state.history, loss_names, {*state.groups, "classifier"}, start, state.pending)
        snapshots = {n // spec.batch_size for n in self.snapshots}
        last_save = time.monotonic()

        def save(step: int) -> ckpt.Checkpoint:  # the losses since the last history point travel with it
            pending = log.pending(step)
            return ckpt.save(self.path, spec, state.snapshot(step, spec.steps, self.dataset.example, pending),
                             self._provenance())

        model.train()
        with _stop_on_signals(self), log.bar(total=spec.steps, initial=start):
            for step in range(start, end):
                # ---- forward, backward, update
                done = step + 1
                log.add(step, step_fn(stream.indices(step), last=done == end))
                # ---- history point (NaN check, mean losses, progress), on the step's own schedule
                if log_due(done) or done == spec.steps:
                    log.flush(done)
                # ---- the online classifier on the test split
                if spec.online_eval_due(done * spec.batch_size) or done == spec.steps:
                    self._evaluate(state, data, done, state.history)
                # ---- a snapshot: the complete run of this many images
                if done in snapshots and done < spec.steps:
                    self._write_snapshot(state, data, log, done)
                # ---- checkpoint on time, or stop on a signal
                if done < end and (self.stop_requested or time.monotonic() - last_save > self.checkpoint_every_s):
                    save(done)
                    last_save = time.monotonic()
                    if self.stop_requested:
                        raise UserError(f"Interrupted at step {done:,} of {spec.steps:,}; checkpoint saved in "
                                        f"{self.path}. Run the same command again to resume.")
        saved = save(end)
        if self.channels_last:  # the model in memory as it loads from the checkpoint: the same latents, bit for bit
            model.to(memory_format=torch.contiguous_format)
        return saved

    def _evaluate(self, state: _State, data: Dataset, done: int, history: dict[str, list]) -> None:
        history["online_images"].append(done * self.spec.batch_size)
        history["online_accuracy"].append(self._online_accuracy(state.model, state.classifier, data))
        state.model.train()

    def _write_snapshot(self, state: _State, data: Dataset, log: "_LossLog", done: int) -> None:
        """Commit the state after ``done`` steps as the complete run of ``done·B`` images, with
        the history that run would have: its final history point and online evaluation are
        added to the copy only where the schedule did not already make them."""
        short = replace(self.spec, budget=done * self.spec.batch_size)
        path = ckpt.run_dir(self.workdir, short)
        if ckpt.Checkpoint(path).exists():  # trained before (alone or as another run's snapshot)
            return
        history = copy.deepcopy(state.history)
        log.point(done, history)
        if not self.spec.online_eval_due(short.budget):
            self._evaluate(state, data, done, history)
        provenance = {**self._provenance(), "snapshot_of": self.spec.run_id, "snapshot_at_images": short.budget}
        ckpt.save(path, short, state.snapshot(done, short.steps, self.dataset.example, history=history), provenance)

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
        record["precision"] = precisions.describe("bf16" if self.amp else "fp32", self.device)
        record["memory_format"] = "channels_last" if self.channels_last else "contiguous"
        if self.dataset.example.kind != "image":
            from encoders import layers

            record["memory_format"] = ("channels_last (the 1-D stacks run as B x C x 1 x L)"
                                       if layers.SIGNALS_CHANNELS_LAST else "contiguous")
        if self._cast is not None:
            record["precision"] += f" (weights of {len(self._cast)} layers cast once per step)"
        record["training_step"] = self._graph.mode if self._graph is not None else "eager"
        family = encoders.get(self.spec.encoder)
        record["latents"] = dict(family.latents)  # which tensor is which; first = default
        if getattr(family, "regulariser", None) is not None:  # a composed family, FAMILY+REGULARISER
            record["regulariser"] = family.regulariser.record(family, self.spec.hparams)
        if self._continued_from:
            record["continued_from"] = self._continued_from
        return record


class _LossLog:
    """Per-step loss values kept on the device and read back once per log point: there they
    are checked for NaN/inf (the run stops, naming family, loss and step), averaged into the
    history, and shown on the progress bar (or as a status line without a terminal)."""

    def __init__(self, trainer: Trainer, history: dict[str, list], names: list[str], shown: set[str],
                 start: int, pending: torch.Tensor | None = None):
        self.trainer, self.history, self.names, self.shown = trainer, history, names, shown
        self.buffer: torch.Tensor | None = None
        self.interval_start = start  # first step whose losses are in ``buffer``
        if pending is not None and len(pending):  # resumed between two history points
            self.interval_start = start - len(pending)
            self._allocate(pending.shape[1], trainer.device)
            self.buffer[: len(pending)] = pending.to(trainer.device)
        self.t_interval = self.last_status = time.monotonic()
        self.timed_steps = 0  # steps taken by this process since the last history point
        self._bar = None

    def _allocate(self, width: int, device) -> None:
        self.buffer = torch.zeros(LOG_EVERY_MAX, width, device=device)

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
            self._allocate(len(values), values.device)
        self.buffer[step - self.interval_start] = values
        self.timed_steps += 1

    def _rows(self, done: int) -> torch.Tensor:
        """The losses of the steps since the last history point, on the CPU, checked: a NaN
        or infinite loss stops the run, naming family, loss and step, before anything of it
        is committed."""
        spec, trainer = self.trainer.spec, self.trainer
        if self.buffer is None:
            return torch.zeros(0, 0)
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
        return rows

    def pending(self, done: int) -> torch.Tensor:
        """The checked losses not yet in the history (saved with a checkpoint)."""
        return self._rows(done)

    def point(self, done: int, history: dict[str, list]) -> list[float]:
        """Append the history point after ``done`` steps (the mean losses since the last
        point) to ``history``; returns the means. No-op when no step is pending."""
        rows = self._rows(done)
        if not len(rows):
            return []
        means = rows.mean(0).tolist()
        history["step"].append(done)
        history["images"].append(done * self.trainer.spec.batch_size)
        for name, value in zip(self.names, means):
            history.setdefault(name, []).append(value)
        return means

    def flush(self, done: int) -> None:
        spec, trainer = self.trainer.spec, self.trainer
        n, self.timed_steps = self.timed_steps, 0
        means = self.point(done, self.history)
        elapsed = time.monotonic() - self.t_interval
        self.t_interval = time.monotonic()
        self.interval_start = done
        if self._bar is None:  # a packed member other than the first: its history only
            return
        shown = [(name, v) for name, v in zip(self.names, means) if name in self.shown]
        status = (" ".join(f"{name}={v:.4g}" for name, v in shown) +
                  f" img/s={n * spec.batch_size / max(elapsed, 1e-9):.0f}")
        self._bar.set_postfix_str(status)
        self._bar.update(done - self._bar.n)
        if self._bar.disable and trainer.progress and time.monotonic() - self.last_status > STATUS_EVERY_S:
            trainer.log(f"{spec.run_id}: step {done:,}/{spec.steps:,} {status}")  # no terminal: a line
            self.last_status = time.monotonic()


def verified_checkpoint(path: Path, log: Callable[[str], Any]) -> ckpt.Checkpoint:
    """The run directory ``path``, verified when it holds a checkpoint. A damaged snapshot is
    set aside with a warning (to be trained afresh); any other damage is the user's to see."""
    existing = ckpt.Checkpoint(path)
    if not existing.exists():
        return existing
    try:
        existing.verify()
    except ckpt.DamagedCheckpoint as exc:
        if not _is_snapshot(path):
            raise
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        path.rename(aside)
        log(f"warning: the snapshot {path.name} is damaged ({exc.message}); moved it to {aside.name} "
            "and training the run afresh.")
        return ckpt.Checkpoint(path)
    return existing


def _is_snapshot(path: Path) -> bool:
    """Whether a (possibly damaged) run directory was written as another run's snapshot."""
    import json

    for name in (ckpt.MANIFEST, "provenance.json"):
        try:
            record = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        provenance = record.get("provenance", record) if isinstance(record, dict) else {}
        if isinstance(provenance, dict) and "snapshot_of" in provenance:
            return True
    return False


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
