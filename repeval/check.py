"""The CI regression gate: stored scores against a committed baseline, under tolerances.

Baseline file (JSON, written by :func:`write_baseline`, committed by users)::

    {"format": "repeval-baseline", "version": 1,
     "tolerances": {"<metric>": {"abs": 0.005, "rel": 0.0}, ...},
     "rows": [{"dataset": "mnist", "encoder": "acai", "latent": "map", "latent_dim": 32,
               "budget": 16384, "seed": 0, "task": "kmeans", "metric": "accuracy",
               "value": 0.9438, "settings": {...}, "tolerance": {"abs": 0.01}}, ...]}

A row is identified by (dataset, encoder, latent, latent_dim, budget, seed, task, metric).
``n`` and ``spread`` (optional, written by :func:`write_baseline`) describe the row's group
when the baseline was written: how many stored values the group had (training seeds ×
probe seeds, :func:`repeval.summary.group_key`) and their population standard deviation,
so a reviewer sees how the tolerance compares with the score's own noise. They are shown in
the check's table and never change a verdict.
``settings`` (optional) narrows the match to the stored score with exactly those probe
settings, for stores that hold the same probe under several settings (e.g. a kNN sweep
over k); :func:`write_baseline` always writes it. ``value`` may be ``null`` for NaN.

Allowed deviation = max(abs, rel·|baseline value|), from the row's ``tolerance``, else the
file's ``tolerances`` (keyed ``"task.metric"`` or, for every task's metric of that name,
``"metric"``), else the default its probe declares (:class:`repeval.probes.Metric`;
missing ``abs``/``rel`` count as 0). A deviation equal to the allowed one passes (up to
float rounding). The built-in probes declare tight defaults, because the CI suite is
deterministic on a CPU: 0.005 on accuracies, NMI and ARI; 5 % relative on mean distance;
0.01 on smoothness. A stored metric that no registered probe declares is compared exactly.

Directions come from the same declarations (higher is better for accuracies, NMI, ARI;
lower for mean distance and smoothness); a metric declared without a direction, or not
declared, is compared two-sided (every change beyond tolerance is a regression). NaN equals
NaN; NaN against a number, in either direction, is a regression.

Statuses: ``regression`` (fails), ``missing`` (in the baseline, not in the store: fails),
``improvement`` (beyond tolerance in the good direction: passes, and suggests refreshing
the baseline), ``unchanged``, ``extra`` (in the store, not in the baseline: reported only).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from repeval.errors import UserError
from repeval.jsonio import canonical_json, json_safe
from repeval.paths import atomic_write_text
from repeval.probes.base import Tolerance
from repeval.probes.registry import metric_facts
from repeval.results import aligned_table

FORMAT = "repeval-baseline"
VERSION = 1


class RowKey(NamedTuple):
    """What a baseline row measures (settings aside)."""

    dataset: str
    encoder: str
    latent: str
    latent_dim: int
    budget: int
    seed: int
    task: str
    metric: str


INT_KEYS = ("latent_dim", "budget", "seed")


EXACT = Tolerance()


def default_tolerance(task: str, metric: str) -> Tolerance:
    """The tolerance the probe declares for ``task``'s ``metric`` (exact when undeclared)."""
    facts = metric_facts(task, metric)
    return facts.tolerance if facts is not None else EXACT


def _direction(task: str, metric: str) -> int | None:
    """+1 when higher is better, −1 when lower is, None when two-sided."""
    facts = metric_facts(task, metric)
    return {"higher": 1, "lower": -1}.get(facts.direction) if facts is not None else None


# Float rounding slack so that a deviation exactly at the tolerance passes.
ROUNDING = 1e-12


@dataclass(frozen=True)
class BaselineRow:
    key: RowKey
    value: float
    settings: dict[str, Any] | None = None
    tolerance: Tolerance | None = None
    n: int | None = None
    spread: float | None = None


@dataclass(frozen=True)
class Baseline:
    path: Path
    rows: list[BaselineRow]
    tolerances: dict[str, Tolerance] = field(default_factory=dict)

    def tolerance(self, row: BaselineRow) -> Tolerance:
        """The row's own tolerance, else the file's for the metric, else the built-in default."""
        if row.tolerance is not None:
            return row.tolerance
        task, metric = row.key.task, row.key.metric
        for key in (f"{task}.{metric}", metric):
            if key in self.tolerances:
                return self.tolerances[key]
        return default_tolerance(task, metric)


@dataclass(frozen=True)
class Comparison:
    """One line of the check: a baseline row and/or a stored score, and the verdict."""

    key: RowKey
    status: str  # regression | missing | improvement | unchanged | extra
    baseline: float | None = None
    current: float | None = None
    allowed: float | None = None
    n: int | None = None  # the baseline group's values and their spread (std), when recorded
    spread: float | None = None

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline


STATUS_ORDER = ("regression", "missing", "improvement", "extra", "unchanged")


@dataclass(frozen=True)
class CheckResult:
    """All comparisons, most serious first (:data:`STATUS_ORDER`, then by key)."""

    comparisons: list[Comparison]

    def _with(self, status: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.status == status]

    @property
    def regressions(self) -> list[Comparison]:
        return self._with("regression")

    @property
    def missing(self) -> list[Comparison]:
        return self._with("missing")

    @property
    def improvements(self) -> list[Comparison]:
        return self._with("improvement")

    @property
    def unchanged(self) -> list[Comparison]:
        return self._with("unchanged")

    @property
    def extra(self) -> list[Comparison]:
        return self._with("extra")

    @property
    def ok(self) -> bool:
        """True when nothing regressed and nothing in the baseline is missing."""
        return not self.regressions and not self.missing


def _fail(path: Path, message: str) -> UserError:
    return UserError(f"Baseline {path}: {message}. Fix the file, or write a fresh one with "
                     f"`repeval check --write-baseline {path}`.")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_tolerance(path: Path, where: str, raw: Any) -> Tolerance:
    if not isinstance(raw, dict) or not raw or set(raw) - {"abs", "rel"}:
        raise _fail(path, f"{where} must be an object with keys 'abs' and/or 'rel', got {json.dumps(raw)}")
    for name, value in raw.items():
        if not _number(value) or not math.isfinite(value) or value < 0:
            raise _fail(path, f"{where}.{name} must be a non-negative number, got {json.dumps(value)}")
    return Tolerance(abs=float(raw.get("abs", 0.0)), rel=float(raw.get("rel", 0.0)))


def _parse_row(path: Path, index: int, raw: Any) -> BaselineRow:
    where = f"rows[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where} must be an object, got {json.dumps(raw)}")
    for name in (*RowKey._fields, "value"):
        if name not in raw:
            raise _fail(path, f"{where} lacks the key {name!r}")
    for name in RowKey._fields:
        value, kind = raw[name], int if name in INT_KEYS else str
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _fail(path, f"{where}.{name} must be {'an integer' if kind is int else 'a string'}, "
                              f"got {json.dumps(value)}")
    value = raw["value"]
    if value is not None and not _number(value):
        raise _fail(path, f"{where}.value must be a number (or null for NaN), got {json.dumps(value)}")
    settings = raw.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise _fail(path, f"{where}.settings must be an object, got {json.dumps(settings)}")
    tolerance = raw.get("tolerance")
    n, spread = raw.get("n"), raw.get("spread")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise _fail(path, f"{where}.n must be a positive integer (the values behind the row), got {json.dumps(n)}")
    if spread is not None and (not _number(spread) or not math.isfinite(spread) or spread < 0):
        raise _fail(path, f"{where}.spread must be a non-negative number (their std), got {json.dumps(spread)}")
    return BaselineRow(key=RowKey(*(raw[name] for name in RowKey._fields)),
                       value=math.nan if value is None else float(value), settings=settings,
                       tolerance=None if tolerance is None else _parse_tolerance(path, f"{where}.tolerance",
                                                                                 tolerance),
                       n=n, spread=None if spread is None else float(spread))


def _describe(key: RowKey, settings: dict[str, Any] | None = None) -> str:
    text = ", ".join(f"{name}={value}" for name, value in key._asdict().items())
    return text if settings is None else f"{text}, settings={canonical_json(settings)}"


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file; every problem is a UserError naming the spot."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"Baseline {path} does not exist. Write one from the current results with "
                        f"`repeval check --write-baseline {path}`, or fix the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read the baseline {path}: {exc}. Give the path of a readable "
                        "UTF-8 JSON file.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _fail(path, f"not a repeval baseline (expected \"format\": \"{FORMAT}\" at the top level)")
    version = data.get("version")
    if _number(version) and version > VERSION:
        raise UserError(f"Baseline {path} has format version {version}, newer than this repeval reads "
                        f"({VERSION}). Upgrade repeval (pip install -U repeval).")
    if version != VERSION:
        raise _fail(path, f"\"version\" must be {VERSION}, got {json.dumps(version)}")
    raw_tolerances = data.get("tolerances", {})
    if not isinstance(raw_tolerances, dict):
        raise _fail(path, "'tolerances' must be an object mapping metric names to {\"abs\", \"rel\"}")
    tolerances = {metric: _parse_tolerance(path, f"tolerances.{metric}", raw)
                  for metric, raw in raw_tolerances.items()}
    if not isinstance(data.get("rows"), list) or not data["rows"]:
        raise _fail(path, "'rows' must be a non-empty list of score rows")
    rows = [_parse_row(path, i, raw) for i, raw in enumerate(data["rows"])]
    seen: dict[RowKey, list[int]] = {}
    for i, row in enumerate(rows):
        for j in seen.get(row.key, []):
            pair = f"rows[{j}] and rows[{i}] are the same score ({_describe(row.key)}"
            other = rows[j].settings
            if row.settings is None and other is None:
                raise _fail(path, f"{pair}); keep one")
            if row.settings is None or other is None:
                raise _fail(path, f"{pair}, and a row without \"settings\" matches any settings); keep one, "
                                  "or give both their settings")
            if canonical_json(row.settings) == canonical_json(other):
                raise _fail(path, f"{pair}, same settings); keep one")
        seen.setdefault(row.key, []).append(i)
    return Baseline(path=path, rows=rows, tolerances=tolerances)


def row_key(row: dict[str, Any]) -> RowKey:
    """The baseline key of a store row (:meth:`repeval.store.Store.scores`)."""
    return RowKey(*(row[name] for name in RowKey._fields))


def _block(lines: list[str], opening: str, closing: str) -> str:
    """A JSON object or array body with one item per line, indented under a top-level key."""
    if not lines:
        return opening + closing
    return opening + "\n" + ",\n".join(f"    {line}" for line in lines) + "\n  " + closing


def write_baseline(rows: list[dict[str, Any]], path: Path,
                   tolerances: dict[str, Tolerance] | None = None) -> int:
    """Write store rows as a baseline file (atomically); return the number of rows written.

    Each row keeps its settings, so one probe stored under several settings gives several
    baseline rows. Two rows with the same key *and* settings (runs that differ only in
    hyper-parameters the key does not show) cannot be told apart: that is a UserError
    listing them. ``tolerances`` default to the built-in ones for the metrics present.
    """
    path = Path(path)
    if not rows:
        raise UserError(f"No scores to write to the baseline {path}. Run the probes first "
                        "(`repeval run ...`) in the same --workdir.")
    by_identity: dict[tuple[RowKey, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_identity.setdefault((row_key(row), canonical_json(row["settings"])), []).append(row)
    clashes = [group for group in by_identity.values() if len(group) > 1]
    if clashes:
        listing = "\n".join(f"  {_describe(row_key(g[0]), g[0]['settings'])}: runs "
                            f"{', '.join(r['run_id'] for r in g)}" for g in clashes)
        raise UserError(f"Cannot write the baseline {path}: several runs give the same score key and "
                        f"settings, so a check could not tell them apart:\n{listing}\n"
                        "Write the baseline from a workdir holding one run per key (e.g. a fresh --workdir).")
    if tolerances is None:
        tolerances = _declared_tolerances(rows)
    ordered = sorted(by_identity.items(), key=lambda item: item[0])
    noise = _group_noise(rows)
    # One tolerance and one row per line, so that a refreshed baseline diffs row by row in review.
    tolerance_lines = [f"{json.dumps(m)}: {json.dumps({'abs': t.abs, 'rel': t.rel})}"
                       for m, t in sorted(tolerances.items())]
    row_lines = [json.dumps({**key._asdict(), "value": json_safe(float(group[0]["value"])),
                             "settings": group[0]["settings"], **noise[id(group[0])]}, allow_nan=False)
                 for (key, _), group in ordered]
    atomic_write_text(path, f'{{\n  "format": "{FORMAT}",\n  "version": {VERSION},\n'
                            f'  "tolerances": {_block(tolerance_lines, "{", "}")},\n'
                            f'  "rows": {_block(row_lines, "[", "]")}\n}}\n')
    return len(ordered)


def _group_noise(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per row (by ``id``): ``n``, the values of its :func:`repeval.summary.group_key` group
    (training seeds × probe seeds), and ``spread``, their population std (``null`` with a NaN)."""
    from repeval.summary import group_key

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    out: dict[int, dict[str, Any]] = {}
    for members in groups.values():
        values = [float(m["value"]) for m in members]
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        for m in members:
            out[id(m)] = {"n": len(values), "spread": json_safe(round(spread, 6) if math.isfinite(spread) else spread)}
    return out


def _declared_tolerances(rows: list[dict[str, Any]]) -> dict[str, Tolerance]:
    """The declared tolerances of the metrics in ``rows``, keyed by metric name where every
    task with that metric declares the same, else by ``task.metric``; undeclared ones left out."""
    by_metric: dict[str, dict[str, Tolerance]] = {}
    for task, metric in sorted({(r["task"], r["metric"]) for r in rows}):
        facts = metric_facts(task, metric)
        if facts is not None:
            by_metric.setdefault(metric, {})[task] = facts.tolerance
    out: dict[str, Tolerance] = {}
    for metric, per_task in by_metric.items():
        if len(set(per_task.values())) == 1:
            out[metric] = next(iter(per_task.values()))
        else:
            out.update({f"{task}.{metric}": tol for task, tol in per_task.items()})
    return dict(sorted(out.items()))


def _verdict(key: RowKey, baseline: float, current: float, allowed: float) -> str:
    if math.isnan(baseline) or math.isnan(current):
        return "unchanged" if math.isnan(baseline) and math.isnan(current) else "regression"
    delta = current - baseline
    slack = ROUNDING * max(1.0, abs(baseline), abs(current))
    if abs(delta) <= allowed + slack:
        return "unchanged"
    direction = _direction(key.task, key.metric)
    if direction is None:
        return "regression"
    return "improvement" if delta * direction > 0 else "regression"


def compare(baseline: Baseline, rows: list[dict[str, Any]]) -> CheckResult:
    """Compare store rows with the baseline (see the module docstring for the rules).

    A baseline row without settings matches the stored score with its key; if the store
    holds that key under several settings, the match is ambiguous: a UserError saying to add
    ``settings`` to the row.
    """
    stored: dict[RowKey, list[dict[str, Any]]] = {}
    for row in rows:
        stored.setdefault(row_key(row), []).append(row)
    used: set[int] = set()
    comparisons = []
    for entry in baseline.rows:
        candidates = stored.get(entry.key, [])
        if entry.settings is not None:
            wanted = canonical_json(entry.settings)
            candidates = [r for r in candidates if canonical_json(r["settings"]) == wanted]
        if len(candidates) > 1:
            found = "; ".join(f"run {r['run_id']} settings={canonical_json(r['settings'])}" for r in candidates)
            raise UserError(f"Baseline {baseline.path}: the store holds several scores for "
                            f"{_describe(entry.key, entry.settings)} ({found}). Add the intended "
                            "\"settings\" to that baseline row, or check a workdir with one run per key.")
        allowed = baseline.tolerance(entry).allowed(entry.value)
        noise = {"n": entry.n, "spread": entry.spread}
        if not candidates:
            comparisons.append(Comparison(entry.key, "missing", baseline=entry.value, allowed=allowed, **noise))
            continue
        match = candidates[0]
        used.add(id(match))
        current = float(match["value"])
        comparisons.append(Comparison(entry.key, _verdict(entry.key, entry.value, current, allowed),
                                      baseline=entry.value, current=current, allowed=allowed, **noise))
    comparisons += [Comparison(row_key(r), "extra", current=float(r["value"])) for r in rows if id(r) not in used]
    comparisons.sort(key=lambda c: (STATUS_ORDER.index(c.status), c.key))
    return CheckResult(comparisons)


def _number_text(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.6g}" if signed and value != 0 and not math.isnan(value) else f"{value:.6g}"


def _plural(n: int, word: str, plural: str) -> str:
    return f"{n} {word if n == 1 else plural}"


def format_check(result: CheckResult) -> str:
    """A fixed-width table of every comparison, then a one-line summary. ``n`` and ``spread``
    are the baseline group's values and their std when the baseline was written (``-`` for
    a baseline that predates them)."""
    headers = ("status", *RowKey._fields, "baseline", "current", "delta", "allowed", "n", "spread")
    numeric = {"latent_dim", "budget", "seed", "baseline", "current", "delta", "allowed", "n", "spread"}
    cells = [(c.status, *(str(v) for v in c.key), _number_text(c.baseline), _number_text(c.current),
              _number_text(c.delta, signed=True), _number_text(c.allowed), "-" if c.n is None else str(c.n),
              _number_text(c.spread)) for c in result.comparisons]
    summary = ", ".join([
        _plural(len(result.regressions), "regression", "regressions"),
        f"{len(result.missing)} missing",
        _plural(len(result.improvements), "improvement", "improvements"),
        f"{len(result.unchanged)} unchanged",
        f"{len(result.extra)} extra",
    ])
    verdict = "PASS" if result.ok else "FAIL"
    return f"{aligned_table(headers, cells, numeric)}\n{verdict}: {summary}"
