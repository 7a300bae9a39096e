"""Checkpoints: one directory per run, committed in one atomic step, loadable without running code.

``<workdir>/checkpoints/<run_id>/`` holds

- ``spec.json`` — the :class:`~repeval.specs.RunSpec`; written once (the directory's name is
  its digest, so it never changes);
- ``state.<token>.pt`` — weights, optimiser states, RNG states, step; a dict of tensors and
  plain values read back with ``torch.load(weights_only=True)``, which refuses to unpickle
  anything else;
- ``checkpoint.json`` — **the commit**: which state file is current and its sha256, the step,
  whether training is complete, the provenance (library versions, git revision, device, data
  fingerprint) and the loss history. A save writes a new state file first and then replaces
  ``checkpoint.json`` atomically (temporary file, ``fsync``, ``os.replace``), so a crash at
  any moment leaves either the previous checkpoint or the new one, complete and consistent;
  readers go through ``checkpoint.json`` only and check the state file's sha256;
- ``provenance.json``, ``history.json`` — readable copies of those two parts for people and
  other tools, refreshed after each commit (repeval itself reads ``checkpoint.json``).

A run directory written before ``checkpoint.json`` existed (``state.pt`` with everything
inside) is still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.paths import atomic_write_bytes, atomic_write_text, file_digest
from repeval.specs import RunSpec

STATE_FORMAT = 1
MANIFEST = "checkpoint.json"
MANIFEST_FORMAT = 2
LEGACY_STATE = "state.pt"


def run_dir(workdir: Path, spec: RunSpec) -> Path:
    return Path(workdir) / "checkpoints" / spec.run_id


class DamagedCheckpoint(UserError):
    """A run directory whose files do not form a valid checkpoint (truncated, edited, or
    not repeval's); the message names the file and the fix."""


@dataclass(frozen=True)
class Checkpoint:
    """A run directory on disk."""

    path: Path

    # ----------------------------------------------------------------- the commit
    @cached_property
    def manifest(self) -> dict[str, Any] | None:
        """The committed ``checkpoint.json`` (None when nothing was ever committed);
        :class:`DamagedCheckpoint` when it cannot be read or does not describe this run."""
        f = self.path / MANIFEST
        if not f.is_file():
            return None
        try:
            manifest = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._damaged(f, f"is not readable JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise self._damaged(f, f"is not a repeval checkpoint manifest (format {MANIFEST_FORMAT})")
        missing = [k for k in ("run_id", "state", "state_sha256", "step", "complete", "provenance", "history")
                   if k not in manifest]
        if missing:
            raise self._damaged(f, f"lacks {', '.join(missing)}")
        if manifest["run_id"] != self.path.name:
            raise self._damaged(f, f"belongs to run {manifest['run_id']!r}, not to {self.path.name!r}")
        return manifest

    def _damaged(self, what: Path, problem: str) -> DamagedCheckpoint:
        return DamagedCheckpoint(f"Checkpoint {what} {problem}. The run directory {self.path} cannot be used; "
                                 "delete it to train the run again.")

    def exists(self) -> bool:
        """Whether a checkpoint was committed here (possibly damaged: reading tells)."""
        return (self.path / MANIFEST).is_file() or (self.path / LEGACY_STATE).is_file()

    # ----------------------------------------------------------------- parts
    @property
    def spec(self) -> RunSpec:
        f = self.path / "spec.json"
        try:
            spec = RunSpec.from_dict(json.loads(f.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise self._damaged(f, "is missing") from None
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise self._damaged(f, f"is not a readable run spec ({exc})") from None
        if spec.run_id != self.path.name:
            raise self._damaged(f, f"describes run {spec.run_id!r}, which is not this directory's "
                                   f"{self.path.name!r} (edited?)")
        return spec

    @property
    def provenance(self) -> dict[str, Any]:
        return self._part("provenance")

    @property
    def history(self) -> dict[str, Any]:
        return self._part("history")

    def _part(self, name: str) -> dict[str, Any]:
        if self.manifest is not None:
            return self.manifest[name]
        f = self.path / f"{name}.json"  # a run directory of the legacy layout
        return json.loads(f.read_text()) if f.is_file() else {}

    def is_complete(self) -> bool:
        if not self.exists():
            return False
        if self.manifest is not None:
            return bool(self.manifest["complete"])
        return bool(self.load_state().get("complete"))

    def load_state(self, device: str = "cpu") -> dict[str, Any]:
        """The state dict, after checking the state file against the committed sha256."""
        import pickle

        import torch

        manifest = self.manifest
        if manifest is not None:
            f = self.path / manifest["state"]
            if not f.is_file():
                raise self._damaged(f, "is missing")
            if file_digest(f) != manifest["state_sha256"]:
                raise self._damaged(f, f"does not match the sha256 committed in {MANIFEST} (truncated or edited)")
        else:
            f = self.path / LEGACY_STATE
        try:
            state = torch.load(f, map_location=device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise DamagedCheckpoint(f"Checkpoint {f} cannot be read safely ({str(exc).splitlines()[0][:300]}). "
                                    "Delete the run directory to retrain it.") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise DamagedCheckpoint(f"Checkpoint {f} has state format {found!r}; this repeval reads format "
                                    f"{STATE_FORMAT}. Retrain it or use a matching repeval.")
        if manifest is not None:
            state["history"] = manifest["history"]
        return state

    def verify(self) -> None:
        """Raise :class:`DamagedCheckpoint` unless spec, manifest and state agree."""
        self.spec  # noqa: B018 - reading validates
        self.load_state()

    def load_model(self, device: str = "cpu"):
        """The trained model, in eval mode, on ``device``."""
        from encoders import build_model
        from repeval.data.base import Example

        state = self.load_state(device)
        model = build_model(self.spec, Example.from_state(state))
        model.load_state_dict(state["model"])
        return model.to(device).eval()


def weights_digest(state_dict: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of a model's weights: keys latent caches to the exact model."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def save(path: Path, spec: RunSpec, state: dict[str, Any], provenance: dict[str, Any]) -> Checkpoint:
    """Commit a checkpoint; ``state`` must hold only tensors and plain values (its
    ``history`` goes to the manifest). See the module docstring for the order of writes."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if path.name != spec.run_id:
        raise ValueError(f"checkpoint directory {path} is not named after run {spec.run_id}")
    spec_file = path / "spec.json"
    if not spec_file.is_file():
        atomic_write_text(spec_file, json.dumps(spec.to_dict(), indent=1, sort_keys=True))
    history = state.get("history", {})
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, **{k: v for k, v in state.items() if k != "history"}}, buf)
    data = buf.getvalue()
    state_name = f"state.{secrets.token_hex(6)}.pt"
    atomic_write_bytes(path / state_name, data)
    manifest = {"format": MANIFEST_FORMAT, "run_id": spec.run_id, "state": state_name,
                "state_sha256": hashlib.sha256(data).hexdigest(), "step": int(state.get("step", 0)),
                "complete": bool(state.get("complete", False)), "provenance": provenance, "history": history}
    atomic_write_text(path / MANIFEST, json.dumps(manifest, sort_keys=True))  # the commit
    # after the commit: readable copies, and the state files no manifest names any more (the
    # previous one, or one a crashed save left before its commit)
    atomic_write_text(path / "provenance.json", json.dumps(provenance, indent=1, sort_keys=True))
    atomic_write_text(path / "history.json", json.dumps(history))
    for old in path.glob("state*.pt"):
        if old.name != state_name:
            old.unlink(missing_ok=True)
    return Checkpoint(path)
