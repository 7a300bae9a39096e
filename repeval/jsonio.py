"""JSON as repeval writes it: canonical text (equal values, equal text) and strict JSON
without NaN. Used by the store, the check and the report alike."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def json_default(obj: Any) -> Any:
    """Encode numpy scalars and arrays (probes often return them) as plain JSON values."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: equal settings always give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
