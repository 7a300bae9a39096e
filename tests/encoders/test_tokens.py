"""Token sequences through the families, ``npz:`` files, the trainer and the previews.

The contract tests (``test_encoder_contract.py``) run every family on a one-hot shape; here
what is particular to text: the decoder's output is a softmax over the symbols, the
reconstruction loss is the per-position cross-entropy, ACAI's critic reads probabilities
(never logits), and an ``npz:`` file of token ids loads as one-hot sequences with its symbols.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import encoders
from repeval import data
from repeval.data.base import Example
from repeval.specs import make_spec
from repeval.train import Trainer

TOKENS = Example("tokens", 6, 64)


def one_hot(ids: torch.Tensor, vocab: int = TOKENS.channels) -> torch.Tensor:
    return F.one_hot(ids, vocab).permute(0, 2, 1).float()


def sequences(n: int = 8, seed: int = 0) -> torch.Tensor:
    return one_hot(torch.randint(0, TOKENS.channels, (n, TOKENS.size), generator=torch.Generator().manual_seed(seed)))


def build(name: str):
    family = encoders.get(name)
    torch.manual_seed(0)
    return family.build(TOKENS.channels, 4, 32, dict(family.hparams), TOKENS)


@pytest.mark.parametrize("name", ["baseline", "dropout", "denoising", "vae", "aae", "vqvae", "acai", "vae+acai",
                                  "pixels"])
def test_every_family_decodes_a_token_sequence_as_a_softmax_over_its_symbols(name):
    model = build(name).eval()
    x = sequences()
    with torch.no_grad():
        if not model.learned:
            model.fit(x)
        decoded = model.decode(model.encode(x))
    assert decoded.shape == x.shape
    assert bool((decoded >= 0).all())
    torch.testing.assert_close(decoded.sum(dim=1), torch.ones(8, TOKENS.size))


def test_the_reconstruction_loss_on_tokens_is_the_per_position_cross_entropy():
    model = build("baseline")
    x = sequences()
    step = model.training_step(x)
    logits = model.decoder(model.encoder(x))
    expected = F.cross_entropy(logits, x.argmax(dim=1))
    torch.testing.assert_close(step.losses["autoencoder"], expected)
    assert set(step.logs) == {"cross_entropy"}
    vae = build("vae")
    logs = vae.training_step(x).logs
    assert "cross_entropy" in logs and "mse" not in logs


@pytest.mark.parametrize("name", ["acai", "vae+acai"])
def test_acais_critic_reads_probabilities_and_its_blend_stays_on_the_simplex(name):
    model = build(name)
    seen: list[torch.Tensor] = []
    model.critic.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model.training_step(sequences())
    assert len(seen) == 2  # decoded interpolants, then the blend γ·x + (1 − γ)·x̂
    for inputs in seen:
        assert bool((inputs >= 0).all())
        torch.testing.assert_close(inputs.sum(dim=1), torch.ones(8, TOKENS.size))


def write_tokens(path, n_train: int = 96, n_test: int = 32, length: int = 48, **extra) -> None:
    """Three classes of sequences over "_abcde": class k repeats symbol k+1, with noise; padded
    on the right with "_" (id 0) from a random point; the file declares length 64."""
    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(n) % 3
        ids = np.where(rng.random((n, length)) < 0.8, y[:, None] + 1, rng.integers(1, 6, (n, length)))
        ends = rng.integers(8, length, n)
        ids[np.arange(length)[None, :] >= ends[:, None]] = 0
        return ids, y

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    np.savez(path, **{"kind": np.array("tokens"), "symbols": np.array(list("_abcde")), "pad": np.array(0),
                      "length": np.array(64), "x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, **extra})


def test_an_npz_file_of_token_ids_loads_one_hot_padded_to_its_declared_length(tmp_path):
    write_tokens(tmp_path / "t.npz")
    entry = data.get(f"npz:{tmp_path / 't.npz'}")
    assert entry.example == Example("tokens", 6, 64)
    ds = entry.load(data.DataOptions())
    assert ds.train.x.shape == (96, 6, 64) and ds.train.x.dtype == torch.bool
    assert ds.symbols == tuple("_abcde") and ds.example == entry.example
    assert bool((ds.train.x.sum(dim=1) == 1).all())
    assert bool(ds.train.x[:, 0, 48:].all())  # padded with "_" from 48 to the declared 64
    assert "padded with '_' to 64" in ds.info["rule"]


@pytest.mark.parametrize("encoder", ["baseline", "acai"])
def test_a_token_run_trains_loads_back_and_previews_as_text(tmp_path, encoder):
    from repeval.previews import load_previews, write_previews
    from repeval.report.figures import text_previews

    write_tokens(tmp_path / "t.npz")
    name = f"npz:{tmp_path / 't.npz'}"
    dataset = data.load(name)
    spec = make_spec(encoder, name, latent_dim=64, budget=256, seed=0)
    ckpt = Trainer(spec, dataset, "cpu", tmp_path / "runs", progress=False, log=lambda m: None).run()
    assert ckpt.load_state()["example"] == ["tokens", 6, 64]
    model = ckpt.load_model()
    assert model.arch.tokens and model.arch.latent_shape == (4, 16)
    write_previews(tmp_path / "run", model, dataset, model.default_latent(), "cpu")
    arrays = load_previews(tmp_path / "run", model.default_latent())
    assert arrays is not None and arrays["symbols"].tolist() == list("_abcde")
    shown = text_previews(arrays)
    assert len(shown["reconstructions"]) == 8 and len(shown["interpolations"]) == 4
    assert not shown["has_nearest"]  # an npz file has no bank of valid strings
    original = shown["reconstructions"][0]["original"]
    assert set(str(original)) <= set("abcde_") and not str(original).endswith("_")  # trailing padding dropped


def test_text_previews_mark_the_characters_that_differ_from_the_nearest_valid_string():
    from repeval.report.figures import text_previews

    symbols = np.array(["_", "a", "b", "<"])
    ids = np.array([[1, 2, 2, 3, 0, 0]])  # "abb<" then padding
    near = np.array([[1, 1, 2, 1, 0, 0]])  # "aaba"
    probabilities = np.eye(4, dtype=np.float16)[ids].transpose(0, 2, 1)  # (1, V, L)
    shown = text_previews({"symbols": symbols, "pad": np.int64(0), "originals": probabilities,
                           "reconstructions": probabilities, "interpolations": probabilities[None],
                           "nearest_reconstructions": near, "nearest_interpolations": near[None]})
    row = shown["reconstructions"][0]
    assert str(row["decoded"]) == 'a<span class="bad">b</span>b<span class="bad">&lt;</span>'  # escaped
    assert str(row["nearest"]) == "aaba" and not row["valid"] and str(row["original"]) == "abb&lt;"
    assert shown["has_nearest"] and str(shown["interpolations"][0][0]["decoded"]) == str(row["decoded"])
