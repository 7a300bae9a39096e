"""Where a run's data came from, as the report flags it beside every score made from it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataStatus:
    """Where a run's data came from and whether it was checked against official checksums.

    ``level``: ``unverified`` (the data's checksums differ from the official ones, e.g. a
    rebuilt CIFAR-10 accepted with ``--allow-unverified``), ``unknown`` (the run recorded
    no data origin), or ``recorded`` (the recorded check, e.g. "md5 checked by torchvision",
    "generated", "user-supplied file").
    """

    level: str
    text: str
    fingerprint: str
    source: str

    @property
    def flagged(self) -> bool:
        return self.level != "recorded"


def data_status(provenance: dict[str, Any]) -> DataStatus:
    """Read ``provenance["data"]`` (see :func:`repeval.provenance.collect`)."""
    data = provenance.get("data")
    if not isinstance(data, dict):
        return DataStatus("unknown", "data origin not recorded", "", "")
    verified = str(data.get("verified", ""))
    if not verified:
        level = "unknown"
    elif verified.upper().startswith("NO"):
        level = "unverified"
    else:
        level = "recorded"
    return DataStatus(level, verified or "not recorded", str(data.get("fingerprint", "")),
                      str(data.get("source", "")))


def unique_flags(statuses: Iterable[DataStatus]) -> list[DataStatus]:
    """The flagged statuses, without repeats, in first-seen order."""
    seen: dict[tuple[str, str], DataStatus] = {}
    for s in statuses:
        if s.flagged:
            seen.setdefault((s.level, s.text), s)
    return list(seen.values())
