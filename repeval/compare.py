"""Paired comparisons of two encoders' stored scores (``repeval compare``, the report's
best marks and pairwise-difference matrices).

Scores are paired where they measure the same thing: same dataset, task, metric and probe
settings (a probe seed that follows the run seed counts as the same setting,
:func:`repeval.summary.group_key`), the same latent size and the same training budget (a
reference encoder, budget 0, pairs with every size and budget). Where the two encoders were
trained at no common budget (A at 2^16 only, B at 2^18 only), their budgets pair as asked and
every line says which. Within each encoder a model's probe seeds are averaged first.

* Two or more **shared training seeds**: B − A per seed, its mean, a 95 % t interval and
  the two-sided p of a paired t-test (``scipy.stats.ttest_rel``), n = the shared seeds.
  Where every seed differs by the same amount (quantised scores), no interval and the exact
  sign-flip test, whose p is at least 2 / 2^n: n agreeing seeds show no more than that.
* One shared seed, for a score stored with its per-example correctness (accuracies): the
  two models on the same test examples — a paired bootstrap interval of B − A and McNemar's
  exact test (:func:`repeval.stats.paired_test_set`), which cover test-set sampling only.
* Otherwise (one seed, no per-example data) only the difference; no interval, no p.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from repeval.errors import UserError
from repeval.stats import Difference, paired_difference, paired_test_set
from repeval.summary import GROUP_COLUMNS, group_key, per_example, per_model


@dataclass
class Side:
    """One encoder's scores of one (dataset, task, metric, settings, latent, size, budget)
    group: per training seed the model's rows (probe seeds) and their mean."""

    encoder: str
    latent: str
    latent_dim: int
    budget: int
    rows: dict[int, list[dict[str, Any]]]
    means: dict[int, float]

    @property
    def mean(self) -> float:
        values = list(self.means.values())
        return sum(values) / len(values) if values else math.nan

    @property
    def seeds(self) -> list[int]:
        return sorted(self.means)

    @property
    def reference(self) -> bool:
        return self.budget == 0

    @property
    def label(self) -> str:
        return self.encoder


def sides(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[Side]]:
    """Every stored group as a :class:`Side`, keyed by (dataset, task, metric, canonical
    settings)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    out: dict[tuple[str, str, str, str], list[Side]] = {}
    for key, members in groups.items():
        fields = dict(zip(GROUP_COLUMNS, key))
        models = per_model(members)
        by_seed = {m[0]["seed"]: m for m in models.values()}
        means = {seed: float(sum(r["value"] for r in m) / len(m)) for seed, m in by_seed.items()}
        out.setdefault((fields["dataset"], fields["task"], fields["metric"], key[-1]), []).append(
            Side(fields["encoder"], fields["latent"], fields["latent_dim"], fields["budget"], by_seed, means))
    return out


def difference(a: Side, b: Side) -> Difference | None:
    """B − A over what the two share (module docstring); ``None`` when they share no seed."""
    shared = sorted(set(a.means) & set(b.means))
    if not shared:
        return None
    if any(math.isnan(a.means[s]) or math.isnan(b.means[s]) for s in shared):
        return Difference(math.nan, math.nan, math.nan, math.nan, len(shared), "NaN in a seed")
    if len(shared) >= 2:
        return paired_difference([a.means[s] for s in shared], [b.means[s] for s in shared])
    seed = shared[0]
    va, vb = per_example(a.rows[seed]), per_example(b.rows[seed])
    if va is not None and vb is not None and va.shape == vb.shape and va.size >= 2:
        return paired_test_set(va, vb)
    return Difference(b.means[seed] - a.means[seed], math.nan, math.nan, math.nan, 1, "none (one seed)")


def pairable(a: Side, b: Side) -> bool:
    """Same latent size, or one of them a reference encoder (fitted, budget 0)."""
    return a.latent_dim == b.latent_dim or a.reference or b.reference


def pairs(sides_a: list[Side], sides_b: list[Side]) -> list[tuple[Side, Side]]:
    """The (A, B) groups of one (dataset, task, metric, settings) to compare: pairable ones, and
    of two learned groups only those at the same budget — unless the two encoders share no
    budget at that latent size, when each budget of A pairs with each of B (a run continued to
    a longer budget, or snapshots along training, must not pair A at 2^12 with B at 2^20)."""
    candidates = [(a, b) for a in sides_a for b in sides_b if pairable(a, b)]
    # latent sizes where the two learned encoders have a budget in common
    common = {a.latent_dim for a, b in candidates if not a.reference and not b.reference and a.budget == b.budget}
    return [(a, b) for a, b in candidates
            if a.reference or b.reference or a.budget == b.budget or a.latent_dim not in common]


@dataclass
class Line:
    """One line of ``repeval compare``."""

    dataset: str
    task: str
    metric: str
    settings: str
    a: Side
    b: Side
    diff: Difference


def _stored(rows: list[dict[str, Any]], column: str) -> list[str]:
    return sorted({str(r[column]) for r in rows})


def compare(rows: list[dict[str, Any]], encoder_a: str, encoder_b: str, *, dataset: str | None = None,
            task: str | None = None, metric: str | None = None) -> list[Line]:
    """The paired lines of B − A (module docstring), or a :class:`UserError` that names what
    is stored when there is nothing to pair."""
    if encoder_a == encoder_b:
        raise UserError(f"compare needs two different encoders; got {encoder_a!r} twice. Name two with "
                        "--encoder A --encoder B.")
    have = _stored(rows, "encoder")
    for name in (encoder_a, encoder_b):
        if name not in have:
            raise UserError(f"No scores stored for encoder {name!r}. Stored encoders: {', '.join(have) or 'none'}. "
                            f"Run it first, e.g. `repeval run --encoder {name} --task all --dataset digits`.")
    mine = {e: [r for r in rows if r["encoder"] == e] for e in (encoder_a, encoder_b)}
    if dataset is not None:
        sets = {e: _stored(mine[e], "dataset") for e in mine}
        lacking = [e for e in mine if dataset not in sets[e]]
        if lacking:
            stored = "; ".join(f"{e}: {', '.join(sets[e])}" for e in mine)
            who = "Neither encoder has" if len(lacking) == 2 else f"{lacking[0]} has no"
            raise UserError(f"{who} scores on dataset {dataset!r}. Stored datasets per encoder: {stored}. Choose "
                            "one both have with --dataset, or run the missing one there.")
        mine = {e: [r for r in v if r["dataset"] == dataset] for e, v in mine.items()}
    if task is not None or metric is not None:
        def keep(r):
            return (task is None or r["task"] == task) and (metric is None or r["metric"] == metric)

        if not any(keep(r) for v in mine.values() for r in v):
            stored = sorted({f"{r['task']}.{r['metric']}" for v in mine.values() for r in v})
            asked = ".".join(x for x in (task or "*", metric or "*"))
            raise UserError(f"No stored score of {encoder_a} or {encoder_b} matches {asked}. Stored (task.metric): "
                            f"{', '.join(stored) or 'none'}. Pick one of these with --task and --metric.")
        mine = {e: [r for r in v if keep(r)] for e, v in mine.items()}
    by_key_a, by_key_b = sides(mine[encoder_a]), sides(mine[encoder_b])
    lines, unpaired = [], []
    for key in sorted(set(by_key_a) & set(by_key_b)):
        for a, b in pairs(by_key_a[key], by_key_b[key]):
            diff = difference(a, b)
            if diff is None:
                unpaired.append((key, a, b))
                continue
            lines.append(Line(*key, a, b, diff))
    if not lines:
        if unpaired:
            seeds_a = sorted({s for _, a, _ in unpaired for s in a.seeds})
            seeds_b = sorted({s for _, _, b in unpaired for s in b.seeds})
            raise UserError(f"{encoder_a} and {encoder_b} share no training seed on the scores they both have: "
                            f"{encoder_a} has seeds {seeds_a}, {encoder_b} has seeds {seeds_b}. Run the missing "
                            f"seeds (repeval run --seed N) so the comparison can pair models.")
        common = sorted({f"{k[0]}:{k[1]}.{k[2]}" for k in by_key_a}), sorted({f"{k[0]}:{k[1]}.{k[2]}"
                                                                            for k in by_key_b})
        raise UserError(f"{encoder_a} and {encoder_b} have no score in common (same dataset, task, metric, probe "
                        f"settings and latent size). {encoder_a} has: {', '.join(common[0]) or 'none'}; "
                        f"{encoder_b} has: {', '.join(common[1]) or 'none'}.")
    return sorted(lines, key=lambda x: (x.dataset, x.a.latent_dim, *_declared_order(x.task, x.metric), x.settings,
                                        x.a.budget, x.b.budget))


def _declared_order(task: str, metric: str) -> tuple[int, int, str, str]:
    """Tasks in registration order, metrics in declaration order; undeclared ones after, by name."""
    from repeval.probes import TASKS

    if task in TASKS:
        names = [m.name for m in TASKS.get(task).metrics]
        return (TASKS.index(task), names.index(metric) if metric in names else len(names), "", metric)
    return (len(TASKS), 0, task, metric)


def _num(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def format_comparison(lines: list[Line], encoder_a: str, encoder_b: str) -> str:
    """The lines as an aligned table, with what each test covers under it."""
    from repeval.results import aligned_table

    headers = ("dataset", "dim", "budget", "task", "metric", "seeds", encoder_a, encoder_b,
               f"{encoder_b}-{encoder_a}", "95% CI", "p", "test", "settings")
    numeric = {"dim", "seeds", encoder_a, encoder_b, f"{encoder_b}-{encoder_a}", "p"}
    settings_index: dict[str, int] = {}
    cells = []
    for x in lines:
        d = x.diff
        interval = "-" if math.isnan(d.low) else f"{d.low:+.4f}..{d.high:+.4f}"
        p = "-" if math.isnan(d.p) else (f"{d.p:.3g}" + ("*" if d.significant else ""))
        dim = str(x.a.latent_dim if not x.a.reference else x.b.latent_dim)
        number = settings_index.setdefault(x.settings, len(settings_index) + 1)
        seeds = len(set(x.a.means) & set(x.b.means))
        test = f"{d.test} ({d.n:,} test examples)" if d.test == "McNemar" else d.test
        cells.append((x.dataset, dim, _budget_text(x.a, x.b), x.task, x.metric, str(seeds), _num(x.a.mean),
                      _num(x.b.mean), _num(d.mean, True), interval, p, test, f"[{number}]"))
    notes = [f"[{i}] {_settings_text(s)}" for s, i in settings_index.items()]
    legend = ("budget: training images of both (A vs B where they differ; fitted: both reference encoders). "
              "seeds: training seeds both have. Two or more: paired t-test over them (interval: t); where every "
              "seed differs by the same amount, no interval and the exact sign-flip test (p ≥ 2/2^seeds). One: the two "
              "models on the same test examples, McNemar's exact test and a paired bootstrap interval (test-set "
              "noise only). * p < 0.05. Each model's probe seeds are averaged first.")
    return "\n".join([aligned_table(headers, cells, numeric), "", legend, *notes])


def _budget_text(a: Side, b: Side) -> str:
    """The budget of a line: one number where both were trained on it (or one is a reference
    encoder), ``A vs B`` where they differ."""
    learned = [x.budget for x in (a, b) if not x.reference]
    if not learned:
        return "fitted"
    if len(set(learned)) == 1:
        return f"{learned[0]:,}"
    return f"{a.budget:,} vs {b.budget:,}"


def _settings_text(settings: str) -> str:
    value = json.loads(settings)
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(value.items())) or "no settings"
