"""Shared fixtures of the encoder tests: a tiny architecture, fixed images, a per-group trainer."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from encoders.base import Arch, Autoencoder

TINY = Arch(colors=1, depth=4, latent_width=4, latent_channels=2)  # 3 scales, 32-dim latent


@pytest.fixture
def tiny_arch() -> Arch:
    return TINY


@pytest.fixture
def images() -> torch.Tensor:
    """64 fixed images in [-1, 1], MNIST-like: a bright Gaussian blob (random centre and
    width, fixed seed) on a −1 background."""
    gen = torch.Generator().manual_seed(1234)
    centre = 8 + 16 * torch.rand(64, 2, 1, 1, generator=gen)
    width = 2 + 3 * torch.rand(64, 1, 1, generator=gen)
    grid = torch.arange(32.0)
    dist2 = (grid.view(1, 32, 1) - centre[:, 0]) ** 2 + (grid.view(1, 1, 32) - centre[:, 1]) ** 2
    return (2 * torch.exp(-dist2 / (2 * width ** 2)) - 1).unsqueeze(1)


def per_group_step(model: Autoencoder, x: torch.Tensor, optimisers: dict[str, torch.optim.Optimizer],
                   groups: dict[str, tuple[list, float]], only: set[str] | None = None) -> dict[str, float]:
    """One training step as the trainer takes it: each group's loss differentiated w.r.t. its own
    parameters only, every group stepped from the same forward pass (or just the ``only`` groups)."""
    step = model.training_step(x)
    names = [g for g in groups if only is None or g in only]
    all_grads = {g: torch.autograd.grad(step.losses[g], groups[g][0], retain_graph=True, allow_unused=True)
                 for g in names}
    for g in names:
        for p, grad in zip(groups[g][0], all_grads[g]):
            p.grad = grad
        optimisers[g].step()
        optimisers[g].zero_grad(set_to_none=True)
    return {k: float(v) for k, v in step.logs.items()}


@pytest.fixture
def train() -> Callable[..., None]:
    """``train(model, x, steps, lr)``: Adam per optimiser group, as the trainer does."""

    def run(model: Autoencoder, x: torch.Tensor, steps: int, lr: float = 1e-3) -> None:
        groups = model.optimizer_groups(lr)
        optimisers = {g: torch.optim.Adam(params, lr=group_lr) for g, (params, group_lr) in groups.items()}
        model.train()
        for _ in range(steps):
            per_group_step(model, x, optimisers, groups)

    return run


@pytest.fixture
def group_step() -> Callable[..., dict[str, float]]:
    """:func:`per_group_step` (one step, optionally of some groups only)."""
    return per_group_step
