"""Snapshots: the state of a run after n images is the final state of the n-image run.

Nothing in a step depends on the budget (history points and online evaluations follow the
position alone), so a snapshot must equal, bit for bit, the independently trained shorter
run: weights, optimiser and RNG states, and the whole history."""

from __future__ import annotations

import json

import pytest
import torch

import encoders
from repeval import checkpoint as ckpt
from repeval.errors import UserError
from repeval.train import Trainer, log_due, snapshot_points
from tests.test_train import tiny_dataset, tiny_spec

LEARNED = [name for name, family in encoders.REGISTRY.items() if family.learned]


def states_equal(a: dict, b: dict, where: str = "") -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            states_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            states_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def run(tmp_path, spec, **kwargs):
    return Trainer(spec, tiny_dataset(), "cpu", tmp_path, progress=False, log=lambda m: None, **kwargs).run()


@pytest.mark.slow
@pytest.mark.parametrize("encoder", LEARNED)
def test_a_snapshot_equals_the_shorter_run_trained_alone(tmp_path, encoder):
    long = tiny_spec(encoder, budget=640)  # online evaluations every 128 images (and at the end)
    run(tmp_path / "long", long, snapshots=[192, 256])  # 192: off the evaluation schedule
    for images in (192, 256):
        short = tiny_spec(encoder, budget=images)
        snapshot = ckpt.Checkpoint(ckpt.run_dir(tmp_path / "long", short))
        alone = run(tmp_path / f"alone-{images}", short)
        assert snapshot.is_complete() and snapshot.spec == short
        states_equal(snapshot.load_state(), alone.load_state())
        assert snapshot.history == alone.history
        assert snapshot.provenance["snapshot_of"] == long.run_id
        assert snapshot.provenance["snapshot_at_images"] == images
    assert ckpt.Checkpoint(ckpt.run_dir(tmp_path / "long", long)).history["online_images"] == [128, 256, 384, 512,
                                                                                               640]


def test_powers_of_two_from_4096_images_are_snapshots_by_default():
    spec = tiny_spec(budget=40_000)
    assert snapshot_points(spec) == [4096, 8192, 16384, 32768]
    assert snapshot_points(spec, [640]) == [640, 4096, 8192, 16384, 32768]
    assert snapshot_points(tiny_spec(budget=4096)) == []  # the run itself is not its own snapshot


@pytest.mark.parametrize("bad", [0, -64, 100, 40_000, 50_000])
def test_snapshot_points_must_be_batches_below_the_budget(bad):
    with pytest.raises(UserError, match=f"--snapshots {bad}: a snapshot must be a positive multiple of the batch"):
        snapshot_points(tiny_spec(budget=40_000), [bad])


def test_history_points_depend_on_the_step_alone():
    due = [s for s in range(1, 2049) if log_due(s)]
    assert due[:32] == list(range(1, 33))  # every step at first
    assert [s for s in due if 256 <= s < 512] == list(range(256, 512, 16))  # 16 per doubling
    assert all(b - a <= 256 for a, b in zip(due, due[1:]))


@pytest.mark.slow
def test_an_interrupted_run_keeps_its_finished_snapshots_and_resumes_into_the_same_run(tmp_path):
    long = tiny_spec("acai", budget=640)
    trainer = Trainer(long, tiny_dataset(), "cpu", tmp_path, progress=False, log=lambda m: None,
                      snapshots=[192])
    part = trainer.run(max_steps=5)  # stopped after 320 images, past the snapshot at 192
    assert not part.is_complete() and part.load_state()["step"] == 5
    snapshot = ckpt.Checkpoint(ckpt.run_dir(tmp_path, tiny_spec("acai", budget=192)))
    kept = snapshot.load_state()
    whole = run(tmp_path / "whole", long)
    resumed = run(tmp_path, long, snapshots=[192])
    states_equal(resumed.load_state(), whole.load_state())
    assert resumed.history == whole.history
    states_equal(ckpt.Checkpoint(snapshot.path).load_state(), kept)  # not rewritten


@pytest.mark.slow
def test_resuming_between_two_history_points_loses_no_loss_value(tmp_path):
    spec = tiny_spec(budget=64 * 48)  # from step 32 on, a history point every second step
    whole = run(tmp_path / "whole", spec)
    part = Trainer(spec, tiny_dataset(), "cpu", tmp_path / "part", progress=False).run(max_steps=33)
    assert len(part.load_state()["pending_losses"]) == 1  # step 33's losses wait for the point at 34
    resumed = run(tmp_path / "part", spec)
    assert resumed.history == whole.history
    states_equal(resumed.load_state(), whole.load_state())


@pytest.mark.slow
def test_a_damaged_snapshot_is_set_aside_and_retrained_never_read(tmp_path):
    run(tmp_path, tiny_spec(budget=320), snapshots=[192])
    short = tiny_spec(budget=192)
    path = ckpt.run_dir(tmp_path, short)
    good = ckpt.Checkpoint(path).load_state()
    state_file = path / json.loads((path / "checkpoint.json").read_text())["state"]
    state_file.write_bytes(state_file.read_bytes()[:-100])  # truncated
    with pytest.raises(UserError, match="does not match the sha256"):
        ckpt.Checkpoint(path).load_model()
    lines = []
    again = Trainer(short, tiny_dataset(), "cpu", tmp_path, progress=False, log=lines.append).run()
    assert len(lines) == 1 and lines[0].startswith(f"warning: the snapshot {short.run_id} is damaged")
    states_equal(again.load_state(), good)
    assert "snapshot_of" not in again.provenance  # trained alone this time
    assert len(list((tmp_path / "checkpoints").glob(f"{short.run_id}.damaged-*"))) == 1


@pytest.mark.slow
def test_a_damaged_run_that_is_not_a_snapshot_is_an_error_naming_the_fix(tmp_path):
    spec = tiny_spec(budget=192)
    checkpoint = run(tmp_path, spec)
    (checkpoint.path / "spec.json").write_text(json.dumps({**spec.to_dict(), "seed": 7}))
    with pytest.raises(UserError, match="describes run .* which is not this directory's .* delete it to train"):
        run(tmp_path, spec)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["acai", "vae", "vqvae"])  # random draws; buffers (the VQ-VAE codebook)
def test_a_longer_run_continues_from_the_finished_shorter_one_exactly(tmp_path, encoder):
    spec, short = tiny_spec(encoder, budget=1024 + 256), tiny_spec(encoder, budget=1024)
    scratch = run(tmp_path / "scratch", spec, snapshots=None)
    run(tmp_path / "work", short)
    lines = []
    continued = Trainer(spec, tiny_dataset(), "cpu", tmp_path / "work", progress=False, log=lines.append).run()
    assert lines == [f"{spec.run_id}: continuing from the finished run {short.run_id} (1,024 images)"]
    states_equal(continued.load_state(), scratch.load_state())
    assert continued.history == scratch.history
    assert continued.provenance["continued_from"] == {"run_id": short.run_id, "images": 1024}


def test_no_shorter_run_below_1024_images_or_off_the_schedule(tmp_path):
    run(tmp_path, tiny_spec(budget=512))  # 512 < 2^10: its final evaluation is not on the schedule
    trainer = Trainer(tiny_spec(budget=768), tiny_dataset(), "cpu", tmp_path, progress=False)
    assert trainer._shorter_run() is None
