"""The paper's shared building blocks: conv encoder/decoder stacks, initialisation, losses.

Layer lists, initialisation and activations follow the official ``lib/layers.py``
(``docs/protocol.md`` §2.2–2.4): every conv is stride 1 with "same" padding and a bias; leaky ReLU
(slope 0.2) after every conv except the first 1×1 conv of the encoder and the last conv of
each stack; conv kernels are drawn from N(0, 1/((1 + 0.2²)·fan_in)) with fan_in = k·k·C_in,
biases are zero; dense layers are Glorot-uniform with zero biases (TensorFlow's defaults).
Tensors are NCHW (the official code is NHWC; only the flattening order differs).

On 1-D signals (``Arch.spatial == 1``, tensors NCL) the same stacks use ``Conv1d`` with kernels
of 3 (the encoder's first conv 1), a 2-position average pooling (:class:`PairMean`, the numbers of
``AvgPool1d(2)``) and 2× nearest up-sampling; fan_in = k·C_in. They take and return (B, C, L) but
run inside as (B, C, 1, L) tensors in channels-last memory (:class:`SignalConv` keeps the
``Conv1d`` parameters and computes a 1×k 2-D conv): the same function, other roundings, and on a
CPU 1.1–1.2× faster training than plain ``conv1d`` (``benchmarks/RESULTS.md`` §13.6).
Their width doubles at every second pooling (:func:`stack_width`), which keeps the
paper's cost per scale (a 1-D pooling halves the positions, a 2-D one quarters them).

On token sequences (``Arch.tokens``: ``V`` symbols at ``L`` positions) the 1-D stacks read the
one-hot input as ``V`` channels and their last conv emits ``V`` logits per position: the
reconstruction loss is the per-position cross-entropy (:func:`cross_entropy`) instead of the
MSE, and what the model decodes — :meth:`ConvAutoencoder.decode`, the reconstruction and
decoded interpolants a latent regulariser's critic reads — is the softmax over the symbols
(:meth:`ConvAutoencoder.output`), a point of the simplex like the one-hot input.

:class:`ConvAutoencoder` is the skeleton every learned family builds on: the encoder and
decoder stacks of its :class:`~encoders.base.Arch`, the flattened encoder map as latent,
and the §2.5 parameter counts. Numerically sensitive reductions (losses, KL, vector
quantisation distances, EMA updates) are computed in float32 even under ``torch.autocast``
(see :func:`full_precision` and :func:`mse`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import Arch, Autoencoder, DecoderInput, Step, count

LRELU_SLOPE = 0.2


class SignalConv(nn.Conv1d):
    """A ``Conv1d`` (its parameters, state-dict keys and numbers) that also runs on the 1-D
    stacks' internal layout, (B, C, 1, L) tensors in channels-last memory, as a 1×k 2-D conv.

    On a CPU oneDNN's channels-last 2-D convolution is 1.5–2.4× faster than ``conv1d`` at the
    stacks' wide early scales (``benchmarks/RESULTS.md`` §13.6): the same arithmetic, other
    roundings, like the 2-D stacks' channels-last layout."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return super().forward(x)
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, padding=(0, self.padding[0]))


class NearestUp(nn.Module):
    """2× nearest up-sampling of the last dimension (of (B, C, L) or the internal (B, C, 1, L)),
    keeping a channels-last layout: the numbers of ``nn.Upsample(scale_factor=2)`` on 1-D maps."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=(1, 2), mode="nearest")


# The 1-D stacks run as (B, C, 1, L) channels-last tensors (:class:`SignalConv`); False runs them
# as plain (B, C, L) conv1d stacks, the same function (benchmarks/bench_signals.py --parts layout).
SIGNALS_CHANNELS_LAST = True


class _Stack(nn.Sequential):
    """A conv stack; a 1-D one (``spatial`` 1) takes and returns (B, C, L) and runs inside as
    (B, C, 1, L) in channels-last memory while :data:`SIGNALS_CHANNELS_LAST`."""

    spatial = 2

    def forward(self, x: Tensor) -> Tensor:
        if self.spatial == 2 or x.dim() != 3 or not SIGNALS_CHANNELS_LAST:
            return super().forward(x)
        h = x.unsqueeze(2)
        if not torch._C._functorch.is_batchedtensor(h):  # vmap (packed seeds) has no memory formats
            h = h.contiguous(memory_format=torch.channels_last)
        return super().forward(h).squeeze(2)


def conv(c_in: int, c_out: int, kernel: int, spatial: int = 2) -> nn.Conv2d | nn.Conv1d:
    """A "same"-padded conv (2-D, or 1-D when ``spatial`` is 1) with the paper's He-modified
    normal init and a zero bias."""
    layer = (nn.Conv2d if spatial == 2 else SignalConv)(c_in, c_out, kernel, padding=kernel // 2)
    fan_in = kernel ** spatial * c_in
    nn.init.normal_(layer.weight, std=1.0 / math.sqrt((1.0 + LRELU_SLOPE ** 2) * fan_in))
    nn.init.zeros_(layer.bias)
    return layer


def dense(n_in: int, n_out: int) -> nn.Linear:
    """A dense layer with TensorFlow's defaults: Glorot-uniform kernel, zero bias."""
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LRELU_SLOPE)


def stack_width(depth: int, scale: int, spatial: int) -> int:
    """Channels at ``scale``: doubling at every pooling on images, every second on signals."""
    return depth << (scale if spatial == 2 else scale // 2)


class PairMean(nn.Module):
    """``AvgPool1d(2)`` on (B, C, L) with even L: the mean of each pair of neighbouring positions.

    The same numbers bit for bit, forward and backward, in float32 and bfloat16 (a sum of two
    followed by an exact halving), computed as two strided views: on a CPU it costs about a third
    of ``avg_pool1d``, which goes through the 2-D kernel and was 15–18 % of a 1-D training step
    (``benchmarks/RESULTS.md`` §13.5). It has no parameters, so checkpoints are unaffected.
    """

    def __init__(self, kernel_size: int = 2):
        super().__init__()
        if kernel_size != 2:
            raise ValueError(f"PairMean pools pairs of positions, not {kernel_size}")

    def forward(self, x: Tensor) -> Tensor:
        return (x[..., 0::2] + x[..., 1::2]) * 0.5


class Encoder(_Stack):
    """The encoder stack f (``docs/protocol.md`` §2.2); also the ACAI critic (§2.6) with its own weights.

    1×1 conv to ``depth`` (linear); per scale i: two 3×3 convs to ``depth·2^i`` + leaky ReLU,
    2×2 average pooling; 3×3 conv to ``depth·2^scales`` + leaky ReLU; 3×3 conv to
    ``latent_channels`` (linear). Maps (B, colors, 32, 32) to (B, latent_channels, w, w),
    w = 32 / 2^scales. With ``spatial=1``: the 1-D stack (module docstring), (B, colors, L) to
    (B, latent_channels, L / 2^scales).
    """

    def __init__(self, colors: int, depth: int, scales: int, latent_channels: int, spatial: int = 2):
        pool = nn.AvgPool2d if spatial == 2 else PairMean
        layers: list[nn.Module] = [conv(colors, depth, 1, spatial)]
        c_in = depth
        for scale in range(scales):
            width = stack_width(depth, scale, spatial)
            layers += [conv(c_in, width, 3, spatial), lrelu(), conv(width, width, 3, spatial), lrelu(), pool(2)]
            c_in = width
        top = stack_width(depth, scales, spatial)
        layers += [conv(c_in, top, 3, spatial), lrelu(), conv(top, latent_channels, 3, spatial)]
        super().__init__(*layers)
        self.spatial = spatial


class Decoder(_Stack):
    """The decoder stack g (``docs/protocol.md`` §2.3).

    Per scale i = scales−1 … 0: two 3×3 convs to ``depth·2^i`` + leaky ReLU, 2× nearest
    up-sampling; 3×3 conv to ``depth`` + leaky ReLU; 3×3 conv to ``colors`` (linear, no
    output activation). Maps (B, latent_channels, w, w) to (B, colors, 32, 32); with
    ``spatial=1`` the 1-D stack, (B, latent_channels, w) to (B, colors, w·2^scales).
    """

    def __init__(self, latent_channels: int, depth: int, scales: int, colors: int, spatial: int = 2):
        layers: list[nn.Module] = []
        c_in = latent_channels
        for scale in range(scales - 1, -1, -1):
            width = stack_width(depth, scale, spatial)
            layers += [conv(c_in, width, 3, spatial), lrelu(), conv(width, width, 3, spatial), lrelu(),
                       nn.Upsample(scale_factor=2, mode="nearest") if spatial == 2 else NearestUp()]
            c_in = width
        layers += [conv(c_in, depth, 3, spatial), lrelu(), conv(depth, colors, 3, spatial)]
        super().__init__(*layers)
        self.spatial = spatial


@contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast on ``device`` so matmuls and reductions inside run in float32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error over all elements, in float32 (``tf.losses.mean_squared_error``)."""
    return F.mse_loss(x_hat.float(), x.float())


def cross_entropy(logits: Tensor, x: Tensor) -> Tensor:
    """Cross-entropy of per-position ``logits`` ``(B, V, L)`` against one-hot ``x`` ``(B, V, L)``,
    averaged over positions and the batch, in float32."""
    return F.cross_entropy(logits.float(), x.argmax(dim=1))


class ConvAutoencoder(Autoencoder):
    """The encoder/decoder stacks of ``arch`` with the flattened encoder map as latent.

    Subclasses implement ``training_step`` and, where their latents differ, ``encode`` and
    ``decode``. ``parameter_counts`` reports the conv stacks as ``encoder``/``decoder`` (the
    numbers of ``docs/protocol.md`` §2.5) plus whatever :meth:`extra_counts` adds.
    """

    kinds = frozenset({"image", "signal", "tokens"})  # the skeleton is 2-D or 1-D as the Arch says

    def __init__(self, arch: Arch, **hparams):
        super().__init__(arch, **hparams)
        self.encoder = Encoder(arch.colors, arch.depth, arch.scales, arch.latent_channels, arch.spatial)
        self.decoder = Decoder(arch.latent_channels, arch.depth, arch.scales, arch.colors, arch.spatial)

    def to_map(self, z: Tensor) -> Tensor:
        """A flattened latent (B, D) back to the encoder map's shape (B, C, w, w) or (B, C, w)."""
        return z.reshape(z.shape[0], *self.arch.latent_shape)

    def encode(self, x: Tensor, latent: str | None = None) -> Tensor:
        self.check_latent(latent)
        return self.encoder(x).flatten(1).float()

    def decode(self, z: Tensor, latent: str | None = None) -> Tensor:
        self.check_latent(latent)
        return self.output(self.decoder(self.to_map(z)).float())

    def output(self, raw: Tensor) -> Tensor:
        """The decoder's raw output as an example: itself on images and signals, the softmax over
        the symbols (float32) on token sequences."""
        return torch.softmax(raw.float(), dim=1) if self.arch.tokens else raw

    def reconstruction_loss(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """The MSE of ``x_hat`` on images and signals; on token sequences the cross-entropy of
        the decoder's logits ``x_hat`` against the one-hot ``x``."""
        return cross_entropy(x_hat, x) if self.arch.tokens else mse(x_hat, x)

    @property
    def reconstruction_name(self) -> str:
        """The name the reconstruction loss is logged under."""
        return "cross_entropy" if self.arch.tokens else "mse"

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """The encoder and decoder weights (the "autoencoder" optimiser group)."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def parameter_counts(self) -> dict[str, int]:
        return {"encoder": count(self.encoder), "decoder": count(self.decoder), **self.extra_counts()}

    def extra_counts(self) -> dict[str, int]:
        """Counts of the family's own modules beyond the conv stacks."""
        return {}

    def reconstruction_step(self, x: Tensor, x_hat: Tensor, z: Tensor, **logs: Tensor) -> Step:
        """The Step of a family whose only loss is the reconstruction loss of the decoder's raw
        output ``x_hat``."""
        loss = self.reconstruction_loss(x_hat, x)
        return Step(losses={"autoencoder": loss}, features=z.detach().flatten(1).float(),
                    logs={self.reconstruction_name: loss.detach(), **logs})

    def decoder_input(self, z: Tensor, x_hat: Tensor) -> DecoderInput:
        """``z`` as the decoder read it (the conv map itself, or a flattened latent reshaped to
        it), with the decoder's raw output ``x_hat`` and the decode as examples (:meth:`output`)."""
        return DecoderInput(z=z, x_hat=self.output(x_hat),
                            decode=lambda code: self.output(self.decoder(code if code.dim() == 2 + self.arch.spatial
                                                                         else self.to_map(code))))
