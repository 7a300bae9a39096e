"""One atomic step commits a checkpoint: a crash before or after any single file operation of a
save (spec, state, manifest, the readable provenance and history copies, the removal of the old
state) leaves the previous checkpoint or the new one, whole and consistent, never a mix.

The crash is injected in this process at each operation in turn (and inside each write, after
part of the temporary file is on disk); the fault-injection suite (test_faults.py) kills real
processes at random moments around the same commits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from repeval import checkpoint as ckpt
from repeval.specs import RunSpec

SPEC = RunSpec(encoder="baseline", dataset="digits", latent_dim=256, depth=16, budget=128, seed=0)


class Crash(BaseException):
    """The process dies here (BaseException: nothing may catch it on the way out)."""


def state(step: int) -> dict:
    return {"model": {"w": torch.full((3,), float(step))}, "step": step, "complete": step == 2, "colors": 1,
            "history": {"step": list(range(1, step + 1)), "images": [64 * s for s in range(1, step + 1)]}}


def provenance(step: int) -> dict:
    return {"saved_at_step": step}


class Operations:
    """Counts the file operations of a save and crashes at the ``at``-th (``partial``: half
    of the temporary file written first, as a write cut short)."""

    def __init__(self, at: int | None, partial: bool = False):
        self.at, self.partial, self.count = at, partial, 0

    def step(self):
        self.count += 1
        if self.count == self.at:
            raise Crash

    def install(self, monkeypatch):
        real_bytes = ckpt.atomic_write_bytes
        real_unlink = Path.unlink

        def write_bytes(path, data):
            if self.count + 1 == self.at and self.partial:
                tmp = Path(path).with_name(f".{Path(path).name}.crash.tmp")
                tmp.write_bytes(data[: len(data) // 2])
            self.step()
            real_bytes(path, data)

        def write_text(path, text):
            write_bytes(path, text.encode("utf-8"))

        def unlink(path, missing_ok=False):
            self.step()
            real_unlink(path, missing_ok=missing_ok)

        monkeypatch.setattr(ckpt, "atomic_write_bytes", write_bytes)
        monkeypatch.setattr(ckpt, "atomic_write_text", write_text)
        monkeypatch.setattr(Path, "unlink", unlink)


def committed(path: Path) -> int:
    """The step of the checkpoint in ``path``, after checking that its parts agree."""
    found = ckpt.Checkpoint(path)
    found.verify()  # spec matches the directory, state matches the committed sha256
    loaded = found.load_state()
    step = int(loaded["step"])
    assert found.manifest["step"] == step and found.is_complete() == (step == 2)
    assert found.provenance == provenance(step)  # the manifest's provenance and history are the state's
    assert found.history == state(step)["history"] == loaded["history"]
    assert torch.equal(loaded["model"]["w"], torch.full((3,), float(step)))
    return step


def test_operations_of_a_save_are_counted(tmp_path, monkeypatch):
    first = tmp_path / "first" / SPEC.run_id
    ops = Operations(None)
    ops.install(monkeypatch)
    ckpt.save(first, SPEC, state(1), provenance(1))
    ckpt.save(first, SPEC, state(2), provenance(2))
    assert ops.count >= 8  # spec once; state, manifest, two copies and a removal per save


@pytest.mark.parametrize("partial", [False, True], ids=["between-operations", "inside-a-write"])
def test_a_crash_at_any_operation_of_a_save_leaves_one_whole_checkpoint(tmp_path, monkeypatch, partial):
    base = tmp_path / "base" / SPEC.run_id
    ckpt.save(base, SPEC, state(1), provenance(1))  # the checkpoint a crashed save must not spoil
    counting = Operations(None)
    with monkeypatch.context() as m:
        counting.install(m)
        ckpt.save(tmp_path / "count" / SPEC.run_id, SPEC, state(1), provenance(1))
        first_save = counting.count
        ckpt.save(tmp_path / "count" / SPEC.run_id, SPEC, state(2), provenance(2))
    operations = counting.count - first_save
    seen = set()
    for at in range(1, operations + 1):
        work = tmp_path / f"crash{at}" / SPEC.run_id
        shutil.copytree(base, work)
        with monkeypatch.context() as m:
            Operations(at, partial).install(m)
            with pytest.raises(Crash):
                ckpt.save(work, SPEC, state(2), provenance(2))
        step = committed(work)
        seen.add(step)
        # and the run goes on: the next save over the crashed one commits cleanly
        ckpt.save(work, SPEC, state(2), provenance(2))
        assert committed(work) == 2
        assert len(list(work.glob("state*.pt"))) == 1  # what a crash left behind is cleared
    assert seen == {1, 2}, "crashes before the commit keep the old checkpoint, after it the new"
