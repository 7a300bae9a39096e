"""Sweep grids: groups of axes whose Cartesian products are the sweep's cells.

A grid is a list of :class:`Group`. A group maps each axis (``encoder``, ``dataset``,
``latent_dim``, ``seed``, ``budget``, ``latent``) to its values, lists the ``task``\\ s every
cell runs, and maps hyper-parameters (``hparam``) and probe settings (``set``) to their
values; every key with several values is one more axis. Groups come from the command line
(the same repeatable options as ``repeval run``), from a TOML file (``--grid``: the top-level
keys are one group, each ``[[cell]]`` another that inherits the top-level keys it does not
set), or from a preset (:mod:`repeval.sweep.presets`). Options given on the command line
next to a file or preset replace those keys in every group.

A TOML grid::

    encoder = ["acai", "vae"]          # a value or a list of values
    dataset = "mnist"
    latent_dim = [32, 256]
    seed = [0, 1, 2]
    budget = 65536
    task = ["linear", "kmeans"]        # what every cell runs (not an axis)

    [hparam]                           # one axis per key with a list
    keep_prob = [0.5, 0.75]
    [set]                              # probe settings, TASK.KEY
    kmeans.restarts = 20

    [[cell]]                           # an extra group; unset keys come from the top level
    encoder = "acai"
    dataset = "lines"
    task = ["interpolation"]

``latent_dim``, ``budget`` and ``latent`` also take ``"default"``: each family's latent size
for the dataset, the device's budget, the family's latent. The top-level keys form a group of
their own only when they name an ``encoder``; otherwise they are defaults for the cells.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from repeval.errors import UserError

# axis -> type of its values; None values mean "the default" (latent size, budget, latent)
AXES: dict[str, type] = {"encoder": str, "dataset": str, "latent_dim": int, "seed": int, "budget": int,
                         "latent": str}
LISTS = {"task": str}
TABLES = ("hparam", "set")
KEYS = (*AXES, *LISTS, *TABLES)
DEFAULTS: dict[str, list[Any]] = {"dataset": ["mnist"], "latent_dim": [None], "seed": [0], "budget": [None],
                                  "latent": [None]}
SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Cell:
    """One point of a grid: what one ``repeval run`` invocation is asked for."""

    encoder: str
    dataset: str
    latent_dim: int | None
    seed: int
    budget: int | None
    latent: str | None
    tasks: tuple[str, ...]
    hparams: tuple[tuple[str, Any], ...] = ()
    settings: tuple[tuple[str, Any], ...] = ()  # ("task.key", value)
    origin: str = ""


@dataclass
class Group:
    """Axes, tasks, hyper-parameter and setting axes of one part of a grid."""

    axes: dict[str, list[Any]] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)
    hparams: dict[str, list[Any]] = field(default_factory=dict)
    settings: dict[str, list[Any]] = field(default_factory=dict)
    origin: str = "the command line"

    def override(self, other: "Group") -> "Group":
        """This group with every key that ``other`` sets replaced by ``other``'s values."""
        return replace(self, axes={**self.axes, **other.axes}, tasks=other.tasks or self.tasks,
                       hparams={**self.hparams, **other.hparams}, settings={**self.settings, **other.settings})

    def is_empty(self) -> bool:
        return not (self.axes or self.tasks or self.hparams or self.settings)

    def cells(self) -> list[Cell]:
        """The Cartesian product, in the order the values were given."""
        if not self.axes.get("encoder"):
            raise UserError(f"The grid part from {self.origin} names no encoder. Give --encoder NAME (or "
                            "`encoder = [...]` in the grid file), e.g. --encoder acai or --encoder all-learned.")
        if not self.tasks:
            raise UserError(f"The grid part from {self.origin} names no task. Give --task NAME (or "
                            "`task = [...]` in the grid file), e.g. --task linear or --task all.")
        axes = {k: self.axes.get(k) or DEFAULTS.get(k) for k in AXES}
        names = list(axes)
        hp_names, set_names = list(self.hparams), list(self.settings)
        out = []
        for values in itertools.product(*axes.values(), *self.hparams.values(), *self.settings.values()):
            point = dict(zip(names, values[:len(names)]))
            hp = values[len(names):len(names) + len(hp_names)]
            st = values[len(names) + len(hp_names):]
            out.append(Cell(tasks=tuple(self.tasks), hparams=tuple(zip(hp_names, hp)),
                            settings=tuple(zip(set_names, st)), origin=self.origin, **point))
        return out


def cells(groups: list[Group]) -> list[Cell]:
    """Every cell of every group; an empty grid is a :class:`UserError`."""
    out = [c for g in groups for c in g.cells()]
    if not out:
        raise UserError("The sweep is empty: no group of the grid has a cell. Name at least one --encoder and "
                        "--task (or give --grid FILE or --preset NAME).")
    return out


# --------------------------------------------------------------------------- parsing
def _values(key: str, raw: Any, kind: type, where: str) -> list[Any]:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise UserError(f"{where}: `{key}` is an empty list. Give at least one value, or leave the key out.")
    if key in DEFAULTS and DEFAULTS[key] == [None]:  # "default": the family's (latent size, latent) or device's
        values = [None if v == "default" else v for v in values]
    for v in values:
        ok = v is None and key in DEFAULTS or isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if not ok:
            what = "an integer" if kind is int else "a string"
            if key in DEFAULTS and DEFAULTS[key] == [None]:
                what += ' (or "default")'
            example = "[32, 256]" if kind is int else '["acai", "vae"]'
            raise UserError(f"{where}: `{key}` must be {what} or a list of them; {v!r} is a {type(v).__name__}. "
                            f"E.g. {key} = {example}.")
    return list(values)


def _table_values(table: str, key: str, raw: Any, where: str) -> list[Any]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, SCALARS) for v in values):
        raise UserError(f"{where}: `{table}.{key}` must be a number, string or boolean, or a non-empty list of "
                        f"them; got {raw!r}.")
    return list(values)


def group_from_mapping(data: dict[str, Any], where: str) -> Group:
    """A :class:`Group` from one table of a grid file (top level or one ``[[cell]]``)."""
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}. A grid knows "
                        f"{', '.join(KEYS)} (and [[cell]] at the top level); see `repeval sweep --help`.")
    g = Group(origin=where)
    for key, kind in AXES.items():
        if key in data:
            g.axes[key] = _values(key, data[key], kind, where)
    if "task" in data:
        g.tasks = _values("task", data["task"], str, where)
    for table in TABLES:
        if table not in data:
            continue
        raw = data[table]
        if not isinstance(raw, dict):
            raise UserError(f"{where}: `{table}` must be a table, e.g. [{table}] then "
                            f"{'keep_prob = [0.5, 0.75]' if table == 'hparam' else 'kmeans.restarts = 20'}.")
        target = g.hparams if table == "hparam" else g.settings
        for key, value in raw.items():
            if table == "set" and isinstance(value, dict):  # TOML's dotted keys: kmeans.restarts = 20
                for sub, v in value.items():
                    target[f"{key}.{sub}"] = _table_values(table, f"{key}.{sub}", v, where)
            else:
                target[key] = _table_values(table, key, value, where)
    return g


def load_grid_file(path: Path) -> list[Group]:
    """The groups of a TOML grid file; a bad file is a :class:`UserError` naming what is wrong."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--grid {path}: no such file. Give the path of a TOML grid file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--grid {path} cannot be read ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--grid {path} is not valid TOML: {exc}. Fix the file (see `repeval sweep --help` "
                        "for the grid format).") from None
    raw_cells = data.pop("cell", [])
    if not isinstance(raw_cells, list) or not all(isinstance(c, dict) for c in raw_cells):
        raise UserError(f"--grid {path}: `cell` must be an array of tables ([[cell]] blocks).")
    top = group_from_mapping(data, f"--grid {path}")
    groups = [top] if top.axes.get("encoder") else []
    for i, raw in enumerate(raw_cells, 1):
        if "cell" in raw:
            raise UserError(f"--grid {path} [[cell]] {i}: cells do not nest; write each [[cell]] at the top level.")
        groups.append(top.override(group_from_mapping(raw, f"--grid {path} [[cell]] {i}")))
        groups[-1].origin = f"--grid {path} [[cell]] {i}"
    if not groups:
        raise UserError(f"--grid {path} is empty: it names no encoder at the top level and has no [[cell]]. "
                        "Add `encoder = [...]` and `task = [...]`, or [[cell]] blocks.")
    return groups
