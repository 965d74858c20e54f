"""Study estimates: an interval too wide to state (near separation) gives no estimate, not an overflow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthcohort.evaluation import evidence


def _table(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    exposed = (rng.random(n) < 0.3).astype(int)
    outcome = np.where(exposed == 1, rng.random(n) < 0.6, rng.random(n) < 0.2).astype(int)
    return pd.DataFrame(
        {
            "exposed": exposed,
            "outcome": outcome,
            "time": 1 + rng.random(n) * 5,
            "age": rng.random(n) * 8,
            "male": rng.integers(0, 2, n),
        }
    )


class _Fit:
    """What statsmodels returns for a nearly separated table: a finite slope, an interval of ±800 on the log scale."""

    params = pd.Series({"const": -1.0, "exposed": 3.0, "age": 0.0, "male": 0.0})

    def conf_int(self) -> pd.DataFrame:
        return pd.DataFrame({0: [-2.0, -797.0, -1.0, -1.0], 1: [0.0, 803.0, 1.0, 1.0]}, index=self.params.index)


class _Logit:
    def __init__(self, *args: Any) -> None:
        pass

    def fit(self, **kwargs: Any) -> _Fit:
        return _Fit()


def test_a_sound_table_gives_an_odds_ratio_with_its_interval() -> None:
    r = evidence.odds_ratio(_table())
    assert r is not None and r["low"] < r["estimate"] < r["high"] and r["estimate"] > 1


def test_an_interval_beyond_reach_gives_no_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    import statsmodels.api as sm

    monkeypatch.setattr(sm, "Logit", _Logit)
    # pytest turns warnings into errors here: an overflow in exp() would fail the test
    assert evidence.odds_ratio(_table()) is None
