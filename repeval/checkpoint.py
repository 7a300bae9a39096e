"""Checkpoints: one directory per run, written atomically, loadable without executing code.

``<workdir>/checkpoints/<run_id>/`` holds

- ``spec.json`` — the :class:`~repeval.specs.RunSpec`;
- ``state.pt`` — weights, optimiser states, RNG states, step, loss history; a dict of
  tensors and plain values read back with ``torch.load(weights_only=True)``, which refuses
  to unpickle anything else;
- ``provenance.json`` — library versions, git revision, device, data fingerprint;
- ``history.json`` — the loss and online-accuracy history (a readable copy for reports).

Every file is replaced atomically (write to a temporary name, ``fsync``, ``os.replace``),
so a crash leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.paths import atomic_write_bytes, atomic_write_text
from repeval.specs import RunSpec

STATE_FORMAT = 1


def run_dir(workdir: Path, spec: RunSpec) -> Path:
    return Path(workdir) / "checkpoints" / spec.run_id


@dataclass(frozen=True)
class Checkpoint:
    """A run directory on disk."""

    path: Path

    @property
    def spec(self) -> RunSpec:
        return RunSpec.from_dict(json.loads((self.path / "spec.json").read_text()))

    @property
    def provenance(self) -> dict[str, Any]:
        f = self.path / "provenance.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    @property
    def history(self) -> dict[str, Any]:
        f = self.path / "history.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    def exists(self) -> bool:
        return (self.path / "state.pt").is_file()

    def load_state(self, device: str = "cpu") -> dict[str, Any]:
        import pickle

        import torch

        try:
            state = torch.load(self.path / "state.pt", map_location=device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise UserError(f"Checkpoint {self.path / 'state.pt'} cannot be read safely ({exc}). "
                            "Delete the run directory to retrain it.") from None
        if state.get("format") != STATE_FORMAT:
            raise UserError(f"Checkpoint {self.path} has state format {state.get('format')!r}; this "
                            f"repeval reads format {STATE_FORMAT}. Retrain it or use a matching repeval.")
        return state

    def is_complete(self) -> bool:
        return self.exists() and bool(self.load_state().get("complete"))

    def load_model(self, device: str = "cpu"):
        """The trained model, in eval mode, on ``device``."""
        from encoders import build_model

        state = self.load_state(device)
        model = build_model(self.spec, int(state["colors"]))
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
    """Write a checkpoint atomically; ``state`` must hold only tensors and plain values."""
    import torch

    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "spec.json", json.dumps(spec.to_dict(), indent=1, sort_keys=True))
    atomic_write_text(path / "provenance.json", json.dumps(provenance, indent=1, sort_keys=True))
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, **state}, buf)
    atomic_write_bytes(path / "state.pt", buf.getvalue())
    atomic_write_text(path / "history.json", json.dumps(state.get("history", {})))
    return Checkpoint(path)
