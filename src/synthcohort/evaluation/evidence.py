"""Study evidence: does an exposure -> outcome effect estimated on synthetic patients match the real one?"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from synthcohort.evaluation.features import CohortData

log = logging.getLogger(__name__)

MIN_CELL = 5
N_DEFAULT_PAIRS = 5
MAX_LOG_RATIO = 20.0  # |log ratio| or a bound beyond this: separation, not an estimate


def _first_dates(data: CohortData, concepts: list[str]) -> pd.Series:
    f = data.facts[data.facts["concept"].isin(set(concepts))]
    return f.groupby("person_id")["first_date"].min()


def study_table(data: CohortData, exposure: list[str], outcome: list[str]) -> pd.DataFrame:
    """One row per person: exposed (exposure strictly before any outcome), outcome, time to outcome, age, sex.

    Time runs from the start of observation to the first outcome, censored at the end of observation.
    """
    p = data.persons.set_index("person_id")
    exp = _first_dates(data, exposure).reindex(p.index)
    out = _first_dates(data, outcome).reindex(p.index)
    start = p["obs_start"].fillna(p["birth_date"])
    end = p["obs_end"].fillna(start)
    has_out = out.notna()
    exposed = exp.notna() & (~has_out | (exp < out))
    stop = out.where(has_out, end)
    t = (stop - start).dt.days / 365.25
    df = pd.DataFrame(
        {
            "exposed": exposed.astype(int),
            "outcome": has_out.astype(int),
            "time": t.clip(lower=1 / 365.25),
            "age": ((start - p["birth_date"]).dt.days / 365.25 / 10).fillna(0.0),
            "male": (p["gender"] == 8507).astype(int),
        }
    )
    return df[np.isfinite(df["time"])].reset_index(drop=True)


def default_pairs(data: CohortData, k: int = N_DEFAULT_PAIRS) -> list[tuple[str, str]]:
    """The strongest drug -> later condition associations of the real cohort (Woolf lower bound of the OR)."""
    min_n = max(10, int(0.02 * data.n))
    f = data.facts
    held = f.groupby("concept", observed=True)["person_id"].nunique()
    drugs = [c for c in f.loc[f["domain"] == "drug", "concept"].unique() if held[c] >= min_n]
    conds = [c for c in f.loc[f["domain"] == "condition", "concept"].unique() if held[c] >= min_n]
    if not drugs or not conds:
        return []
    ids = pd.Index(data.persons["person_id"])

    def dates(concepts: list[str]) -> np.ndarray:
        sub = f[f["concept"].isin(set(concepts))]
        wide = sub.pivot_table(index="person_id", columns="concept", values="first_date", aggfunc="min")
        wide = wide.reindex(index=ids, columns=concepts)
        days = wide.apply(lambda s: (s - pd.Timestamp("1800-01-01")).dt.days).to_numpy(dtype=float)
        return np.where(np.isnan(days), np.inf, days)

    e, o = dates(drugs), dates(conds)
    has_o = np.isfinite(o)[:, None, :]
    exposed = np.isfinite(e)[:, :, None] & (e[:, :, None] < o[:, None, :])
    a = (exposed & has_o).sum(0).astype(float)
    b = (exposed & ~has_o).sum(0).astype(float)
    c = (~exposed & has_o).sum(0).astype(float)
    d = (~exposed & ~has_o).sum(0).astype(float)
    ok = (a >= MIN_CELL) & (b >= MIN_CELL) & (c >= MIN_CELL) & (d >= MIN_CELL)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log((a * d) / (b * c))
        se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
        lower = np.where(ok, log_or - 1.96 * se, -np.inf)
    order = np.argsort(-lower, axis=None, kind="stable")
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[float, ...]] = set()
    for flat in order:
        i, j = np.unravel_index(flat, lower.shape)
        if len(pairs) >= k or not (np.isfinite(lower[i, j]) and lower[i, j] > 0):
            break
        # drugs always given together (a vaccine schedule) make the same table: one of them is enough
        cells = (float(j), a[i, j], b[i, j], c[i, j], d[i, j])
        if cells not in seen:
            seen.add(cells)
            pairs.append((str(drugs[i]), str(conds[j])))
    return pairs


def odds_ratio(df: pd.DataFrame) -> dict[str, Any] | None:
    """Logistic regression of the outcome on exposure, adjusted for age and sex (statsmodels)."""
    import statsmodels.api as sm

    if df["exposed"].nunique() < 2 or df["outcome"].nunique() < 2:
        return None
    X = sm.add_constant(df[["exposed", "age", "male"]].astype(float), has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.Logit(df["outcome"].astype(float), X).fit(disp=0, maxiter=100)
        except Exception as exc:  # separation, singular matrix: no estimate, said so
            log.info("logistic regression failed: %s", type(exc).__name__)
            return None
    ci = fit.conf_int().loc["exposed"]
    beta, lo, hi = float(fit.params["exposed"]), float(ci.iloc[0]), float(ci.iloc[1])
    # Near-separation leaves an interval too wide to state (its bound overflows): no estimate, said so.
    if not np.all(np.isfinite([beta, lo, hi])) or max(abs(beta), abs(lo), abs(hi)) > MAX_LOG_RATIO:
        log.info("logistic regression gave no usable interval (near separation)")
        return None
    return {"estimate": float(np.exp(beta)), "low": float(np.exp(lo)), "high": float(np.exp(hi)), "n": len(df)}


def hazard_ratio(df: pd.DataFrame) -> dict[str, Any] | None:
    """Cox proportional hazards of time to outcome on exposure, adjusted for age and sex (lifelines)."""
    from lifelines import CoxPHFitter

    if df["exposed"].nunique() < 2 or df["outcome"].sum() < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for penalizer in (0.0, 0.1):
            try:
                cph = CoxPHFitter(penalizer=penalizer).fit(df, duration_col="time", event_col="outcome")
                break
            except Exception as exc:  # lifelines convergence failure: retry penalised, then give up
                log.info("Cox fit failed (penalizer %s): %s", penalizer, type(exc).__name__)
        else:
            return None
    s = cph.summary.loc["exposed"]
    if (
        not np.all(np.isfinite([s["coef"], s["coef lower 95%"], s["coef upper 95%"]]))
        or max(abs(s["coef"]), abs(s["coef lower 95%"]), abs(s["coef upper 95%"])) > MAX_LOG_RATIO
    ):
        log.info("Cox fit gave no usable interval")
        return None
    return {
        "estimate": float(s["exp(coef)"]),
        "low": float(s["exp(coef) lower 95%"]),
        "high": float(s["exp(coef) upper 95%"]),
        "n": len(df),
    }


def compare(real: dict[str, Any] | None, synth: dict[str, Any] | None) -> dict[str, Any]:
    if real is None or synth is None:
        return {"inside_real_ci": None, "same_direction": None, "same_significance": None}

    def sig(e: dict[str, Any]) -> bool:
        return bool(e["low"] > 1 or e["high"] < 1)

    return {
        "inside_real_ci": bool(real["low"] <= synth["estimate"] <= real["high"]),
        "same_direction": bool(np.sign(np.log(real["estimate"])) == np.sign(np.log(synth["estimate"]))),
        "same_significance": sig(real) == sig(synth),
    }


def evidence(
    real: CohortData, synth: CohortData, exposure: list[str] | None = None, outcome: list[str] | None = None
) -> dict[str, Any]:
    """Effect estimates (OR and HR, 95 % CI) on real and synthetic for the given or default pairs."""
    pairs = [(",".join(exposure), ",".join(outcome))] if exposure and outcome else default_pairs(real)
    studies = []
    for exp_key, out_key in pairs:
        e, o = exp_key.split(","), out_key.split(",")
        t_real, t_synth = study_table(real, e, o), study_table(synth, e, o)
        entry: dict[str, Any] = {
            "exposure": e,
            "outcome": o,
            "exposure_name": "; ".join(real.concept_names.get(c, c) for c in e),
            "outcome_name": "; ".join(real.concept_names.get(c, c) for c in o),
            "exposed_real": int(t_real["exposed"].sum()),
            "exposed_synthetic": int(t_synth["exposed"].sum()),
        }
        for label, fn in (("odds_ratio", odds_ratio), ("hazard_ratio", hazard_ratio)):
            r, s = fn(t_real), fn(t_synth)
            entry[label] = {"real": r, "synthetic": s, **compare(r, s)}
        studies.append(entry)
    held = [s["odds_ratio"]["inside_real_ci"] for s in studies if s["odds_ratio"]["inside_real_ci"] is not None]
    return {
        "default_pairs": not (exposure and outcome),
        "studies": studies,
        "share_inside_real_ci": float(np.mean(held)) if held else None,
        "share_same_conclusion": _share_same(studies),
    }


def _share_same(studies: list[dict[str, Any]]) -> float | None:
    flags = [
        bool(s["odds_ratio"]["same_direction"] and s["odds_ratio"]["same_significance"])
        for s in studies
        if s["odds_ratio"]["same_direction"] is not None
    ]
    return float(np.mean(flags)) if flags else None
