"""Packed training: several seeds of one spec trained together, in one step for all of them.

When seeds of one spec (same family, dataset, latent size, budget, hyper-parameters) train
together, each member is built exactly as its single run would be (seeded initialisation),
their parameters are stacked along a leading member dimension
(:func:`torch.func.stack_module_state`), and the step runs every member at once
(:func:`torch.func.vmap` over :func:`torch.func.functional_call` of the single run's own
forward): each member reads its own batch from its own seed's stream, draws its own random
numbers, and the members' losses are summed for one backward pass per optimiser group.
Members share nothing, so each gets exactly its own gradient; Adam over the stacked tensors
is per-member Adam (every operation of Adam is elementwise). The online classifier is
packed too. The loss history, the online evaluations, snapshots and checkpoints are kept
per member, on the single run's schedule and in its format, so every member is an ordinary
run directory downstream (its provenance names the runs it was packed with): it can be
resumed alone, probed, reported and checked like any run. An interrupted packed run
resumes packed.

What differs from the single runs of the same seeds: the random draws inside a step
(dropout masks, input noise, ACAI's α, VAE samples, the AAE's prior samples) come from one
generator for all members, seeded from their seeds, as independent draws per member
(``vmap(randomness="different")``) with the same distributions, but not the single run's
numbers. A family that draws nothing in its step (the baseline) trains the single runs'
numbers up to float rounding: vmap runs the convolutions grouped over the members, which
sums in another order. Under bf16 (CUDA) a pack always casts its conv and dense weights once
per step (:class:`repeval.acceleration.CastOnce`'s choice of layers): autocast does not
reach convolutions under vmap, so those copies, with the layers' inputs cast to match, are
what makes the pack's step bf16.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from encoders import build_model
from repeval import checkpoint as ckpt
from repeval.acceleration import CastOnce, GraphStep
from repeval.data.base import Dataset, Example, to_float
from repeval.devices import eval_batch_size
from repeval.errors import UserError
from repeval.specs import ONLINE_FIRST, RunSpec
from repeval.train import (
    BatchStream,
    Trainer,
    _adam,
    _classifier,
    _Forward,
    _get_rng,
    _LossLog,
    _set_rng,
    _stop_on_signals,
    _to_cpu,
    log_due,
    verified_checkpoint,
)


def pack_key(spec: RunSpec) -> str:
    """What members of one pack share: the spec without its seed."""
    return replace(spec, seed=0).to_json()


def pack_groups(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """``specs`` grouped into packs (same spec but the seed), in first-seen order."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(pack_key(spec), []).append(spec)
    return list(groups.values())


def pack_seed(specs: list[RunSpec]) -> int:
    """The seed of the one generator a pack draws its in-step random numbers from."""
    return int.from_bytes(hashlib.sha256(",".join(str(s.seed) for s in specs).encode()).digest()[:7], "big")


def _bf16_inputs(module: nn.Module, args: tuple) -> tuple | None:
    """A layer whose weights are bf16 copies takes bf16 inputs (what autocast does outside vmap);
    where its weights are float32 (the online evaluation) it leaves the input as it is."""
    weight = getattr(module, "weight", None)
    if weight is None or weight.dtype != torch.bfloat16:
        return None
    return tuple(a.to(torch.bfloat16) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


class _Scorer(nn.Module):
    """The online classifier on the frozen features, under the same root names as ``_Forward``."""

    def __init__(self, forward: _Forward):
        super().__init__()
        self.model, self.classifier = forward.model, forward.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.model.features(x).float())


class _View:
    """What a member's loss log needs to know of its run (as the single trainer offers it)."""

    def __init__(self, trainer: Trainer, spec: RunSpec, path: Path):
        self.spec, self.path, self.device, self.log = spec, path, trainer.device, trainer.log
        self.progress = trainer.progress


class _PackedState:
    """The members' parameters and buffers stacked (leaves with a leading member dimension),
    one Adam per optimiser group over them, and each member's history."""

    def __init__(self, forwards: list[_Forward], spec: RunSpec, cuda: bool, capturable: bool):
        self.members = len(forwards)
        self.base = copy.deepcopy(forwards[0])  # the structure functional_call runs; its own tensors unused
        self.params, self.buffers = stack_module_state(forwards)
        self.model_keys = list(forwards[0].model.state_dict())
        names = {id(p): n for n, p in forwards[0].named_parameters()}
        self.groups = {g: ([names[id(p)] for p in params], lr)
                       for g, (params, lr) in forwards[0].model.optimizer_groups(spec.lr).items()}
        self.optimizers = {g: _adam([self.params[n] for n in group], lr, cuda, capturable)
                           for g, (group, lr) in self.groups.items()}
        self.clf_names = [n for n in self.params if n.startswith("classifier.")]
        self.clf_opt = _adam([self.params[n] for n in self.clf_names], spec.lr, cuda, capturable)
        self.histories: list[dict[str, list]] = [{"step": [], "images": [], "online_images": [],
                                                  "online_accuracy": []} for _ in forwards]
        self.pendings: list[torch.Tensor | None] = [None] * len(forwards)
        self.step = 0

    def member(self, i: int) -> dict[str, torch.Tensor]:
        return {**{n: p[i] for n, p in self.params.items()}, **{n: b[i] for n, b in self.buffers.items()}}

    def _optimizer_state(self, opt: torch.optim.Optimizer, i: int) -> dict[str, Any]:
        sd = opt.state_dict()
        state = {k: {key: (v if key == "step" else v[i]) for key, v in entry.items()}
                 for k, entry in sd["state"].items()}
        return {"state": state, "param_groups": sd["param_groups"]}

    def member_state(self, i: int, step: int, steps: int, example: Example, history: dict[str, list],
                     pending: torch.Tensor | None) -> dict[str, Any]:
        """Member ``i`` as a single run's checkpoint state (the format :class:`Trainer` reads)."""
        values = self.member(i)
        state = {
            "model": {k: values[f"model.{k}"] for k in self.model_keys},
            "classifier": {n[len("classifier."):]: values[n] for n in self.clf_names},
            "classifier_optimizer": self._optimizer_state(self.clf_opt, i),
            "optimizers": {g: self._optimizer_state(o, i) for g, o in self.optimizers.items()},
            "rng": _get_rng(), "step": step, "complete": step >= steps,
            **example.to_state(), "history": history,
        }
        if pending is not None and len(pending):
            state["pending_losses"] = pending
        return _to_cpu(state)

    @torch.no_grad()
    def restore(self, states: list[dict[str, Any]]) -> None:
        """The members' single-run states (one step, one generator state) stacked back."""
        for i, s in enumerate(states):
            for k, v in s["model"].items():
                target = self.params.get(f"model.{k}", self.buffers.get(f"model.{k}"))
                target[i].copy_(v)
            for n in self.clf_names:
                self.params[n][i].copy_(s["classifier"][n[len("classifier."):]])
        for opt, parts in [(self.clf_opt, [s["classifier_optimizer"] for s in states]),
                           *[(o, [s["optimizers"][g] for s in states]) for g, o in self.optimizers.items()]]:
            first = parts[0]
            stacked = {k: {key: (v if key == "step" else torch.stack([p["state"][k][key] for p in parts]))
                           for key, v in entry.items()} for k, entry in first["state"].items()}
            opt.load_state_dict({"state": stacked, "param_groups": first["param_groups"]})
        _set_rng(states[0]["rng"])
        self.histories = [s["history"] for s in states]
        self.pendings = [s.get("pending_losses") for s in states]
        self.step = int(states[0]["step"])


class PackedTrainer(Trainer):
    """Trains several seeds of one spec together (see the module docstring); options as
    :class:`Trainer`. ``run()`` returns the members' checkpoints, in the order of ``specs``."""

    def __init__(self, specs: list[RunSpec], dataset: Dataset, device: str, workdir: Path, **kwargs: Any):
        if len(specs) < 2 or len({pack_key(s) for s in specs}) != 1 or len({s.seed for s in specs}) != len(specs):
            raise ValueError("a pack needs two or more distinct seeds of one spec")
        if not specs[0].budget:
            raise ValueError("reference encoders are fitted, not trained: nothing to pack")
        super().__init__(specs[0], dataset, device, workdir, **kwargs)
        self.specs = list(specs)
        self.paths = [ckpt.run_dir(workdir, s) for s in specs]
        self._snapshot_request = kwargs.get("snapshots", ())
        self.cast_once = self.amp  # in a pack, bf16 needs the copies (see _survey), whatever REPEVAL_CAST_ONCE says
        self._packed_cast: list[str] | None = None
        self._shadows: dict[str, torch.Tensor] = {}
        self._grad_buffers: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------- public
    def run(self, max_steps: int | None = None) -> list[ckpt.Checkpoint]:
        existing = [verified_checkpoint(p, self.log) for p in self.paths]
        if all(c.is_complete() for c in existing):
            return existing
        started = [c for c in existing if c.exists()]
        if started and not self._resumable(existing):
            # members that stopped at different steps (a crash between two members' commits),
            # or were resumed alone: each finishes alone, from its own checkpoint
            self.log(f"{self.spec.encoder}: the pack's checkpoints disagree; each member finishes alone.")
            return [Trainer(s, self.dataset, self.device, self.workdir, amp=self.amp, graphs=self.graphs,
                            cast_once=self.cast_once, progress=self.progress, log=self.log,
                            checkpoint_every_s=self.checkpoint_every_s, snapshots=self._snapshot_request).run()
                    for s in self.specs]
        forwards = []
        for spec in self.specs:  # each member exactly as its single run is initialised
            torch.manual_seed(spec.seed)
            model = build_model(spec, self.dataset.example).to(self.device)
            forwards.append(_Forward(model, _classifier(model.feature_dim, self.dataset.num_classes).to(self.device)))
        torch.manual_seed(pack_seed(self.specs))
        state = _PackedState(forwards, self.spec, self.cuda, self.graphs)
        if started:
            state.restore([c.load_state(self.device) for c in existing])
            self._continued_from = existing[0].provenance.get("continued_from")
            self.log(f"resuming the pack of {len(self.specs)} seeds of {self.spec.encoder} at step {state.step:,} "
                     f"of {self.spec.steps:,}")
        elif (shorter := self._shorter_pack()) is not None:
            state.restore([c.load_state(self.device) for c in shorter])
            images = state.step * self.spec.batch_size
            self._continued_from = {"run_ids": [c.path.name for c in shorter], "images": images}
            self.log(f"{self.spec.encoder}: the pack continues from its finished runs at "
                     f"{state.step * self.spec.batch_size:,} images")
        return self._train_packed(state, max_steps)

    def _resumable(self, existing: list[ckpt.Checkpoint]) -> bool:
        """Whether every member has a checkpoint of this pack at one common step."""
        ids = sorted(s.run_id for s in self.specs)
        if not all(c.exists() and not c.is_complete() for c in existing):
            return False
        steps = {c.manifest["step"] if c.manifest else c.load_state()["step"] for c in existing}
        return len(steps) == 1 and all(sorted(c.provenance.get("packed_with") or []) == ids for c in existing)

    def _shorter_pack(self) -> list[ckpt.Checkpoint] | None:
        """The pack's finished runs at the largest smaller power-of-two budget, packed together."""
        images = 1 << ((self.spec.budget - 1).bit_length() - 1)
        while images >= ONLINE_FIRST:
            shorter = [replace(s, budget=images) for s in self.specs]
            if log_due(images // self.spec.batch_size) and self.spec.online_eval_due(images):
                found = [ckpt.Checkpoint(ckpt.run_dir(self.workdir, s)) for s in shorter]
                ids = sorted(s.run_id for s in shorter)
                try:
                    if all(c.is_complete() and sorted(c.provenance.get("packed_with") or []) == ids for c in found):
                        for c in found:
                            c.verify()
                        return found
                except ckpt.DamagedCheckpoint:
                    pass
            images //= 2
        return None

    # ----------------------------------------------------------------- the step
    def _packed_step(self, state: _PackedState, data: Dataset, names: list[str]):
        base = state.base
        autocast = self._autocast(cache_enabled=False)

        def member_step(params, buffers, x, y):
            out, logits = functional_call(base, (params, buffers), (x,))
            logged = {**out.losses, "classifier": F.cross_entropy(logits.float(), y)}
            logged.update({k: v for k, v in out.logs.items() if k not in logged})
            return {k: v.float().reshape(()) for k, v in logged.items()}

        batched = vmap(member_step, randomness="different")

        def train_step(idx: torch.Tensor) -> torch.Tensor:
            x, y = to_float(data.train.x[idx]), data.train.y[idx]  # (members, batch, ...) each
            if self.cast_once and self._packed_cast is None:
                self._survey(state, x[0])
            params = self._step_params(state)
            with autocast:
                logged = batched(params, state.buffers, x, y)
            groups = [*state.groups.items(), ("classifier", (state.clf_names, None))]
            for i, (g, (group, _)) in enumerate(groups):
                inputs = [params[n] for n in group]
                grads = torch.autograd.grad(logged[g].sum(), inputs, retain_graph=i < len(groups) - 1,
                                            allow_unused=True)
                self._set_grads(state, group, grads)
            for opt in (*state.optimizers.values(), state.clf_opt):
                opt.step()
            if not names:
                names.extend(logged)
            return torch.stack([v.detach() for v in logged.values()], dim=1)  # (members, values)

        if self.graphs:
            self._graph = GraphStep(train_step, self.log, self.spec.encoder)
            return self._graph
        return lambda idx, last=False: train_step(idx)

    def _survey(self, state: _PackedState, x: torch.Tensor) -> None:
        """Which layers run on bf16 copies of their weights made once per step: those
        :meth:`CastOnce.survey` finds in one member's forward (its random draws undone).

        Under ``vmap`` autocast does not reach convolutions (their batching rule bypasses it),
        so in a pack these copies are how bf16 happens at all: each such layer also casts its
        input to bf16, as autocast would. Layers run twice with gradients (ACAI's decoder and
        critic) are included: left in float32 they would receive the bf16 outputs of the layers
        before them and fail; their two gradient contributions sum in bf16, where a single run's
        autocast sums them in float32 (one more rounding, inside the pack's float-rounding
        agreement with single runs). Full-precision layers (the VAE heads) run as autocast
        leaves them."""
        devices = [torch.device(self.device)] if self.cuda else []
        with torch.random.fork_rng(devices=devices), self._autocast(cache_enabled=False):
            probe = _Forward(state.base.model, state.base.classifier)
            _, caster = CastOnce.survey(probe, x, repeated=True)
        self._packed_cast = [n for n in caster.names if n in state.params]
        self._shadows = {n: torch.empty_like(state.params[n], dtype=torch.bfloat16).requires_grad_()
                         for n in self._packed_cast}
        self._grad_buffers = {n: torch.zeros_like(state.params[n]) for n in self._packed_cast}
        modules = dict(state.base.named_modules())
        for layer in sorted({n.rsplit(".", 1)[0] for n in self._packed_cast}):
            modules[layer].register_forward_pre_hook(_bf16_inputs)

    def _step_params(self, state: _PackedState) -> dict[str, torch.Tensor]:
        if not self._packed_cast:
            return state.params
        with torch.no_grad():
            torch._foreach_copy_(list(self._shadows.values()), [state.params[n] for n in self._shadows])
        return {**state.params, **self._shadows}

    def _set_grads(self, state: _PackedState, group: list[str], grads) -> None:
        pairs = []
        for n, g in zip(group, grads):
            if g is not None and n in self._grad_buffers:
                pairs.append((self._grad_buffers[n], g))
                g = self._grad_buffers[n]
            state.params[n].grad = g
        if pairs:
            torch._foreach_copy_([b for b, _ in pairs], [g for _, g in pairs])

    # ----------------------------------------------------------------- the loop
    def _train_packed(self, state: _PackedState, max_steps: int | None) -> list[ckpt.Checkpoint]:
        spec, device, members = self.spec, self.device, len(self.specs)
        data = self.dataset.to(device)
        streams = [BatchStream(len(data.train), spec.batch_size, s.seed, device) for s in self.specs]
        start, end = state.step, spec.steps if max_steps is None else min(spec.steps, state.step + max_steps)
        names: list[str] = []
        step_fn = self._packed_step(state, data, names)
        shown = {*state.groups, "classifier"}
        logs = [_LossLog(_View(self, s, p), state.histories[i], names, shown, start, state.pendings[i])
                for i, (s, p) in enumerate(zip(self.specs, self.paths))]
        snapshots = {n // spec.batch_size for n in self.snapshots}
        last_save = time.monotonic()

        def save(step: int) -> list[ckpt.Checkpoint]:
            return [self._save(state, i, self.specs[i], step, state.histories[i], logs[i].pending(step))
                    for i in range(members)]

        state.base.train()
        with _stop_on_signals(self), logs[0].bar(total=spec.steps, initial=start):
            for step in range(start, end):
                done = step + 1
                values = step_fn(torch.stack([s.indices(step) for s in streams]), last=done == end)
                for i, log in enumerate(logs):
                    log.add(step, values[i])
                if log_due(done) or done == spec.steps:
                    for log in logs:
                        log.flush(done)
                if spec.online_eval_due(done * spec.batch_size) or done == spec.steps:
                    for i in range(members):
                        self._evaluate_member(state, i, data, done, state.histories[i])
                if done in snapshots and done < spec.steps:
                    for i in range(members):
                        self._member_snapshot(state, i, data, logs[i], done)
                if done < end and (self.stop_requested or time.monotonic() - last_save > self.checkpoint_every_s):
                    save(done)
                    last_save = time.monotonic()
                    if self.stop_requested:
                        raise UserError(f"Interrupted at step {done:,} of {spec.steps:,}; the pack's checkpoints are "
                                        f"saved in {', '.join(str(p) for p in self.paths)}. Run the same command again "
                                        "to resume.")
        return save(end)

    def _save(self, state: _PackedState, i: int, spec: RunSpec, step: int, history: dict[str, list],
              pending: torch.Tensor | None, **extra: Any) -> ckpt.Checkpoint:
        provenance = {**self._provenance(), "packed_with": sorted(replace(s, budget=spec.budget).run_id
                                                                  for s in self.specs), **extra}
        path = ckpt.run_dir(self.workdir, spec)
        return ckpt.save(path, spec, state.member_state(i, step, spec.steps, self.dataset.example, history, pending),
                         provenance)

    @torch.no_grad()
    def _evaluate_member(self, state: _PackedState, i: int, data: Dataset, done: int, history: dict[str, list]):
        scorer = _Scorer(state.base).eval()
        member = state.member(i)
        correct, batch = 0, eval_batch_size(self.device)
        for start in range(0, len(data.test), batch):
            x = to_float(data.test.x[start:start + batch])
            with self._autocast():
                logits = functional_call(scorer, member, (x,))
            correct += int((logits.float().argmax(1) == data.test.y[start:start + batch]).sum())
        state.base.train()
        history["online_images"].append(done * self.spec.batch_size)
        history["online_accuracy"].append(correct / len(data.test))

    def _member_snapshot(self, state: _PackedState, i: int, data: Dataset, log: _LossLog, done: int) -> None:
        short = replace(self.specs[i], budget=done * self.spec.batch_size)
        if ckpt.Checkpoint(ckpt.run_dir(self.workdir, short)).exists():
            return
        history = copy.deepcopy(state.histories[i])
        log.point(done, history)
        if not self.spec.online_eval_due(short.budget):
            self._evaluate_member(state, i, data, done, history)
        self._save(state, i, short, done, history, None, snapshot_of=self.specs[i].run_id,
                   snapshot_at_images=short.budget)

    def _provenance(self) -> dict[str, Any]:
        record = super()._provenance()
        if self._packed_cast:
            layers = len({n.rsplit(".", 1)[0] for n in self._packed_cast})
            record["precision"] = f"bf16 autocast (weights of {layers} layers cast once per step)"
        record["packed"] = f"{len(self.specs)} seeds in one step (torch.func.vmap; in-step random draws from one " \
                           f"generator, seeded {pack_seed(self.specs)})"
        return record


def train_packed(specs: list[RunSpec], dataset: Dataset, device: str, workdir: Path, **kwargs: Any):
    """Train ``specs`` (seeds of one spec) as one pack; returns their checkpoints."""
    max_steps = kwargs.pop("max_steps", None)
    return PackedTrainer(specs, dataset, device, workdir, **kwargs).run(max_steps=max_steps)
