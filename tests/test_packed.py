"""Packed training: seeds of one spec in one step, every member an ordinary run directory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.func import vmap

import encoders
from repeval import checkpoint as ckpt
from repeval.errors import UserError
from repeval.packed import PackedTrainer, pack_groups
from repeval.train import Trainer
from tests.test_snapshots import states_equal
from tests.test_train import tiny_dataset, tiny_spec

LEARNED = [name for name, family in encoders.REGISTRY.items() if family.learned]
pytestmark = pytest.mark.slow


def packed(tmp_path, specs, max_steps=None, **kwargs):
    return PackedTrainer(specs, tiny_dataset(), "cpu", tmp_path, progress=False, log=lambda m: None,
                         **kwargs).run(max_steps=max_steps)


def single(tmp_path, spec, **kwargs):
    return Trainer(spec, tiny_dataset(), "cpu", tmp_path, progress=False, log=lambda m: None, **kwargs).run()


def test_packs_group_the_seeds_of_one_spec():
    a0, a1, b0 = tiny_spec("acai", seed=0), tiny_spec("acai", seed=1), tiny_spec("baseline", seed=0)
    assert pack_groups([a0, b0, a1]) == [[a0, a1], [b0]]
    with pytest.raises(ValueError, match="two or more distinct seeds of one spec"):
        PackedTrainer([a0, b0], tiny_dataset(), "cpu", "unused")


def test_each_member_gets_exactly_its_own_gradient():
    """One packed step's gradients against the single models' (baseline: no random draws),
    to float rounding: vmap runs the members' convolutions grouped, which sums in another order."""
    from torch.func import stack_module_state

    from encoders.base import Arch

    arch = Arch(1, 4, 4, 2)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(encoders.get("baseline")(arch))
    x = torch.rand(2, 8, 1, 32, 32) * 2 - 1
    single_grads = [torch.autograd.grad(m.training_step(xm).losses["autoencoder"], list(m.parameters()))
                    for m, xm in zip(models, x)]
    params, buffers = stack_module_state(models)
    losses = vmap(lambda p, b, xm: _training_loss(models[0], p, b, xm))(params, buffers, x)
    grads = torch.autograd.grad(losses.sum(), list(params.values()))
    for i in range(2):
        for g, reference in zip(grads, single_grads[i]):
            torch.testing.assert_close(g[i], reference, rtol=1e-5, atol=1e-7)


class _Loss(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.training_step(x).losses["autoencoder"]


def _training_loss(model, params, buffers, x):
    from torch.func import functional_call

    return functional_call(_Loss(model), ({f"model.{k}": v for k, v in params.items()},
                                          {f"model.{k}": v for k, v in buffers.items()}), (x,))


def test_a_family_without_random_draws_trains_its_single_runs_numbers(tmp_path):
    """Baseline: each member follows its single run. Losses agree to float rounding (1e-5
    relative over 10 steps). Weights agree within Adam's own bound: an update is about lr in
    size whatever the gradient's, so a rounding-level difference in a near-zero gradient can
    move a weight by up to 2·lr per step, 2·10·1e-4 here (seen: 6e-5)."""
    specs = [tiny_spec("baseline", seed=s) for s in (0, 1)]
    members = packed(tmp_path / "pack", specs)
    for spec, member in zip(specs, members):
        alone = single(tmp_path / f"alone-{spec.seed}", spec)
        packed_state, alone_state = member.load_state(), alone.load_state()
        bound = 2 * spec.steps * spec.lr
        for part in ("model", "classifier"):
            for name, tensor in alone_state[part].items():
                torch.testing.assert_close(packed_state[part][name], tensor, rtol=0, atol=bound, msg=name)
        np.testing.assert_allclose(member.history["autoencoder"], alone.history["autoencoder"], rtol=1e-5)
        assert member.history["step"] == alone.history["step"]
        assert member.history["online_images"] == alone.history["online_images"]


def test_members_draw_independent_correctly_distributed_numbers():
    """The in-step draws of every family (uniform: ACAI's alpha; normal: noise, VAE and AAE
    samples; dropout masks) are independent across members and keep their distributions."""
    def draws(x):
        return torch.rand(x.shape[0]), torch.randn(x.shape[0]), F.dropout(torch.ones(x.shape[0]), 0.5, True)

    torch.manual_seed(0)
    uniform, normal, dropped = vmap(draws, randomness="different")(torch.zeros(3, 20_000))
    for member in range(3):
        assert stats.kstest(uniform[member].numpy(), "uniform").pvalue > 1e-3
        assert stats.kstest(normal[member].numpy(), "norm").pvalue > 1e-3
        assert set(dropped[member].unique().tolist()) == {0.0, 2.0}
        assert abs(float((dropped[member] == 0).float().mean()) - 0.5) < 0.02
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(stats.pearsonr(uniform[a].numpy(), uniform[b].numpy()).statistic) < 0.03
        assert abs(stats.pearsonr(normal[a].numpy(), normal[b].numpy()).statistic) < 0.03


@pytest.mark.parametrize("encoder", LEARNED)
def test_every_family_packs_into_ordinary_run_directories(tmp_path, encoder):
    specs = [tiny_spec(encoder, budget=256, seed=s) for s in (3, 5)]
    members = packed(tmp_path, specs)
    losses = [np.asarray(m.history["autoencoder"]) for m in members]
    assert all(np.isfinite(loss).all() for loss in losses) and not np.array_equal(*losses)  # own seeds, own runs
    for spec, member in zip(specs, members):
        assert member.is_complete() and member.spec == spec
        assert member.provenance["packed_with"] == sorted(s.run_id for s in specs)
        assert member.provenance["packed"].startswith("2 seeds in one step")
        # an ordinary run: found done by the single trainer, loads, encodes
        again = Trainer(spec, tiny_dataset(), "cpu", tmp_path, progress=False)
        assert again.run().path == member.path and again.model is None
        model = member.load_model()
        assert model.encode(torch.zeros(2, 1, 32, 32)).shape == (2, 32)


def test_a_packed_run_interrupted_resumes_packed_exactly(tmp_path):
    specs = [tiny_spec("acai", budget=640, seed=s) for s in (0, 1)]
    whole = packed(tmp_path / "whole", specs)
    part = PackedTrainer(specs, tiny_dataset(), "cpu", tmp_path / "part", progress=False).run(max_steps=4)
    assert [p.load_state()["step"] for p in part] == [4, 4]
    lines = []
    resumed = PackedTrainer(specs, tiny_dataset(), "cpu", tmp_path / "part", progress=False, log=lines.append).run()
    assert lines == ["resuming the pack of 2 seeds of acai at step 4 of 10"]
    for a, b in zip(whole, resumed):
        states_equal(a.load_state(), b.load_state())
        assert a.history == b.history


def test_a_packed_member_can_be_resumed_alone(tmp_path):
    specs = [tiny_spec("dropout", budget=640, seed=s) for s in (0, 1)]
    PackedTrainer(specs, tiny_dataset(), "cpu", tmp_path, progress=False).run(max_steps=4)
    alone = single(tmp_path, specs[0])
    assert alone.is_complete() and alone.load_state()["step"] == 10
    assert alone.history["step"][:4] == [1, 2, 3, 4]  # the packed steps, then its own
    # the other member's checkpoint now disagrees with the finished one: it finishes alone too
    lines = []
    done = PackedTrainer(specs, tiny_dataset(), "cpu", tmp_path, progress=False, log=lines.append).run()
    assert all(c.is_complete() for c in done) and "each member finishes alone" in lines[0]


def test_packed_snapshots_equal_the_shorter_pack(tmp_path):
    long = [tiny_spec("acai", budget=640, seed=s) for s in (0, 1)]
    packed(tmp_path / "long", long, snapshots=[256])
    short = [tiny_spec("acai", budget=256, seed=s) for s in (0, 1)]
    alone = packed(tmp_path / "short", short)
    for spec, reference in zip(short, alone):
        snapshot = ckpt.Checkpoint(ckpt.run_dir(tmp_path / "long", spec))
        states_equal(snapshot.load_state(), reference.load_state())
        assert snapshot.history == reference.history
        assert snapshot.provenance["packed_with"] == sorted(s.run_id for s in short)


def test_a_packed_bf16_step_runs_its_layers_in_bf16_like_the_single_run(tmp_path, monkeypatch):
    """Autocast does not reach convolutions under vmap: the pack's bf16 weight copies (and inputs
    cast to match) must make them bf16, and the numbers follow the single bf16 runs (baseline:
    no random draws) to bf16 rounding."""
    specs = [tiny_spec("baseline", budget=384, seed=s) for s in (0, 1)]
    dtypes = set()
    from encoders.layers import Encoder

    original = Encoder.forward
    monkeypatch.setattr(Encoder, "forward", lambda self, x: dtypes.add(original(self, x).dtype) or original(self, x))
    trainer = PackedTrainer(specs, tiny_dataset(), "cpu", tmp_path / "pack", amp=True, cast_once=False,
                            progress=False)
    members = trainer.run()
    assert torch.bfloat16 in dtypes and trainer._packed_cast
    assert "layers cast once per step" in members[0].provenance["precision"]
    for spec, member in zip(specs, members):
        alone = Trainer(spec, tiny_dataset(), "cpu", tmp_path / f"alone-{spec.seed}", amp=True, progress=False).run()
        np.testing.assert_allclose(member.history["autoencoder"], alone.history["autoencoder"], rtol=2e-2)


def test_a_packed_bf16_acai_casts_the_layers_it_runs_twice(tmp_path):
    """ACAI's decoder and critic run twice with gradients: left to autocast, which does not reach
    convolutions under vmap, they received the encoder's bf16 output with float32 weights and the
    pack failed ("Input type (c10::BFloat16) and bias type (float)"). In a pack they are cast too."""
    specs = [tiny_spec("acai", budget=256, seed=s) for s in (0, 1)]
    trainer = PackedTrainer(specs, tiny_dataset(), "cpu", tmp_path / "pack", amp=True, progress=False)
    members = trainer.run()
    cast = {n.rsplit(".", 2)[0] for n in trainer._packed_cast}
    assert {"model.encoder", "model.decoder", "model.critic"} <= cast
    for spec, member in zip(specs, members):  # the pack's own random draws (α), so to a few percent
        alone = Trainer(spec, tiny_dataset(), "cpu", tmp_path / f"alone-{spec.seed}", amp=True, progress=False).run()
        np.testing.assert_allclose(member.history["autoencoder"], alone.history["autoencoder"], rtol=2e-2)


def test_a_nan_in_one_member_stops_the_pack_naming_it(tmp_path, monkeypatch):
    from encoders.baseline import Baseline

    original = Baseline.training_step

    def poisoned(self, x):
        step = original(self, x)
        step.losses["autoencoder"] = step.losses["autoencoder"] / (x.mean() < 10).float() * float("inf")
        return step

    monkeypatch.setattr(Baseline, "training_step", poisoned)
    with pytest.raises(UserError, match="baseline: loss 'autoencoder' became inf at step 0"):
        packed(tmp_path, [tiny_spec("baseline", seed=s) for s in (0, 1)])
