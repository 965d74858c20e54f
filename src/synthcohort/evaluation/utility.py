"""Utility: train on synthetic, test on real (TSTR) against train on real, test on real (TRTR)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from synthcohort.evaluation.features import COUNT_DOMAINS, CohortData
from synthcohort.evaluation.fidelity import prevalence

log = logging.getLogger(__name__)

MAX_FEATURES = 150


def choose_target(real: CohortData) -> str | None:
    """A common chronic condition: the most prevalent condition held by 10-50 % of real patients.

    Chronic = most of its records have no end date; when none is, the most prevalent condition is used.
    Conditions whose onset falls on the first day of observation for most holders are skipped: they
    leave no history before them to predict from.
    """
    cond = real.facts[real.facts["domain"] == "condition"]
    if cond.empty or real.n == 0:
        return None
    p = real.persons.set_index("person_id")["obs_start"]
    first = cond.assign(obs_start=p.reindex(cond["person_id"]).to_numpy())
    later = first[first["first_date"] > first["obs_start"]]
    share = later.groupby("concept", observed=True)["person_id"].nunique() / real.n
    eligible = share[(share >= 0.10) & (share <= 0.50)].sort_index().sort_values(ascending=False, kind="stable")
    chronic = [c for c in eligible.index if real.open_ended.get(str(c), 0.0) >= 0.5]
    if chronic:
        return str(chronic[0])
    return str(eligible.index[0]) if len(eligible) else None


def _design(data: CohortData, target: str, concepts: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Features known before an index date; the label is the target condition's onset at that date.

    Cases are indexed at onset; non-cases at a pseudo-random day of their observation, so both
    sides see history of a comparable span.
    """
    p = data.persons.reset_index(drop=True)
    f = data.facts
    onset = f[f["concept"] == target].groupby("person_id")["first_date"].min()
    start = p["obs_start"].fillna(p["birth_date"])
    end = p["obs_end"].fillna(start)
    span = (end - start).dt.days.fillna(0).clip(lower=0).to_numpy()
    # a pseudo-random day drawn from the person's own dates, so it does not depend on ids or row order
    key = pd.util.hash_pandas_object(p[["birth_date", "obs_start", "obs_end", "gender"]], index=False).to_numpy()
    frac = (key % np.uint64(1_000_003)).astype(float) / 1_000_003
    random_day = start + pd.to_timedelta(np.floor(frac * (span + 1)), unit="D")
    index = onset.reindex(p["person_id"]).reset_index(drop=True).fillna(random_day)
    y = p["person_id"].isin(onset.index).to_numpy().astype(int)
    idx_of = pd.Series(index.to_numpy(), index=p["person_id"].to_numpy())
    before = f[f["first_date"] < idx_of.reindex(f["person_id"]).to_numpy()]
    X = pd.DataFrame(
        {
            "male": (p["gender"] == 8507).astype(int),
            "age": ((index - p["birth_date"]).dt.days / 365.25).to_numpy(),
            "race": p["race"].astype(float),
        }
    )
    pos = {c: i for i, c in enumerate(concepts)}
    m = np.zeros((len(p), len(concepts)), dtype=np.float32)
    rows = pd.Index(p["person_id"]).get_indexer(before["person_id"])
    keep = before["concept"].isin(pos).to_numpy() & (rows >= 0)
    m[rows[keep], before["concept"][keep].map(pos).to_numpy().astype(int)] = 1.0
    hist = pd.DataFrame(m, columns=[f"has_{c}" for c in concepts])
    per_domain = before.groupby(["person_id", "domain"], observed=True)["concept"].nunique().unstack(fill_value=0)
    per_domain = per_domain.reindex(index=p["person_id"], columns=list(COUNT_DOMAINS), fill_value=0)
    per_domain.columns = [f"distinct_{c}" for c in per_domain.columns]
    return pd.concat([X, hist, per_domain.reset_index(drop=True)], axis=1), y


def _auc(model: Pipeline, X: pd.DataFrame, y: np.ndarray) -> float | None:
    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_score(y, model.predict_proba(X.to_numpy(dtype=float))[:, 1]))


def _fit(X: pd.DataFrame, y: np.ndarray, seed: int) -> Pipeline | None:
    """An L2-penalised logistic regression: quick, stable on a few hundred patients, same for both sides."""
    if len(set(y.tolist())) < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
    return model.fit(X.to_numpy(dtype=float), y)


def utility(
    train: CohortData, synth: CohortData, test: CohortData | None, target: str | None, seed: int = 0
) -> dict[str, Any]:
    """TSTR and TRTR AUC on the same real test patients (the control set when there is one)."""
    named = target is not None
    target = target or choose_target(train)
    if target is None:
        return {"target": None, "named": False, "reason": "no condition held by 10-50 % of the real patients"}
    rng = np.random.default_rng(seed)
    prev = prevalence(train)
    concepts = [c for c in prev.index if c != target][:MAX_FEATURES]
    X_tr, y_tr = _design(train, target, concepts)
    X_sy, y_sy = _design(synth, target, concepts)
    if test is not None and test.n:
        X_te, y_te = _design(test, target, concepts)
        test_label = "control"
    else:
        cut = rng.random(len(y_tr)) < 0.3
        X_te, y_te, X_tr, y_tr = X_tr[cut], y_tr[cut], X_tr[~cut], y_tr[~cut]
        test_label = "30 % of the real training patients held out (no control set)"
    real_model, synth_model = _fit(X_tr, y_tr, seed), _fit(X_sy, y_sy, seed)
    trtr = _auc(real_model, X_te, y_te) if real_model else None
    tstr = _auc(synth_model, X_te, y_te) if synth_model else None
    return {
        "target": target,
        "target_name": train.concept_names.get(target, ""),
        "named": named,
        "test_set": test_label,
        "prevalence_real": float(y_tr.mean()) if len(y_tr) else None,
        "prevalence_synthetic": float(y_sy.mean()) if len(y_sy) else None,
        "n_test": len(y_te),
        "trtr_auc": trtr,
        "tstr_auc": tstr if tstr is not None else (0.5 if trtr is not None else None),
        "tstr_over_trtr": (tstr if tstr is not None else 0.5) / trtr if trtr else None,
    }
