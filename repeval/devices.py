"""Device rules, in one leaf module: which device ``auto`` means, batch sizes per device,
and the default training budget. Everything that depends on the device asks here."""

from __future__ import annotations

from repeval.errors import UserError

PAPER_BUDGET = 2 ** 24  # images, as the paper counts (docs/protocol.md §3.1)
CPU_BUDGET = 2 ** 14  # default on a CPU: ~2 minutes of ACAI on MNIST on a 2-core laptop


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; an unavailable CUDA is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, colon, index = str(device).partition(":")
    if device == "cpu":
        return device
    if kind != "cuda" or (colon and not index.isdigit()):
        raise UserError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N.")
    if not torch.cuda.is_available():
        raise UserError(f"--device {device} was requested but torch sees no CUDA device "
                        f"(torch {torch.__version__}). Use --device cpu or --device auto.")
    if colon and int(index) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s), numbered from 0. "
                        "Give --device cuda (the first) or cuda:N with a smaller N.")
    return device


def default_budget(device: str) -> int:
    """The paper's 2^24 images on a GPU; 2^14 on a CPU (announced by the commands)."""
    return PAPER_BUDGET if is_cuda(device) else CPU_BUDGET


def eval_batch_size(device: str) -> int:
    """Images per forward pass in evaluation: 1,024 on a GPU; 256 on a CPU, where smaller
    activations stay in cache (about 2x faster on a 2-core CPU, benchmarks/RESULTS.md)."""
    return 1024 if is_cuda(device) else 256
