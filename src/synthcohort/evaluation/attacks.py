"""The three Article 29 WP criteria as attacks (singling out, linkability, inference), the Anonymeter way.

Each attack runs against training patients (main) and against control patients the generator never saw
(control), plus a naive random attack (baseline). Risk = (main - control) / (1 - control) with a 95 %
interval (see stats.residual_risk). Training is subsampled to the control set's size so both attacks
face the same odds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthcohort.evaluation.stats import Rate, Risk, residual_risk, wilson

CATEGORICAL = ("gender", "race", "ethnicity")
EQ, LE, GE = 0, 1, 2
MAX_TERMS = 4


def _is_categorical(col: str) -> bool:
    return col in CATEGORICAL or col.startswith("has_")


@dataclass
class Predicates:
    """A batch of conjunctive predicates: up to MAX_TERMS terms (column, op, value), ``active`` marks used ones."""

    cols: np.ndarray  # [B, MAX_TERMS] int
    ops: np.ndarray  # [B, MAX_TERMS] int: EQ, LE, GE
    vals: np.ndarray  # [B, MAX_TERMS] float
    active: np.ndarray  # [B, MAX_TERMS] bool

    def take(self, idx: np.ndarray) -> Predicates:
        return Predicates(self.cols[idx], self.ops[idx], self.vals[idx], self.active[idx])

    def __len__(self) -> int:
        return len(self.cols)


def _counts(x: np.ndarray, p: Predicates, block: int = 512) -> np.ndarray:
    """How many rows of ``x`` each predicate matches."""
    out = np.zeros(len(p), dtype=int)
    for start in range(0, len(p), block):
        q = p.take(np.arange(start, min(start + block, len(p))))
        mask = np.ones((len(x), len(q)), dtype=bool)
        for t in range(MAX_TERMS):
            v = x[:, q.cols[:, t]]
            ok = np.where(
                q.ops[:, t] == EQ, v == q.vals[:, t], np.where(q.ops[:, t] == LE, v <= q.vals[:, t], v >= q.vals[:, t])
            )
            mask &= ok | ~q.active[:, t]
        out[start : start + len(q)] = mask.sum(axis=0)
    return out


def _draw(n: int, n_cols: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Columns (distinct within a predicate) and which of the MAX_TERMS slots are used (2-4 of them)."""
    k = min(MAX_TERMS, n_cols)
    cols = np.argsort(rng.random((n, n_cols)), axis=1)[:, :k]
    if k < MAX_TERMS:
        cols = np.hstack([cols, np.zeros((n, MAX_TERMS - k), dtype=int)])
    used = rng.integers(min(2, k), k + 1, size=n)
    active = np.arange(MAX_TERMS)[None, :] < used[:, None]
    return cols, active


def singling_out(
    train: pd.DataFrame, control: pd.DataFrame, synth: pd.DataFrame, rng: np.random.Generator, n_attacks: int = 2000
) -> dict[str, Any]:
    """Multivariate predicates that isolate one synthetic patient: do they isolate one real patient too?

    A predicate takes 2-4 random attributes of a random synthetic patient (equality for categories; for
    numbers, <= or >= the value, towards the nearer tail). The baseline draws values at random.
    """
    cols = list(synth.columns)
    cat = np.array([_is_categorical(c) for c in cols])
    xs, xt, xc = (f[cols].to_numpy(dtype=float) for f in (synth, train, control))
    if len(xs) == 0 or not cols:
        return _result(residual_risk(wilson(0, 0), wilson(0, 0), wilson(0, 0)), {"queries": 0})
    medians = np.median(xs, axis=0)
    kept: list[Predicates] = []
    seen: set[bytes] = set()
    n_kept = 0
    for _ in range(20):
        if n_kept >= n_attacks:
            break
        batch = 4 * n_attacks
        c, active = _draw(batch, len(cols), rng)
        rows = xs[rng.integers(len(xs), size=batch)]
        vals = np.take_along_axis(rows, c, axis=1)
        ops = np.where(cat[c], EQ, np.where(vals <= medians[c], LE, GE))
        cand = Predicates(c, ops, vals, active)
        unique = np.flatnonzero(_counts(xs, cand) == 1)
        fresh: list[int] = []
        for i in unique:
            key = np.concatenate([c[i][active[i]], ops[i][active[i]], vals[i][active[i]]]).tobytes()
            if key not in seen and n_kept + len(fresh) < n_attacks:
                seen.add(key)
                fresh.append(int(i))
        kept.append(cand.take(np.array(fresh, dtype=int)))
        n_kept += len(fresh)
    queries = Predicates(*(np.concatenate([getattr(k, f) for k in kept]) for f in ("cols", "ops", "vals", "active")))
    base = _random_predicates(xs, cat, max(len(queries), 1), rng)
    n = len(queries)
    main = wilson(int((_counts(xt, queries) == 1).sum()), n)
    ctrl = wilson(int((_counts(xc, queries) == 1).sum()), n)
    baseline = wilson(int((_counts(xt, base) == 1).sum()), len(base))
    return _result(residual_risk(main, ctrl, baseline), {"queries": n})


def _random_predicates(xs: np.ndarray, cat: np.ndarray, n: int, rng: np.random.Generator) -> Predicates:
    c, active = _draw(n, len(cat), rng)
    lo, hi = xs.min(axis=0), xs.max(axis=0)
    numeric = lo[c] + rng.random(c.shape) * (hi[c] - lo[c])
    # a category drawn uniformly among the values present in the synthetic column
    picks = np.empty(c.shape)
    for j in np.unique(c[cat[c]]):
        where = (c == j) & cat[c]
        picks[where] = rng.choice(np.unique(xs[:, j]), size=int(where.sum()))
    vals = np.where(cat[c], picks, numeric)
    ops = np.where(cat[c], EQ, np.where(rng.random(c.shape) < 0.5, LE, GE))
    return Predicates(c, ops, vals, active)


def _gower_matrix(df: pd.DataFrame, cols: list[str], ranges: dict[str, float]) -> np.ndarray:
    parts = []
    for c in cols:
        x = df[c].to_numpy(dtype=float)
        parts.append(x if _is_categorical(c) else x / ranges[c])
    return np.column_stack(parts) if parts else np.zeros((len(df), 0))


def _nearest_idx(
    synth: pd.DataFrame, targets: pd.DataFrame, cols: list[str], ranges: dict[str, float], k: int
) -> np.ndarray:
    """Indices of the k synthetic rows nearest each target under Gower distance on ``cols``."""
    s = _gower_matrix(synth, cols, ranges)
    t = _gower_matrix(targets, cols, ranges)
    cat = np.array([_is_categorical(c) for c in cols])
    out = np.zeros((len(t), min(k, len(s))), dtype=int)
    step = max(1, 4_000_000 // max(len(s) * max(len(cols), 1), 1))
    for start in range(0, len(t), step):
        diff = np.abs(t[start : start + step, None, :] - s[None, :, :])
        diff[:, :, cat] = (diff[:, :, cat] > 0).astype(float)
        d = diff.sum(axis=2)
        out[start : start + step] = np.argsort(d, axis=1, kind="stable")[:, : out.shape[1]]
    return out


def _ranges(frames: list[pd.DataFrame], cols: list[str]) -> dict[str, float]:
    both = pd.concat([f[cols] for f in frames])
    return {c: float(both[c].max() - both[c].min()) or 1.0 for c in cols}


def linkability(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synth: pd.DataFrame,
    rng: np.random.Generator,
    n_neighbors: int = 1,
) -> dict[str, Any]:
    """Two halves of a patient's attributes, held by two parties: does the synthetic data join them?"""
    cols = list(synth.columns)
    a_cols = [c for c in cols if c in CATEGORICAL or c in ("year_of_birth", "obs_start_year", "obs_days")]
    b_cols = [c for c in cols if c not in a_cols]
    ranges = _ranges([train, control, synth], cols)

    def success(targets: pd.DataFrame) -> int:
        if len(targets) == 0 or len(synth) == 0:
            return 0
        ia = _nearest_idx(synth, targets, a_cols, ranges, n_neighbors)
        ib = _nearest_idx(synth, targets, b_cols, ranges, n_neighbors)
        return int(sum(bool(set(x) & set(y)) for x, y in zip(ia.tolist(), ib.tolist(), strict=True)))

    main = wilson(success(train), len(train))
    ctrl = wilson(success(control), len(control))
    k = min(n_neighbors, max(len(synth), 1))
    rand = [
        bool(set(rng.choice(len(synth), k, replace=False)) & set(rng.choice(len(synth), k, replace=False)))
        for _ in range(len(train))
    ]
    base = wilson(int(sum(rand)), len(rand))
    return _result(residual_risk(main, ctrl, base), {"columns_a": a_cols, "columns_b": b_cols})


def _nearest_leaving_out(
    synth: pd.DataFrame, targets: pd.DataFrame, cols: list[str], ranges: dict[str, float]
) -> np.ndarray:
    """For each target and each column j, the nearest synthetic row on every column but j ([targets, cols])."""
    s = _gower_matrix(synth, cols, ranges).astype(np.float32)
    t = _gower_matrix(targets, cols, ranges).astype(np.float32)
    cat = np.array([_is_categorical(c) for c in cols])
    out = np.zeros((len(t), len(cols)), dtype=int)
    block = max(1, 4_000_000 // max(len(s) * max(len(cols), 1), 1))
    for start in range(0, len(t), block):
        diff = np.abs(t[start : start + block, None, :] - s[None, :, :])
        diff[:, :, cat] = (diff[:, :, cat] > 0).astype(np.float32)
        full = diff.sum(axis=2)
        for j in range(len(cols)):
            out[start : start + block, j] = np.argmin(full - diff[:, :, j], axis=1)
    return out


def inference(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synth: pd.DataFrame,
    rng: np.random.Generator,
    secrets: list[str],
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """Knowing the rest of a patient's attributes, guess a secret one from the nearest synthetic patient.

    Each attribute is the secret in turn (the others are what the attacker knows); successes are pooled.
    """
    cols = list(synth.columns)
    ranges = _ranges([train, control, synth], cols)
    counts = {"main": 0, "control": 0, "baseline": 0}
    n = {"main": 0, "control": 0, "baseline": 0}
    per_secret: dict[str, Any] = {s: {} for s in secrets}
    for label, targets in (("main", train), ("control", control)):
        if len(targets) == 0 or len(synth) == 0:
            continue
        nearest = _nearest_leaving_out(synth, targets, cols, ranges)
        for secret in secrets:
            j = cols.index(secret)
            guess = synth[secret].to_numpy(dtype=float)[nearest[:, j]]
            ok = _correct(guess, targets[secret].to_numpy(dtype=float), secret, tolerance)
            counts[label] += int(ok.sum())
            n[label] += len(ok)
            per_secret[secret][label] = float(ok.mean())
    if len(synth) and len(train):
        for secret in secrets:
            guess = synth[secret].to_numpy(dtype=float)[rng.integers(len(synth), size=len(train))]
            ok = _correct(guess, train[secret].to_numpy(dtype=float), secret, tolerance)
            counts["baseline"] += int(ok.sum())
            n["baseline"] += len(ok)
    main, ctrl, base = (wilson(counts[k], n[k]) for k in ("main", "control", "baseline"))
    extra = {"secrets": secrets, "per_secret": per_secret, "most_gained": most_gained(per_secret)}
    return _result(residual_risk(main, ctrl, base), extra)


def most_gained(per_secret: dict[str, dict[str, float]], top: int = 5) -> list[dict[str, Any]]:
    """The attributes guessed right more often for training patients than for control ones, largest gain first.

    The pooled inference risk says how much is learnt; this says about what, which is where a data
    controller looks first (and what to coarsen or leave out when the risk is too high).
    """
    gains = {s: v["main"] - v["control"] for s, v in per_secret.items() if "main" in v and "control" in v}
    leaders = sorted((s for s, g in gains.items() if g > 0), key=lambda s: (-gains[s], s))[:top]
    return [
        {"attribute": s, "main": per_secret[s]["main"], "control": per_secret[s]["control"], "gain": gains[s]}
        for s in leaders
    ]


def _correct(guess: np.ndarray, truth: np.ndarray, col: str, tolerance: float) -> np.ndarray:
    """A guess is right when equal (categories), within a year (calendar years: a share of the year
    number would accept a century), or within ``tolerance`` of the true value (counts, lengths)."""
    if _is_categorical(col):
        return np.asarray(guess == truth)
    if col.endswith("year") or col.startswith("year_"):
        return np.asarray(np.abs(guess - truth) <= 1.0)
    return np.asarray(np.abs(guess - truth) <= tolerance * np.maximum(np.abs(truth), 1.0))


def _rate(r: Rate) -> dict[str, Any]:
    return asdict(r)


def _result(risk: Risk, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "risk": risk.value,
        "risk_low": risk.low,
        "risk_high": risk.high,
        "main": _rate(risk.main),
        "control": _rate(risk.control),
        "baseline": _rate(risk.baseline),
        "baseline_beaten": bool(risk.main.value > risk.baseline.high) if risk.main.n else None,
        **extra,
    }
