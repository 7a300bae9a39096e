"""Values a declared :class:`repeval.ranges.Range` must refuse (the contract tests of families
and probes feed each one to the command line's checks)."""

from __future__ import annotations

from repeval.ranges import Range


def out_of_range(range_: Range) -> list:
    """Beyond each bound, the open bounds themselves, the wrong kind, and (for numbers) NaN and
    infinity."""
    if range_.choices:
        return ["no-such-choice", 1.5]
    if range_.kind == "bool":
        return ["maybe", 7]
    bad: list = ["not-a-number", float("nan"), float("inf"), True]
    for bound, is_open, step in ((range_.low, range_.low_open, -1), (range_.high, range_.high_open, 1)):
        if bound is not None:
            bad.append(bound + step * (1 if range_.kind == "int" else 0.5))
            if is_open:
                bad.append(bound)
    if range_.kind == "int":
        bad.append((range_.low or 0) + 1.5)
    return bad
