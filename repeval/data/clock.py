"""``clock``: clock times in English words, a text benchmark whose circular factor is the time.

The universe is every second of a 12-hour dial, ``t = 0 … 43,199``, written

    "<h> hours <m> minutes <s> seconds",   h = t // 3600,  m = (t // 60) % 60,  s = t % 60,

with hour 0 written "twelve" and the numbers 0–59 in English words (``zero`` … ``nineteen``;
``twenty``/``thirty``/``forty``/``fifty`` plus an optional ones word, e.g. "twenty three"),
single spaces and always the plural ("one hours one minutes zero seconds": mechanical on
purpose). 0:23:23 is "twelve hours twenty three minutes twenty three seconds". The 43,200
strings are distinct, at most 54 characters long and use 21 characters; the symbols are
``SYMBOLS = ("_",) + sorted(characters)``, index 0 being PAD (shown as "_", never a character
of a string), ``VOCAB = 22``. Every string is PAD-filled on the right to ``LENGTH = 64``
positions, and an example is its one-hot ``VOCAB × LENGTH`` array (the symbol is the channel
axis, as for a ``C × L`` signal). The factor is ``θ = 2πt/43,200`` on the circle; the bank is
all 43,200 strings, index = t. One second, 1.45e-4 rad, is just above the 1e-4 rad below which
a Smoothness is undefined.

Splits: ``perm = numpy.random.default_rng(0).permutation(43,200)``; the test times are
``perm[:5000]``, the train times the other 38,200 (``perm[5000:]``), both kept in permuted
order and disjoint. Labels are the 12 hour classes ``t // 3600``.

Nearest string (:func:`nearest`): for symbol scores ``P`` (``VOCAB × LENGTH``, softmax
probabilities or one-hot) the nearest bank string is ``s* = argmax_s ⟨P, onehot(s)⟩ =
argmax_s Σ_pos P[s_pos, pos]``. Ties are frequent (a one-hot cross-fade at α = ½ ties every
bank string that agrees with one of its two strings at each position), so the search is
exact: P is rounded to integer multiples of 2^-40 (int64), every sum is then an exact integer
whatever the order, and equal scores go to the lowest t. It is fast without a 43,200-string
bank: string(t) = H(h) + M(m) + S(s) + PADs (H = "<h> hours ", M = "<m> minutes ",
S = "<s> seconds"), so the score is
``SH[h] + SM[|H(h)|, m] + SS[|H(h)| + |M(m)|, s]`` with each part the gathered sum of P at
its offset (4 offsets for M, 13 for S), and the lexicographic argmax (first index at each
level: the best s for every S offset, then the best m for every M offset, then h) is the
argmax with the lowest t among ties. 4,096 softmax queries take 0.2–0.35 s on one core (a
float64 matmul against the one-hot bank takes 11–16 s).

Metrics (:func:`search`, through the interpolation task's metric): the lines' metric
(:mod:`repeval.probes.interpolation`) with the cosine against a one-hot bank,

- Mean Distance: the soft distance ``1 − ⟨P, onehot(s*)⟩ / (‖P‖_F · √L)`` (for a one-hot P
  the fraction of wrong positions: one wrong character is 1/64), averaged;
- Smoothness (official and strict), detour, end error and undefined count on θ(s*), exactly
  as for ``lines`` and ``shepard``;
- details of the argmax decode (the one-hot of ``P.argmax`` over symbols): ``hard_distance``,
  its own soft distance (the fraction of positions that differ from its nearest string);
  ``valid_fraction``, the fraction of examples whose argmax string is a bank string exactly;
  ``edit_distance``, the mean normalised Levenshtein distance (rapidfuzz) between the argmax
  string and its **Hamming-nearest** bank string (both with trailing PADs stripped, interior
  PADs kept as "_"; 0 for a valid string). The edit-nearest bank string would be the finer
  reference, but finding it is too slow for a metric: over the 43,200 strings, rapidfuzz
  ``process.extractOne`` takes 40 s and ``process.cdist`` 11 s for 4,096 random strings on
  one core, and ``extractOne`` still 20 s for strings two substitutions from the bank (against
  0.5–0.8 s for the whole of :func:`search`), so this detail is an upper bound on the distance
  to the edit-nearest string.

What a reference interpolation scores (256 pairs × 16 steps; two times per pair drawn with
``rng = numpy.random.default_rng(0)``, ``rng.integers(0, 43,200, size=(2, 256))``, all 256
pairs distinct; the project's tests reproduce this table from this module):

================================================ ========= ========= ===== ====== =====
path                                             Mean Dist Smooth.   strict detour valid
================================================ ========= ========= ===== ====== =====
true times evenly along the shortest arc         0         0.000     0.000 0.000  1.00
identity AE: one-hot cross-fade, soft metric     0.051     0.933     0.933 0.000  —
same, argmax decode                              0         0.933     0.933 0.000  1.00
left-to-right character splice A→B               0.060     1.139     1.139 0.93   0.41
constant output                                  0         0 (undef) 1.000 −1.00  1.00
true times the long way round                    0         0.000     0.000 8.37   1.00
uniform random symbols                           0.867     ≈3.9      ≈3.9  ≈33    0
================================================ ========= ========= ===== ====== =====

The paths: true times ``round(t_a + j·Δ/15) mod 43,200`` (whole seconds) for ``j = 0 … 15``,
Δ the signed shorter way in seconds (the long way round: Δ − sign(Δ)·43,200); the cross-fade
``(1 − α)·onehot(a) + α·onehot(b)`` with ``α = j/15`` (its nearest string is a for α < ½ and b
for α > ½: an abrupt switch, 1 − 1/15); the splice takes the first ``round(j/15 · 64)``
positions (PADs included) from b and the rest from a; random symbols are uniform over all 22,
``rng.integers(0, 22, size=(256, 16, 64))`` from the same generator after the pairs. The
cross-fade's "valid" is that of its argmax decode, the next row. The true path's Smoothness is
1.2e-4 (whole seconds make the steps slightly uneven). The long way's detour (8.37) and
random symbols' Smoothness and detour are means of heavy-tailed ratios over pairs (a pair
close on the dial has a tiny arc, and random nearest strings a tiny end-to-end span), whose
expectation does not exist: they are one draw (the random symbols of seeds 1, 2 and 3 with
the same pairs give Smoothness 5.7, 11.4 and 4.9 and detours 31.5, 32.4 and 31.9; Mean
Distance stays within 0.0005 of 0.867), so the tests check the long way against its exact
per-pair value ``(2π − arc)/arc − 1`` and random symbols against bounds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from repeval.data.base import Dataset, FactorBank, make_dataset
from repeval.data.registry import DataOptions, DatasetEntry

LENGTH = 64  # positions per string, PAD-filled on the right
UNIVERSE = 43_200  # seconds of a 12-hour dial
TEST_SIZE = 5_000
TRAIN_SIZE = UNIVERSE - TEST_SIZE
SPLIT_SEED = 0
CLASSES = 12  # hour classes
PAD = 0

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = ("twenty", "thirty", "forty", "fifty")


def _number(n: int) -> str:
    """0–59 in English words ("twenty three")."""
    return _ONES[n] if n < 20 else _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _ONES[n % 10])


def _hour_part(h: int) -> str:
    return f"{_number(h) if h else 'twelve'} hours "


def _minute_part(m: int) -> str:
    return f"{_number(m)} minutes "


def _second_part(s: int) -> str:
    return f"{_number(s)} seconds"


@lru_cache(maxsize=1)
def _strings() -> tuple[str, ...]:
    """The 43,200 strings, index = t."""
    return tuple(_hour_part(t // 3600) + _minute_part(t // 60 % 60) + _second_part(t % 60) for t in range(UNIVERSE))


SYMBOLS: tuple[str, ...] = ("_",) + tuple(sorted(set("".join(_strings()))))  # index 0 = PAD, shown as "_"
VOCAB = 22
assert len(SYMBOLS) == VOCAB
_CODE = {c: i for i, c in enumerate(SYMBOLS)}
FIXED = 40  # nearest() rounds P to integer multiples of 2^-FIXED
SEARCH_CHUNK = 256  # queries scored at once by nearest()
MAX_ABS = 2.0 ** 16  # |P| bound that keeps every fixed-point sum of LENGTH terms inside int64


def _times(t) -> np.ndarray:
    t = np.atleast_1d(np.asarray(t))
    if t.dtype.kind not in "iu" or (t.size and (t.min() < 0 or t.max() >= UNIVERSE)):
        raise ValueError(f"times must be integers in 0..{UNIVERSE - 1}")
    return t.astype(np.int64)


def text(t) -> list[str]:
    """The strings (unpadded) of times ``t`` (integers 0…43,199)."""
    strings = _strings()
    return [strings[i] for i in _times(t)]


@lru_cache(maxsize=1)
def _bank_tokens() -> np.ndarray:
    out = np.zeros((UNIVERSE, LENGTH), dtype=np.int64)
    for t, s in enumerate(_strings()):
        out[t, :len(s)] = [_CODE[c] for c in s]
    out.flags.writeable = False
    return out


def tokens(t) -> np.ndarray:
    """Symbol ids of times ``t``, PAD-filled: int64 ``(N, LENGTH)``."""
    return _bank_tokens()[_times(t)]


def one_hot(ids: np.ndarray) -> np.ndarray:
    """One-hot ``(N, VOCAB, LENGTH)`` bool of ids ``(N, LENGTH)`` (the symbol is the channel axis)."""
    ids = np.asarray(ids)
    return ids[:, None, :] == np.arange(VOCAB)[None, :, None]


def decode(ids: np.ndarray) -> list[str]:
    """Strings of ids ``(N, L)``: trailing PADs stripped, interior PADs kept as "_"."""
    chars = np.asarray(SYMBOLS)[np.asarray(ids)]
    return ["".join(row).rstrip(SYMBOLS[PAD]) for row in chars]


def factors(t) -> np.ndarray:
    """The circular factor θ = 2πt/43,200 of times ``t``."""
    return 2 * np.pi * np.asarray(t, dtype=np.float64) / UNIVERSE


def hours(t) -> np.ndarray:
    """The 12 hour classes ``t // 3600``."""
    return np.asarray(t, dtype=np.int64) // 3600


@lru_cache(maxsize=1)
def split_times() -> tuple[np.ndarray, np.ndarray]:
    """``(train_t, test_t)``: a seeded permutation of the universe, test = its first 5,000 times,
    train = the other 38,200 (both in permuted order)."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(UNIVERSE)
    train, test = perm[TEST_SIZE:], perm[:TEST_SIZE]
    train.flags.writeable = test.flags.writeable = False
    return train, test


@lru_cache(maxsize=1)
def reference_bank() -> tuple[np.ndarray, np.ndarray]:
    """The interpolation bank: every string's tokens (int64 ``(43,200, LENGTH)``, index = t) and θ."""
    return _bank_tokens(), factors(np.arange(UNIVERSE))


# ---- exact nearest string --------------------------------------------------------------------------------------

_ZERO = VOCAB * LENGTH  # a flat index that reads an appended zero column


def _part_index(parts: list[str], offset: int, width: int) -> np.ndarray:
    """Flat indices ``symbol·LENGTH + position`` of each part placed at ``offset``, padded with ``_ZERO``."""
    out = np.full((len(parts), width), _ZERO, dtype=np.int64)
    for i, part in enumerate(parts):
        out[i, :len(part)] = [_CODE[c] * LENGTH + offset + k for k, c in enumerate(part)]
    return out


@lru_cache(maxsize=1)
def _plan() -> dict[str, np.ndarray]:
    """Index arrays of the decomposition string(t) = H(h) + M(m) + S(s) + PADs, over the few
    offsets where M and S can start."""
    hp = [_hour_part(h) for h in range(12)]
    mp = [_minute_part(m) for m in range(60)]
    sp = [_second_part(s) for s in range(60)]
    m_offsets = sorted({len(p) for p in hp})  # where M starts
    s_offsets = sorted({o + len(p) for o in m_offsets for p in mp})  # where S starts
    return {
        "h": _part_index(hp, 0, max(map(len, hp))),  # (12, width)
        "m": np.stack([_part_index(mp, o, max(map(len, mp))) for o in m_offsets]),  # (offsets, 60, width)
        "s": np.stack([_part_index(sp, o, max(map(len, sp))) for o in s_offsets]),
        "s_end": np.array([[o + len(p) for p in sp] for o in s_offsets]),  # where the PAD tail starts
        "m_at": np.array([m_offsets.index(len(p)) for p in hp]),  # (12,) offset row of M for each hour
        "s_at": np.array([[s_offsets.index(o + len(p)) for p in mp] for o in m_offsets]),  # (m offsets, 60)
    }


def quantize(P: np.ndarray) -> np.ndarray:
    """``P`` ``(M, VOCAB, LENGTH)`` rounded to integer multiples of 2^-40, as int64 (exact sums)."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 3 or P.shape[1:] != (VOCAB, LENGTH):
        raise ValueError(f"expected (M, {VOCAB}, {LENGTH}) symbol scores, got {P.shape}")
    if not np.isfinite(P).all() or (P.size and np.abs(P).max() > MAX_ABS):
        raise ValueError(f"symbol scores must be finite and at most {MAX_ABS:g} in magnitude (probabilities)")
    return np.rint(np.ldexp(P, FIXED)).astype(np.int64)


def _nearest_chunk(q: np.ndarray, plan: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n = q.shape[0]
    flat = np.concatenate([q.reshape(n, -1), np.zeros((n, 1), dtype=np.int64)], axis=1)
    tail = np.zeros((n, LENGTH + 1), dtype=np.int64)  # tail[:, p] = Σ_{pos ≥ p} PAD scores
    tail[:, :LENGTH] = np.cumsum(q[:, PAD, ::-1], axis=1)[:, ::-1]
    sh = flat[:, plan["h"]].sum(-1)  # (n, 12)
    sm = flat[:, plan["m"]].sum(-1)  # (n, m offsets, 60)
    ss = flat[:, plan["s"]].sum(-1) + tail[:, plan["s_end"]]  # (n, s offsets, 60)
    # lexicographic argmax, first index at each level = the lowest t among equal scores
    best_s = ss.argmax(-1)  # (n, s offsets)
    m_total = sm + np.take_along_axis(ss, best_s[..., None], -1)[..., 0][:, plan["s_at"]]
    best_m = m_total.argmax(-1)  # (n, m offsets)
    h_total = sh + np.take_along_axis(m_total, best_m[..., None], -1)[..., 0][:, plan["m_at"]]
    h = h_total.argmax(-1)
    rows = np.arange(n)
    m_row = plan["m_at"][h]
    m = best_m[rows, m_row]
    s = best_s[rows, plan["s_at"][m_row, m]]
    return 3600 * h + 60 * m + s, h_total[rows, h]


def nearest(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bank string nearest each ``P`` ``(M, VOCAB, LENGTH)`` (probabilities or one-hot):
    ``argmax_t Σ_pos P[string(t)_pos, pos]`` with P rounded to multiples of 2^-40 (exact integer
    sums), equal scores going to the lowest t. Returns its index t (int64) and that score (float64)."""
    q = quantize(P)
    plan = _plan()
    parts = [_nearest_chunk(q[i:i + SEARCH_CHUNK], plan) for i in range(0, q.shape[0], SEARCH_CHUNK)]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    index, score = (np.concatenate(x) for x in zip(*parts))
    return index.astype(np.int64), np.ldexp(score.astype(np.float64), -FIXED)


def nearest_tokens(P: np.ndarray) -> np.ndarray:
    """The tokens ``(M, LENGTH)`` of the bank string nearest each ``P`` (:func:`nearest`)."""
    return tokens(nearest(P)[0])


def edit_distances(a: list[str], b: list[str]) -> np.ndarray:
    """Normalised Levenshtein distance of strings ``a[i]`` and ``b[i]`` (rapidfuzz)."""
    from rapidfuzz.distance import Levenshtein

    return np.array([Levenshtein.normalized_distance(x, y) for x, y in zip(a, b)], dtype=np.float64)


def search(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The interpolation metric's pieces for ``P`` ``(M, VOCAB, LENGTH)``: the soft distance
    ``1 − ⟨P, onehot(s*)⟩ / (‖P‖·√L)`` to the nearest string s* (1 for an all-zero P), θ(s*),
    and the details (means over the M examples) ``hard_distance``, ``valid_fraction`` and
    ``edit_distance`` (see the module docstring)."""
    P = np.asarray(P, dtype=np.float64)
    index, score = nearest(P)
    norm = np.sqrt(np.einsum("ijk,ijk->i", P, P))
    with np.errstate(divide="ignore", invalid="ignore"):
        distances = np.where(norm > 0, 1.0 - score / (norm * math.sqrt(LENGTH)), 1.0)
    ids = P.argmax(axis=1)  # (M, LENGTH): the argmax decode
    hard_index, matches = nearest(one_hot(ids))
    valid = matches == LENGTH
    details = {"hard_distance": float(np.mean(1.0 - matches / LENGTH)) if len(P) else math.nan,
               "valid_fraction": float(np.mean(valid)) if len(P) else math.nan,
               "edit_distance": math.nan}
    if len(P):
        edit = np.zeros(len(P))
        bad = np.flatnonzero(~valid)
        edit[bad] = edit_distances(decode(ids[bad]), text(hard_index[bad]))
        details["edit_distance"] = float(edit.mean())
    return distances, factors(index), details


# ---- the dataset ------------------------------------------------------------------------------------------------

def load_clock(options: DataOptions) -> Dataset:
    train_t, test_t = split_times()
    info = {"source": "generated (clock times in words)", "verified": "generated",
            "rule": f"every second of a 12-hour dial as '<h> hours <m> minutes <s> seconds' in English words; "
                    f"{TRAIN_SIZE} train and {TEST_SIZE} test times (disjoint, permutation seed {SPLIT_SEED}); "
                    f"one-hot {VOCAB} symbols × {LENGTH} positions (PAD-filled); labels = {CLASSES} hour classes",
            "pad": PAD}
    return make_dataset("clock", one_hot(tokens(train_t)), hours(train_t), one_hot(tokens(test_t)), hours(test_t),
                        num_classes=CLASSES, info=info, symbols=SYMBOLS,
                        bank=FactorBank(reference_bank, factors(test_t), search=search, nearest_tokens=nearest_tokens))


ENTRY = DatasetEntry(
    "clock", "clock times in English words, one-hot text of 22 symbols × 64 positions whose circular factor "
             "is the time on a 12-hour dial (interpolation of text)",
    VOCAB, CLASSES, TRAIN_SIZE, TEST_SIZE, depth=16, latent_dims=(64, 256), loader=load_clock,
    locate=lambda options: "generated", generated=True,
    features=frozenset({"factor_bank"}), kind="tokens", size=LENGTH,
)
