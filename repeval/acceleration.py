"""The trainer's performance machinery, beside the loop (:mod:`repeval.train`):

- :class:`CastOnce` — under bf16, each conv/dense layer's weights cast once per step
  instead of at every call (autocast's numbers exactly, fewer kernels);
- :class:`GraphStep` — on CUDA, the whole training step captured once as a CUDA graph and
  replayed with each batch's indices.

Neither changes what is computed; the loop works without them (CPU, ``REPEVAL_CUDA_GRAPHS=0``,
``REPEVAL_CAST_ONCE=0``), and provenance records which ran.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class CastOnce:
    """The bf16 copies of the conv and dense weights, made once per step.

    Under autocast each conv or dense call casts its float32 weight and bias to bf16, and
    the backward pass casts their gradients back: one small kernel per tensor each way,
    which a launch-bound batch-64 step pays in full (counts in ``benchmarks/RESULTS.md``).
    Here each eligible layer runs on bf16 leaf tensors
    refreshed by one multi-tensor copy per step, and their bf16 gradients go to float32
    buffers by one more: the same roundings in the same places, so the same numbers as
    autocast (tested bit for bit). Eligible are the layers the first step ran under bf16
    autocast only, and at most once with gradients on: a layer differentiated through twice
    would sum its gradient in bf16 where autocast sums in float32, and one run in full
    precision (the VAE heads) keeps float32 weights.
    """

    LAYERS = (nn.Conv2d, nn.Conv1d, nn.Linear)  # Conv1d: the 1-D stacks (encoders.layers.SignalConv)

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
    def survey(cls, root: nn.Module, *args, repeated: bool = False) -> tuple[Any, "CastOnce"]:
        """``root(*args)`` as usual, noting which layers qualify; the result and the caster.
        ``repeated`` also admits layers run more than once with gradients (their bf16 gradient
        contributions then sum in bf16): packed training, where autocast cannot reach a
        convolution at all."""
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
                  if seen and all(bf16 for bf16, _ in seen) and (repeated or sum(grad for _, grad in seen) <= 1)}
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


class GraphStep:
    """The training step replayed from one CUDA graph: at the paper's batch of 64 the GPU
    time of a step is smaller than the cost of launching its hundreds of kernels, and a
    graph launches them all at once (speed-ups in ``benchmarks/RESULTS.md``).

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
