"""Declared ranges of probe settings and family hyper-parameters, checked where a value enters.

Every setting of a probe and every hyper-parameter of a family states the values it accepts
next to its default, once:

- a probe's settings dataclass declares each field with :func:`setting`::

      restarts: int = setting(1000, Int(low=1), "independent k-means runs; the lowest inertia is kept")

- a family (or a regulariser) lists its hyper-parameters' ranges beside ``hparams``::

      hparams = {"keep_prob": 0.5}
      hparam_ranges = {"keep_prob": PROBABILITY}

A :class:`Range` converts a value typed on the command line (``--set kmeans.restarts=20``,
``--hparam keep_prob=0.75``: text, or JSON already parsed) to its kind and checks it:
integers, finite real numbers with optional (open or closed) bounds, flags, or one of a
few choices. :func:`repeval.specs.make_spec` and :func:`repeval.probes.resolve_settings`
check every value the user gives, once, and a value out of range is a
:class:`~repeval.errors.UserError` naming the input, the value, the allowed range and a
fix. A setting or hyper-parameter without a declaration (an old plugin) gets the range its
default's type implies (:func:`implied`), so a float is still finite and an integer whole;
the contract tests require a declaration for every built-in and registered one.

This module is a leaf (no torch, no registry), so the light commands can read declarations.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from repeval.errors import UserError

RANGE = "repeval.range"  # the dataclass field metadata key of a setting's Range


@dataclass(frozen=True)
class Range:
    """The values one setting or hyper-parameter accepts.

    ``kind``: ``"int"``, ``"float"`` (always finite), ``"bool"`` or ``"str"``. ``low`` and
    ``high`` bound numbers (``None``: unbounded), excluded when ``low_open``/``high_open``.
    ``choices``: the allowed values (strings, or numbers).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    pattern: str = ""  # a text value must match this regular expression in full ...
    form: str = ""  # ... described in words, for messages: "comma-separated whole numbers"
    meaning: str = ""  # what the value is, for messages: "the probability of keeping a latent unit"

    def means(self, meaning: str) -> "Range":
        """This range with ``meaning`` attached (``PROBABILITY.means("keep probability")``)."""
        return dataclasses.replace(self, meaning=meaning)

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "bool", "str"):
            raise ValueError(f"Range kind must be int, float, bool or str, got {self.kind!r}")

    # ----------------------------------------------------------------- text
    def describe(self) -> str:
        """What the range allows, as a phrase: ``a number in (0, 1]``, ``an integer >= 1``."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return self.form or (f"text matching {self.pattern}" if self.pattern else "a text value")
        noun = "an integer" if self.kind == "int" else "a finite number"
        if self.low is not None and self.high is not None:
            return (f"{noun} in {'(' if self.low_open else '['}{_num(self.low)}, "
                    f"{_num(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {_num(self.high)}"
        return noun

    def example(self, default: Any) -> Any:
        """A valid value to suggest in a message: the default when it fits, else a bound."""
        try:
            return self.convert(default)
        except ValueError:
            pass
        if self.choices:
            return self.choices[0]
        for bound, is_open in ((self.low, self.low_open), (self.high, self.high_open)):
            if bound is not None and not is_open:
                return int(bound) if self.kind == "int" else bound
        return default

    # ----------------------------------------------------------------- checking
    def convert(self, value: Any) -> Any:
        """``value`` as this range's kind; ValueError (with the reason) when it does not fit."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.strip().lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError("not true or false")
        if self.kind == "str":
            if not isinstance(value, str):
                raise ValueError("not a text value")
            if self.choices and value not in self.choices:
                raise ValueError("not one of the choices")
            if self.pattern and not re.fullmatch(self.pattern, value.strip()):
                raise ValueError("not of the form")
            return value
        number = _number(value, self.kind)
        if self.choices and number not in self.choices:
            raise ValueError("not one of the choices")
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise ValueError("below the range")
        if self.high is not None and (number > self.high or (self.high_open and number == self.high)):
            raise ValueError("above the range")
        return number

    def check(self, value: Any, *, input: str, owner: str = "", default: Any = None) -> Any:
        """``value`` converted, or a :class:`UserError` that names ``input`` (e.g. ``--set
        kmeans.restarts``) and its ``owner`` (the family), the value, the allowed range and a fix."""
        try:
            return self.convert(value)
        except ValueError:
            raise UserError(self.message(value, input=input, owner=owner, default=default)) from None

    def message(self, value: Any, *, input: str, owner: str = "", default: Any = None) -> str:
        what = f" ({self.meaning})" if self.meaning else ""
        of = f" for {owner}" if owner else ""
        name = input.split()[-1].rpartition(".")[2]
        return (f"{input}={_shown(value)}{of} is not allowed: {name} must be {self.describe()}{what}. "
                f"Give e.g. {input}={_shown(self.example(default))}.")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else repr(value)


def _number(value: Any, kind: str) -> int | float:
    if isinstance(value, bool):
        raise ValueError("a flag, not a number")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = int(text) if kind == "int" and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise ValueError("not a number") from None
    if not isinstance(value, (int, float)):
        raise ValueError("not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not finite")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError("not a whole number")
            value = int(value)
        return value
    return float(value)


# ----------------------------------------------------------------------------- the usual ranges
def Int(low: int | None = None, high: int | None = None) -> Range:  # noqa: N802 - reads as a type
    """An integer in [low, high] (either bound optional)."""
    return Range("int", low, high)


def Float(low: float | None = None, high: float | None = None, *, low_open: bool = False,  # noqa: N802
          high_open: bool = False) -> Range:
    """A finite real number between the bounds (each optional, closed unless ``*_open``)."""
    return Range("float", low, high, low_open, high_open)


def Text(pattern: str = "", form: str = "") -> Range:  # noqa: N802
    """A text value; with ``pattern``, one that matches it in full (``form`` says how in words)."""
    return Range("str", pattern=pattern, form=form)


def Choice(*values: Any) -> Range:  # noqa: N802
    """One of ``values`` (all strings, or all numbers)."""
    kind = "str" if all(isinstance(v, str) for v in values) else "float" if any(
        isinstance(v, float) for v in values) else "int"
    return Range(kind, choices=tuple(values))


FLAG = Range("bool")
PROBABILITY = Float(0, 1, low_open=True)  # (0, 1]
POSITIVE = Float(0, low_open=True)  # > 0, finite
NON_NEGATIVE = Float(0)  # >= 0, finite
POSITIVE_INT = Int(1)
NON_NEGATIVE_INT = Int(0)
FINITE = Float()


def implied(default: Any) -> Range:
    """The range a value of ``default``'s type implies where none is declared."""
    if isinstance(default, bool):
        return FLAG
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return FINITE
    return Range("str")


# ----------------------------------------------------------------------------- probe settings
def setting(default: Any, range_: Range, meaning: str = "") -> Any:
    """A settings-dataclass field with its default and declared :class:`Range` (``meaning``
    says what the value is, in messages)."""
    return dataclasses.field(default=default, metadata={RANGE: range_.means(meaning) if meaning else range_})


def declared_setting_ranges(settings_cls: type) -> dict[str, Range | None]:
    """Field name → its declared :class:`Range` (None where a field declares none)."""
    return {f.name: f.metadata.get(RANGE) for f in dataclasses.fields(settings_cls)}


def check_setting(settings_cls: type, name: str, value: Any, input: str) -> Any:
    """One override of a setting of ``settings_cls``, converted and range-checked."""
    f = next(f for f in dataclasses.fields(settings_cls) if f.name == name)
    default = f.default if f.default is not dataclasses.MISSING else None
    range_ = f.metadata.get(RANGE) or implied(default)
    return range_.check(value, input=input, default=default)


def validate_settings(settings: Any, what: str) -> None:
    """Check every declared field of a settings instance (its ``__post_init__`` calls this);
    a :class:`UserError` naming ``what`` (the task) and the field otherwise."""
    for f in dataclasses.fields(settings):
        range_ = f.metadata.get(RANGE)
        if range_ is None:
            continue
        value = getattr(settings, f.name)
        try:
            range_.convert(value)
            fits = not isinstance(value, str) or range_.kind == "str"  # text is converted before, not here
            fits = fits and (range_.kind != "int" or (isinstance(value, int) and not isinstance(value, bool)))
        except ValueError:
            fits = False
        if not fits:
            raise UserError(range_.message(value, input=f"--set {what}.{f.name}", default=f.default))


# ----------------------------------------------------------------------------- hyper-parameters
def check_hparam(family: Any, name: str, value: Any) -> Any:
    """One ``--hparam NAME=VALUE`` of ``family`` (a family class, or composed), converted and checked."""
    default = family.hparams.get(name)
    range_ = (getattr(family, "hparam_ranges", None) or {}).get(name) or implied(default)
    return range_.check(value, input=f"--hparam {name}", owner=getattr(family, "name", ""), default=default)
