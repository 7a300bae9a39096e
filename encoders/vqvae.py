"""VQ-VAE (``docs/protocol.md`` §3.7, official ``vqvae.py`` and ``lib/discretization.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from encoders.base import Arch, DecoderInput, Step, count
from encoders.layers import ConvAutoencoder, dense, full_precision
from repeval.ranges import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Float, Int


class VQVAE(ConvAutoencoder):
    """A vector-quantised bottleneck with an EMA codebook between encoder and decoder.

    The flattened encoder map (size H) is projected by a dense layer to ``num_latents``
    vectors of size H; each is snapped to its nearest (squared Euclidean) entry of a
    codebook of 2^``z_log_size`` vectors; the straight-through result goes through
    ReLU → dense ``filter_size`` → ReLU → dense H ("the dense output"), is reshaped to the
    latent map and decoded. Loss = MSE + ``beta``·mean((z_e − sg(z_q))²).

    Codebook (buffers, not parameters), as the official EMA variant (one block, one
    residual level): initialised uniform in ±sqrt(3/K), K = 2^``z_log_size`` (TensorFlow's
    ``uniform_unit_scaling_initializer`` on a [1, 1, K, H] variable); ``ema_count`` starts
    at 0 and ``ema_means`` at the initial codebook. Every training step quantises with the
    current codebook, then updates, with decay ``decay`` and counts c from this batch:
    ``ema_count ← decay·ema_count + (1−decay)·c``,
    ``ema_means ← decay·ema_means + (1−decay)·Σ_assigned z_e``,
    n = Σ ema_count, smoothed = (ema_count + ε)/(n + K·ε)·n (Laplace, ε = ``epsilon``),
    ``codebook ← ema_means / smoothed``. No codebook loss term (EMA replaces it).

    Latents: ``continuous`` (the encoder map before projection and quantisation, the
    official ``ops.encode``; decoding it goes through projection and quantisation) and
    ``quantized`` (the ``num_latents`` selected codebook vectors, concatenated: size
    ``num_latents``·H). The online classifier reads the dense output (size H), as the
    official code. Differences: the official graph seed (123) is not reproduced (the
    trainer seeds torch); its ``soft_em``/``random_top_k`` options are off there and absent here.
    A latent regulariser (``vqvae+acai``) interpolates the dense output, the tensor the
    decoder reads (the straight-through codes after the ReLU-dense-ReLU-dense head).
    """

    name = "vqvae"
    summary = "vector-quantised bottleneck, 10 codes from a 2^14 EMA codebook"
    hparams = {"z_log_size": 14, "num_latents": 10, "beta": 10.0, "decay": 0.999, "epsilon": 1e-5,
               "filter_size": 512}
    hparam_ranges = {"z_log_size": Int(1, 20).means("log2 of the codebook size"),
                     "num_latents": POSITIVE_INT.means("codes per image"),
                     "beta": NON_NEGATIVE.means("the weight of the commitment loss"),
                     "decay": Float(0, 1, high_open=True).means("the EMA decay of the codebook"),
                     "epsilon": POSITIVE.means("the Laplace smoothing of the codebook counts"),
                     "filter_size": POSITIVE_INT.means("the width of the dense head after quantisation")}
    latents = {"continuous": "the flattened encoder map before projection and quantisation",
               "quantized": "the num_latents selected codebook vectors, concatenated"}
    default_latent_dims = {"lines": 256}  # the paper's lines VQ-VAE used a 4x4x16 map (docs/protocol.md §3.9)

    def __init__(self, arch: Arch, **hparams):
        super().__init__(arch, **hparams)
        hidden = arch.latent_dim
        self.num_latents = int(self.hp["num_latents"])
        self.codebook_size = 2 ** int(self.hp["z_log_size"])
        self.project = dense(hidden, hidden * self.num_latents)
        self.hidden = dense(hidden * self.num_latents, int(self.hp["filter_size"]))
        self.out = dense(int(self.hp["filter_size"]), hidden)
        bound = math.sqrt(3.0 / self.codebook_size)
        codebook = torch.empty(self.codebook_size, hidden).uniform_(-bound, bound)
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.zeros(self.codebook_size))
        self.register_buffer("ema_means", codebook.clone())

    def nearest(self, z_e: Tensor) -> Tensor:
        """Index of the nearest codebook vector for each row of ``z_e`` (N, H), in float32."""
        with torch.no_grad(), full_precision(z_e.device):
            # argmin_k |z|² + |m_k|² − 2 z·m_k; |z|² does not change the argmin
            dist = torch.addmm(self.codebook.square().sum(1), z_e.float(), self.codebook.T, alpha=-2.0)
            return dist.argmin(1)

    def project_codes(self, h: Tensor) -> Tensor:
        """z_e: the flattened map (B, H) projected to (B·num_latents, H) vectors, in float32."""
        with full_precision(h.device):
            return self.project(h.float()).reshape(-1, self.arch.latent_dim)

    def head(self, quantized: Tensor) -> Tensor:
        """The dense output: ReLU → dense ``filter_size`` → ReLU → dense H."""
        return self.out(F.relu(self.hidden(F.relu(quantized))))

    def quantize(self, h: Tensor) -> Tensor:
        """The selected codebook vectors for the flattened map ``h``, as (B, num_latents·H)."""
        z_e = self.project_codes(h)
        return self.codebook[self.nearest(z_e)].reshape(h.shape[0], -1)

    def update_codebook(self, z_e: Tensor, idx: Tensor) -> Tensor:
        """One EMA step of the codebook from vectors ``z_e`` assigned to entries ``idx``.

        Returns this batch's assignment counts per codebook entry.
        """
        decay, eps, k = float(self.hp["decay"]), float(self.hp["epsilon"]), self.codebook_size
        with torch.no_grad(), full_precision(z_e.device):
            # index_add rather than bincount: no host synchronisation, so the step fits a CUDA graph;
            # out of place, so it also runs under torch.func.vmap (packed seeds)
            counts = torch.zeros(k, device=idx.device).index_add(0, idx, torch.ones(idx.shape, device=idx.device))
            sums = torch.zeros_like(self.ema_means).index_add(0, idx, z_e.detach().float())
            self.ema_count.mul_(decay).add_(counts, alpha=1.0 - decay)
            self.ema_means.mul_(decay).add_(sums, alpha=1.0 - decay)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + eps) / (n + k * eps) * n
            self.codebook.copy_(self.ema_means / smoothed.unsqueeze(1))
        return counts

    def encode(self, x: Tensor, latent: str | None = None) -> Tensor:
        latent = self.check_latent(latent)
        h = self.encoder(x).flatten(1).float()
        return h if latent == "continuous" else self.quantize(h)

    def decode(self, z: Tensor, latent: str | None = None) -> Tensor:
        latent = self.check_latent(latent)
        quantized = self.quantize(z) if latent == "continuous" else z
        return self.output(self.decoder(self.to_map(self.head(quantized))).float())

    def features(self, x: Tensor) -> Tensor:
        return self.head(self.quantize(self.encoder(x).flatten(1))).float()

    def training_pass(self, x: Tensor) -> tuple[Step, DecoderInput]:
        h = self.encoder(x).flatten(1)
        z_e = self.project_codes(h)
        idx = self.nearest(z_e)
        z_q = self.codebook[idx]
        commitment = (z_e - z_q).square().mean()  # z_q is a buffer: the gradient reaches z_e only
        straight_through = (z_e + (z_q - z_e).detach()).reshape(x.shape[0], -1)
        counts = self.update_codebook(z_e, idx)
        dense_out = self.head(straight_through)
        x_hat = self.decoder(self.to_map(dense_out))
        rec = self.reconstruction_loss(x_hat, x)
        vq_loss = float(self.hp["beta"]) * commitment
        return Step(losses={"autoencoder": rec + vq_loss}, features=dense_out.detach().float(),
                    logs={self.reconstruction_name: rec.detach(), "vqvae_loss": vq_loss.detach(),
                          "codes_used": (counts > 0).sum().float()}), self.decoder_input(dense_out, x_hat)

    def extra_counts(self) -> dict[str, int]:
        return {"bottleneck": count(self.project) + count(self.hidden) + count(self.out),
                "codebook": self.codebook.numel()}
