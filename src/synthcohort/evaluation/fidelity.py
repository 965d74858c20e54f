"""Fidelity: how close the synthetic cohort's statistics are to the real training cohort's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthcohort.evaluation.features import COUNT_DOMAINS, CohortData
from synthcohort.evaluation.stats import ks, tvd, tvd_counts

MIN_PATIENTS = 10
N_COOC = 30


def ages(data: CohortData) -> np.ndarray:
    """Age in years at the end of observation (the last date the cohort knows the person)."""
    ref = data.persons["obs_end"].fillna(data.persons["obs_start"])
    return ((ref - data.persons["birth_date"]).dt.days / 365.25).to_numpy(dtype=float)


def age_bins(data: CohortData) -> np.ndarray:
    a = ages(data)
    return np.where(np.isfinite(a), np.floor(a / 5) * 5, -1).astype(int)


def demographics(real: CohortData, synth: CohortData) -> dict[str, Any]:
    return {
        "gender_tvd": tvd(real.persons["gender"].to_numpy(), synth.persons["gender"].to_numpy()),
        "race_tvd": tvd(real.persons["race"].to_numpy(), synth.persons["race"].to_numpy()),
        "ethnicity_tvd": tvd(real.persons["ethnicity"].to_numpy(), synth.persons["ethnicity"].to_numpy()),
        "age_tvd": tvd(age_bins(real), age_bins(synth)),
        "age_mean_real": float(np.nanmean(ages(real))) if real.n else None,
        "age_mean_synthetic": float(np.nanmean(ages(synth))) if synth.n else None,
    }


def prevalence(data: CohortData) -> pd.Series:
    """Share of persons holding each concept (any domain)."""
    if data.n == 0:
        return pd.Series(dtype=float)
    held = data.facts.groupby("concept", observed=True)["person_id"].nunique() / data.n
    # ties broken by concept key, so the concepts chosen never depend on row order
    frame = pd.DataFrame({"p": held.to_numpy(), "k": held.index.astype(str)}, index=held.index)
    return frame.sort_values(["p", "k"], ascending=[False, True])["p"]


def prevalence_figures(real: CohortData, synth: CohortData) -> dict[str, Any]:
    pr, ps = prevalence(real), prevalence(synth)
    common = pr[pr * real.n >= MIN_PATIENTS]
    ps_on = ps.reindex(common.index, fill_value=0.0)
    r = float(np.corrcoef(common.to_numpy(), ps_on.to_numpy())[0, 1]) if len(common) > 2 and ps_on.std() > 0 else 0.0
    diff = (ps_on - common).sort_values(key=np.abs, ascending=False, kind="stable")
    return {
        "concepts_compared": len(common),
        "pearson_r": r,
        "share_missing": float((ps_on == 0).mean()) if len(common) else None,
        "mean_abs_difference": float(diff.abs().mean()) if len(diff) else None,
        "synthetic_only_concepts": int(len(set(ps.index) - set(pr.index))),
        "largest_differences": [
            {
                "concept": c,
                "name": real.concept_names.get(c, ""),
                "real": float(common[c]),
                "synthetic": float(ps_on[c]),
            }
            for c in diff.index[:10]
        ],
        "points": {"concept": list(common.index), "real": common.tolist(), "synthetic": ps_on.tolist()},
    }


def presence_matrix(data: CohortData, concepts: list[str]) -> np.ndarray:
    """Persons x concepts, 1 where the person holds the concept."""
    index = pd.Index(data.persons["person_id"])
    pos = {c: i for i, c in enumerate(concepts)}
    f = data.facts[data.facts["concept"].isin(pos)]
    m = np.zeros((data.n, len(concepts)), dtype=np.float32)
    rows = index.get_indexer(f["person_id"])
    ok = rows >= 0
    m[rows[ok], f["concept"].map(pos).to_numpy()[ok].astype(int)] = 1.0
    return m


def phi(m: np.ndarray) -> np.ndarray:
    """Phi coefficients (Pearson on binary columns); a constant column correlates 0 with everything."""
    if m.shape[0] < 2:
        return np.zeros((m.shape[1], m.shape[1]))
    x = m - m.mean(axis=0)
    sd = np.sqrt((x**2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (x.T @ x) / np.outer(sd, sd)
    c = np.nan_to_num(c, nan=0.0)
    np.fill_diagonal(c, 1.0)
    return np.asarray(c)


def cooccurrence(real: CohortData, synth: CohortData) -> dict[str, Any]:
    pr = prevalence(real)
    out: dict[str, Any] = {}
    sets = {
        "informative": list(pr[(pr >= 0.05) & (pr <= 0.95)].index[:N_COOC]),
        "all": list(pr.index[:N_COOC]),
    }
    for label, concepts in sets.items():
        if len(concepts) < 2:
            out[label] = {"concepts": concepts, "mean_abs_delta_phi": None}
            continue
        ma, mb = presence_matrix(real, concepts), presence_matrix(synth, concepts)
        a, b = phi(ma), phi(mb)
        # A concept every (or no) patient holds has no phi: its pairs are left out, not scored as 0.
        varies = (ma.std(axis=0) > 0) & (mb.std(axis=0) > 0) if len(mb) else ma.std(axis=0) < 0
        iu = np.triu_indices(len(concepts), 1)
        valid = varies[iu[0]] & varies[iu[1]]
        delta = np.abs(a[iu] - b[iu])[valid]
        out[label] = {
            "concepts": concepts,
            "names": [real.concept_names.get(c, c) for c in concepts],
            "pairs_compared": int(valid.sum()),
            "mean_abs_delta_phi": float(delta.mean()) if len(delta) else None,
            "phi_real": a.round(4).tolist(),
            "phi_synthetic": b.round(4).tolist(),
        }
    return out


def events_per_patient(real: CohortData, synth: CohortData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dom in COUNT_DOMAINS:
        a, b = real.domain_counts[dom].to_numpy(), synth.domain_counts[dom].to_numpy()
        ma, mb = (float(a.mean()) if len(a) else 0.0), (float(b.mean()) if len(b) else 0.0)
        out[dom] = {"mean_real": ma, "mean_synthetic": mb, "ratio_of_means": mb / ma if ma else None, "ks": ks(a, b)}
    return out


def measurements(real: CohortData, synth: CohortData) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for c, values in real.measurement_values.items():
        other = synth.measurement_values.get(c, np.array([]))
        per[c] = {
            "name": real.concept_names.get(c, ""),
            "n_real": len(values),
            "n_synthetic": len(other),
            "ks": ks(values, other) if len(other) else 1.0,
        }
    stats_ = [v["ks"] for v in per.values() if v["ks"] is not None]
    return {"median_ks": float(np.median(stats_)) if stats_ else None, "concepts": per}


def _ks_block(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    return {
        "ks": ks(a, b),
        "median_real": float(np.median(a)) if len(a) else None,
        "median_synthetic": float(np.median(b)) if len(b) else None,
    }


def obs_length_days(data: CohortData) -> np.ndarray:
    return (data.persons["obs_end"] - data.persons["obs_start"]).dt.days.dropna().to_numpy(dtype=float)


def death_and_survival(real: CohortData, synth: CohortData) -> dict[str, Any]:
    out: dict[str, Any] = {
        "death_rate_real": float(real.persons["death_date"].notna().mean()) if real.n else None,
        "death_rate_synthetic": float(synth.persons["death_date"].notna().mean()) if synth.n else None,
        "logrank_p": None,
    }
    if real.persons["death_date"].notna().any() or synth.persons["death_date"].notna().any():
        from lifelines.statistics import logrank_test

        ta, ea = survival_times(real)
        tb, eb = survival_times(synth)
        out["logrank_p"] = float(logrank_test(ta, tb, event_observed_A=ea, event_observed_B=eb).p_value)
    return out


def survival_times(data: CohortData) -> tuple[np.ndarray, np.ndarray]:
    """Years from birth to death, censored at the end of observation."""
    p = data.persons
    end = p["death_date"].fillna(p["obs_end"]).fillna(p["obs_start"])
    t = ((end - p["birth_date"]).dt.days / 365.25).to_numpy(dtype=float)
    e = p["death_date"].notna().to_numpy()
    ok = np.isfinite(t) & (t >= 0)
    return t[ok], e[ok]


def fidelity(real: CohortData, synth: CohortData) -> dict[str, Any]:
    """Every fidelity figure of the quality bar, §2."""
    return {
        "demographics": demographics(real, synth),
        "prevalence": prevalence_figures(real, synth),
        "cooccurrence": cooccurrence(real, synth),
        "events_per_patient": events_per_patient(real, synth),
        "measurements": measurements(real, synth),
        "visit_gaps": _ks_block(real.visit_gaps, synth.visit_gaps),
        "diagnosis_to_treatment": _ks_block(real.diag_to_treat, synth.diag_to_treat),
        "calendar": {
            "event_year_tvd": tvd_counts(real.event_years.to_dict(), synth.event_years.to_dict()),
        },
        "observation_length": _ks_block(obs_length_days(real), obs_length_days(synth)),
        "death": death_and_survival(real, synth),
    }
