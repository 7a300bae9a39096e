"""Conv stacks of docs/protocol.md §2.2–2.5: parameter counts, shapes, initialisation."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
from torch import nn

import encoders
from encoders import layers
from encoders.base import Arch, count
from encoders.layers import Decoder, Encoder, NearestUp, PairMean, SignalConv, conv, dense

# docs/protocol.md §2.5: (colors, depth, latent_width, latent channels) -> encoder, decoder, ACAI critic
PAPER_COUNTS = [
    ((1, 16, 2, 16), 627_472, 313_985, 627_472),  # lines
    ((1, 16, 4, 2), 150_146, 75_265, 150_146),  # MNIST 32
    ((1, 16, 4, 16), 166_288, 83_329, 166_288),  # MNIST 256
    ((3, 64, 4, 2), 2_370_178, 1_186_947, 2_370_178),  # SVHN / CelebA 32
    ((3, 64, 4, 16), 2_434_704, 1_219_203, 2_434_704),  # SVHN / CelebA / CIFAR 256
    ((3, 64, 4, 64), 2_655_936, 1_329_795, 2_655_936),  # CIFAR-10 1024
]


@pytest.mark.parametrize("shape, encoder, decoder, critic", PAPER_COUNTS,
                         ids=["lines", "mnist32", "mnist256", "svhn32", "svhn256", "cifar1024"])
def test_acai_parameter_counts_match_the_paper(shape, encoder, decoder, critic):
    model = encoders.get("acai")(Arch(*shape))
    assert model.parameter_counts() == {"encoder": encoder, "decoder": decoder, "critic": critic}


def test_every_family_reports_the_paper_conv_stacks_and_its_own_heads():
    arch = Arch.for_latent_dim(1, 16, 256)
    d = 256
    extra = {
        "baseline": {}, "dropout": {}, "denoising": {},
        "vae": {"heads": 2 * (d * d + d)},
        "aae": {"discriminator": (d * 100 + 100) + (100 * 100 + 100) + (100 + 1)},
        "vqvae": {"bottleneck": (d * 10 * d + 10 * d) + (10 * d * 512 + 512) + (512 * d + d), "codebook": 2 ** 14 * d},
        "acai": {"critic": 166_288},
    }
    for name, heads in extra.items():
        counts = encoders.get(name)(arch).parameter_counts()
        assert counts == {"encoder": 166_288, "decoder": 83_329, **heads}, name


def test_acai_advdepth_sets_the_critic_width():
    model = encoders.get("acai")(Arch(1, 16, 4, 16), advdepth=8)
    assert model.parameter_counts()["critic"] == count(Encoder(1, 8, 3, 16))


def test_stacks_map_images_to_the_latent_map_and_back():
    enc, dec = Encoder(3, 4, 4, 16), Decoder(16, 4, 4, 3)
    z = enc(torch.zeros(2, 3, 32, 32))
    assert z.shape == (2, 16, 2, 2)
    assert dec(z).shape == (2, 3, 32, 32)


def test_layer_order_matches_the_official_stack():
    kinds = [type(m).__name__ for m in Encoder(1, 4, 1, 2)]
    assert kinds == ["Conv2d", "Conv2d", "LeakyReLU", "Conv2d", "LeakyReLU", "AvgPool2d",
                     "Conv2d", "LeakyReLU", "Conv2d"]
    kinds = [type(m).__name__ for m in Decoder(2, 4, 1, 1)]
    assert kinds == ["Conv2d", "LeakyReLU", "Conv2d", "LeakyReLU", "Upsample", "Conv2d", "LeakyReLU", "Conv2d"]
    assert Encoder(1, 4, 1, 2)[2].negative_slope == 0.2


def test_conv_init_is_he_modified_normal_with_zero_bias():
    torch.manual_seed(0)
    layer = conv(64, 128, 3)
    fan_in = 3 * 3 * 64
    assert layer.bias.abs().sum() == 0
    std = layer.weight.std().item()
    assert math.isclose(std, 1 / math.sqrt(1.04 * fan_in), rel_tol=0.01)  # 73,728 draws: ±0.3% sampling error


def test_dense_init_is_glorot_uniform_with_zero_bias():
    torch.manual_seed(0)
    layer = dense(300, 100)
    limit = math.sqrt(6 / (300 + 100))
    assert layer.bias.abs().sum() == 0
    assert layer.weight.abs().max() <= limit
    assert layer.weight.abs().max() > 0.99 * limit


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pair_mean_is_avg_pool1d_bit_for_bit_forward_and_backward(dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 64, dtype=dtype, requires_grad=True)
    grad = torch.randn(3, 5, 32, dtype=dtype)
    ours, theirs = PairMean(2)(x), nn.AvgPool1d(2)(x)
    assert torch.equal(ours, theirs)
    assert torch.equal(torch.autograd.grad(ours, x, grad)[0], torch.autograd.grad(theirs, x, grad)[0])
    with pytest.raises(ValueError, match="pairs"):
        PairMean(4)


def test_the_1d_stack_pools_with_pair_mean_and_computes_what_avg_pool1d_would():
    torch.manual_seed(0)
    enc = Encoder(1, 4, 3, 2, spatial=1)
    assert [type(m).__name__ for m in enc].count("PairMean") == 3
    x = torch.randn(2, 1, 64)
    reference = nn.Sequential(*[nn.AvgPool1d(2) if isinstance(m, PairMean) else m for m in enc])
    with mock.patch.object(layers, "SIGNALS_CHANNELS_LAST", False):  # AvgPool1d takes the plain (B, C, L)
        assert torch.equal(enc(x), reference(x))


def test_1d_convs_keep_conv1d_parameters_so_checkpoints_load():
    enc = Encoder(1, 4, 3, 2, spatial=1)
    plain = nn.Sequential(*[nn.Conv1d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding)
                            if isinstance(m, SignalConv) else m for m in enc])
    assert all(isinstance(m, nn.Conv1d) for m in enc if isinstance(m, SignalConv))
    assert {k: v.shape for k, v in enc.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}


@pytest.mark.parametrize("kind, channels, length", [("signal", 1, 1024), ("tokens", 22, 64)])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
def test_the_channels_last_1d_layout_computes_the_conv1d_stack(kind, channels, length, dtype, tolerance):
    # the 1-D stacks run as (B, C, 1, L) channels-last 2-D convs (faster on a CPU): the same function
    # as plain conv1d stacks, forward and backward, up to rounding; (B, C, L) in and out
    from repeval.data.base import Example

    torch.manual_seed(0)
    model = encoders.get("acai").build(channels, 8, 64, {}, Example(kind, channels, length))
    x = torch.randn(4, channels, length)

    def run(channels_last: bool):
        model.zero_grad()
        with mock.patch.object(layers, "SIGNALS_CHANNELS_LAST", channels_last), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            z = model.encoder(x)
            y = model.decoder(z)
            critic = model.critic(y)
        (y.float().square().mean() + critic.float().mean()).backward()
        return z.float(), y.float(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    z, y, grads = run(True)
    z0, y0, grads0 = run(False)
    assert z.shape == (4, 4, 16) and y.shape == (4, channels, length)
    scale = lambda t: t.abs().max().item() + 1e-12  # noqa: E731
    assert (z - z0).abs().max().item() <= tolerance * scale(z0)
    assert (y - y0).abs().max().item() <= tolerance * scale(y0)
    assert len(grads) == len(grads0) == sum(1 for p in model.parameters() if p.grad is not None)
    for g, g0 in zip(grads, grads0):
        assert (g - g0).abs().max().item() <= 5 * tolerance * scale(g0)


def test_nearest_up_repeats_each_position():
    x = torch.arange(6.0).reshape(1, 2, 3)
    assert torch.equal(NearestUp()(x), torch.repeat_interleave(x, 2, dim=-1))
    x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    up = NearestUp()(x4)
    assert torch.equal(up.squeeze(2), torch.repeat_interleave(x, 2, dim=-1))
    assert up.is_contiguous(memory_format=torch.channels_last)
