"""Text formatting of the report's numbers: fixed decimals, signs, mean ± std, budgets, ids."""

from __future__ import annotations

import math

from repeval.devices import PAPER_BUDGET

MINUS = "\u2212"


def fmt_number(value: float, decimals: int) -> str:
    """Fixed decimals with a typographic minus (never ``−0.00``); NaN as ``NaN``."""
    if math.isnan(value):
        return "NaN"
    text = f"{value:.{decimals}f}"
    if text.startswith("-"):
        text = text[1:] if float(text) == 0 else MINUS + text[1:]
    return text


def fmt_signed(value: float, decimals: int) -> str:
    """A difference, always signed: ``+1.20``, ``−0.35``, ``+0.00``."""
    if math.isnan(value):
        return "NaN"
    text = f"{abs(value):.{decimals}f}"
    return ("+" if value >= 0 or float(text) == 0 else MINUS) + text


def fmt_mean_std(mean: float, std: float | None, n: int, decimals: int) -> str:
    """``mean ± std``; a single value (n = 1, or no std) alone."""
    if std is None or n < 2 or math.isnan(mean):
        return fmt_number(mean, decimals)
    return f"{fmt_number(mean, decimals)} ± {fmt_number(std, decimals)}"


def fmt_interval(low: float, high: float, decimals: int) -> str:
    """A 95 % interval ``[low, high]`` (typographic minus)."""
    return f"[{fmt_number(low, decimals)}, {fmt_number(high, decimals)}]"


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def fmt_budget(budget: int) -> str:
    """Training images: ``16,384 (2¹⁴)``; ``fitted`` for reference encoders (budget 0)."""
    if budget == 0:
        return "fitted"
    power = budget.bit_length() - 1
    exact = f" (2{str(power).translate(_SUPERSCRIPT)})" if budget == 1 << power else ""
    return f"{budget:,}{exact}"


def fmt_budget_share(budget: int) -> str:
    """A budget relative to the paper's 2^24 images, e.g. ``1/1,024 of the paper's``."""
    if budget >= PAPER_BUDGET:
        return "the paper's budget" if budget == PAPER_BUDGET else f"{budget / PAPER_BUDGET:.1f}× the paper's"
    ratio = PAPER_BUDGET / budget
    return f"1/{ratio:,.0f} of the paper's" if ratio == int(ratio) else f"{budget / PAPER_BUDGET:.2%} of the paper's"


def anchor(*parts: object) -> str:
    """An HTML id made of safe characters only."""
    text = "-".join(str(p) for p in parts)
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower() or "x"
