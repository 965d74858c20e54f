"""Small statistics shared by the evaluation: Wilson intervals, Anonymeter-style residual risk, distances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Rate:
    """A success rate with its Wilson score interval."""

    value: float
    low: float
    high: float
    n: int
    successes: int

    @property
    def error(self) -> float:
        return (self.high - self.low) / 2


def z_value(confidence: float = 0.95) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson(successes: int, n: int, confidence: float = 0.95) -> Rate:
    """Wilson score interval for a binomial proportion (centre, half-width as in the Anonymeter paper)."""
    if n <= 0:
        return Rate(float("nan"), float("nan"), float("nan"), 0, 0)
    z = z_value(confidence)
    centre = (successes + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * np.sqrt(successes * (n - successes) / n + z * z / 4)
    return Rate(float(centre), float(max(0.0, centre - half)), float(min(1.0, centre + half)), n, successes)


@dataclass(frozen=True)
class Risk:
    """Residual risk = (main - control) / (1 - control), with a propagated 95 % interval."""

    value: float
    low: float
    high: float
    main: Rate
    control: Rate
    baseline: Rate


def residual_risk(main: Rate, control: Rate, baseline: Rate, confidence: float = 0.95) -> Risk:
    """The Anonymeter estimate: attack success beyond what the control set already gives away.

    The interval propagates both Wilson half-widths (first-order error propagation of the ratio),
    as the Anonymeter paper does; it is clipped to [0, 1].
    """
    if not (main.n and control.n) or control.value >= 1:
        return Risk(float("nan"), float("nan"), float("nan"), main, control, baseline)
    denom = 1.0 - control.value
    value = (main.value - control.value) / denom
    d_main = main.error / denom
    d_control = control.error * (main.value - 1.0) / denom**2
    err = float(np.sqrt(d_main**2 + d_control**2))
    low, high = (float(np.clip(v, 0.0, 1.0)) for v in (value - err, value + err))
    return Risk(float(value), low, high, main, control, baseline)


def tvd(a: np.ndarray | list[object], b: np.ndarray | list[object]) -> float:
    """Total variation distance between the empirical distributions of two categorical samples."""
    sa = _shares(np.asarray(a))
    sb = _shares(np.asarray(b))
    keys = set(sa) | set(sb)
    return float(0.5 * sum(abs(sa.get(k, 0.0) - sb.get(k, 0.0)) for k in keys))


def tvd_counts(a: dict[object, float], b: dict[object, float]) -> float:
    ta, tb = sum(a.values()) or 1.0, sum(b.values()) or 1.0
    keys = set(a) | set(b)
    return float(0.5 * sum(abs(a.get(k, 0.0) / ta - b.get(k, 0.0) / tb) for k in keys))


def _shares(x: np.ndarray) -> dict[object, float]:
    if len(x) == 0:
        return {}
    values, counts = np.unique(x.astype(str), return_counts=True)
    return {v: c / len(x) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}


def ks(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic (None when a side is empty)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return None
    return float(stats.ks_2samp(a, b).statistic)


def auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counted half."""
    pos, neg = np.asarray(scores_pos, dtype=float), np.asarray(scores_neg, dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
