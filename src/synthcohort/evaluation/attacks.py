"""The three Article 29 WP criteria as attacks (singling out, linkability, inference), the Anonymeter way.

Each attack runs against training patients (main) and against control patients the generator never saw
(control), plus a naive random attack (baseline). Risk = (main - control) / (1 - control) with a 95 %
interval (see stats.residual_risk). Training is subsampled to the control set's size so both attacks
face the same odds.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from synthcohort.evaluation.stats import Rate, Risk, residual_risk, wilson

CATEGORICAL = ("gender", "race", "ethnicity")
Predicate = list[tuple[str, str, float]]  # (column, op, value), op in {"==", "<=", ">="}


def _is_categorical(col: str) -> bool:
    return col in CATEGORICAL or col.startswith("has_")


def _matches(df: pd.DataFrame, predicate: Predicate) -> int:
    mask = np.ones(len(df), dtype=bool)
    for col, op, value in predicate:
        x = df[col].to_numpy()
        mask &= (x == value) if op == "==" else (x <= value) if op == "<=" else (x >= value)
    return int(mask.sum())


def _predicate_from(row: pd.Series, cols: list[str], medians: pd.Series) -> Predicate:
    pred: Predicate = []
    for c in cols:
        v = float(row[c])
        if _is_categorical(c):
            pred.append((c, "==", v))
        else:
            pred.append((c, "<=", v) if v <= medians[c] else (c, ">=", v))
    return pred


def singling_out(
    train: pd.DataFrame, control: pd.DataFrame, synth: pd.DataFrame, rng: np.random.Generator, n_attacks: int = 500
) -> dict[str, Any]:
    """Multivariate predicates that isolate one synthetic patient: do they isolate one real patient too?"""
    cols = list(synth.columns)
    medians = synth.median(numeric_only=True)
    queries: list[Predicate] = []
    seen: set[str] = set()
    for _ in range(n_attacks * 20):
        if len(queries) >= n_attacks or len(synth) == 0:
            break
        row = synth.iloc[int(rng.integers(len(synth)))]
        chosen = list(rng.choice(cols, size=min(len(cols), int(rng.integers(2, 5))), replace=False))
        pred = _predicate_from(row, chosen, medians)
        key = repr(sorted(pred))
        if key not in seen and _matches(synth, pred) == 1:
            seen.add(key)
            queries.append(pred)
    baseline_queries = [_random_predicate(synth, cols, rng) for _ in range(max(len(queries), 1))]
    n = len(queries)
    main = wilson(sum(_matches(train, q) == 1 for q in queries), n)
    ctrl = wilson(sum(_matches(control, q) == 1 for q in queries), n)
    base = wilson(sum(_matches(train, q) == 1 for q in baseline_queries), len(baseline_queries))
    return _result(residual_risk(main, ctrl, base), {"queries": n})


def _random_predicate(synth: pd.DataFrame, cols: list[str], rng: np.random.Generator) -> Predicate:
    chosen = list(rng.choice(cols, size=min(len(cols), int(rng.integers(2, 5))), replace=False))
    pred: Predicate = []
    for c in chosen:
        x = synth[c].to_numpy(dtype=float)
        if _is_categorical(c):
            pred.append((c, "==", float(rng.choice(np.unique(x)))))
        else:
            v = float(rng.uniform(x.min(), x.max())) if len(x) else 0.0
            pred.append((c, "<=" if rng.random() < 0.5 else ">=", v))
    return pred


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
    for start in range(0, len(t), 256):
        block = t[start : start + 256]
        diff = np.abs(block[:, None, :] - s[None, :, :])
        diff[:, :, cat] = (diff[:, :, cat] > 0).astype(float)
        d = diff.sum(axis=2)
        out[start : start + 256] = np.argsort(d, axis=1, kind="stable")[:, : out.shape[1]]
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


def inference(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synth: pd.DataFrame,
    rng: np.random.Generator,
    secrets: list[str],
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """Knowing the rest of a patient's attributes, guess a secret one from the nearest synthetic patient."""
    cols = list(synth.columns)
    ranges = _ranges([train, control, synth], cols)
    counts = {"main": 0, "control": 0, "baseline": 0}
    n = {"main": 0, "control": 0, "baseline": 0}
    per_secret: dict[str, Any] = {}
    for secret in secrets:
        aux = [c for c in cols if c != secret]
        truth_s = synth[secret].to_numpy(dtype=float)
        row: dict[str, float] = {}
        for label, targets in (("main", train), ("control", control)):
            if len(targets) == 0 or len(synth) == 0:
                continue
            guess = truth_s[_nearest_idx(synth, targets, aux, ranges, 1)[:, 0]]
            ok = _correct(guess, targets[secret].to_numpy(dtype=float), secret, tolerance)
            counts[label] += int(ok.sum())
            n[label] += len(ok)
            row[label] = float(ok.mean())
        if len(synth) and len(train):
            guess = truth_s[rng.integers(len(synth), size=len(train))]
            ok = _correct(guess, train[secret].to_numpy(dtype=float), secret, tolerance)
            counts["baseline"] += int(ok.sum())
            n["baseline"] += len(ok)
        per_secret[secret] = row
    main, ctrl, base = (wilson(counts[k], n[k]) for k in ("main", "control", "baseline"))
    return _result(residual_risk(main, ctrl, base), {"secrets": secrets, "per_secret": per_secret})


def _correct(guess: np.ndarray, truth: np.ndarray, col: str, tolerance: float) -> np.ndarray:
    if _is_categorical(col):
        return np.asarray(guess == truth)
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
