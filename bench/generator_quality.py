"""Quality of a synthetic store against its training and control stores (quality-bar sections 2 and 3).

A small stand-alone measure used while the evaluation module is not there:
    python bench/generator_quality.py SYNTH.duckdb [--train T.duckdb --control C.duckdb]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

DOMAINS = {
    "condition_occurrence": ("condition_concept_id", "condition_start_date"),
    "drug_exposure": ("drug_concept_id", "drug_exposure_start_date"),
    "procedure_occurrence": ("procedure_concept_id", "procedure_date"),
    "measurement": ("measurement_concept_id", "measurement_date"),
    "observation": ("observation_concept_id", "observation_date"),
}


class Store:
    def __init__(self, path: str) -> None:
        self.con = duckdb.connect(path, read_only=True)
        self.n = int(self.q("SELECT count(*) AS n FROM person")["n"][0])

    def q(self, sql: str) -> pd.DataFrame:
        return self.con.sql(sql).to_arrow_table().to_pandas()

    def meta(self, key: str) -> str | None:
        df = self.q(f"SELECT value FROM synthcohort_meta WHERE key = '{key}'")
        return str(df["value"][0]) if len(df) else None

    def persons(self) -> pd.DataFrame:
        return self.q(
            "SELECT p.person_id, gender_concept_id, race_concept_id, year_of_birth, "
            "year(max(observation_period_end_date)) AS end_year FROM person p "
            "LEFT JOIN observation_period o USING (person_id) GROUP BY ALL ORDER BY person_id"
        )

    def presence(self) -> pd.DataFrame:
        parts = [
            f"SELECT DISTINCT person_id, '{t[:4]}:' || {c} AS code FROM {t} WHERE {c} <> 0"
            for t, (c, _) in DOMAINS.items()
        ]
        return self.q(" UNION ALL ".join(parts))

    def per_person(self, table: str) -> np.ndarray:
        df = self.q(
            f"SELECT p.person_id, count(t.person_id) AS n FROM person p "
            f"LEFT JOIN {table} t USING (person_id) GROUP BY 1"
        )
        return df["n"].to_numpy()

    def gaps(self) -> np.ndarray:
        df = self.q(
            "SELECT visit_start_date - lag(visit_start_date) "
            "OVER (PARTITION BY person_id ORDER BY visit_start_date) AS g "
            "FROM visit_occurrence"
        )
        return df["g"].dropna().to_numpy(dtype=float)


def tvd(a: pd.Series, b: pd.Series) -> float:
    pa_, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    idx = pa_.index.union(pb.index)
    return float(0.5 * (pa_.reindex(idx, fill_value=0) - pb.reindex(idx, fill_value=0)).abs().sum())


def age_bins(p: pd.DataFrame, ref: int) -> pd.Series:
    return ((ref - p["year_of_birth"]).clip(0, 200) // 5).astype(int)


def matrix(store: Store, codes: list[str]) -> pd.DataFrame:
    pres = store.presence()
    pres = pres[pres["code"].isin(codes)]
    m = pd.crosstab(pres["person_id"], pres["code"]).clip(upper=1)
    return m.reindex(index=store.persons()["person_id"], columns=codes, fill_value=0).fillna(0)


def features(store: Store, codes: list[str], ref: int) -> np.ndarray:
    p = store.persons()
    m = matrix(store, codes).to_numpy(dtype=float)
    demo = np.column_stack([(p["gender_concept_id"] == 8507).astype(float), (ref - p["year_of_birth"]) / 10.0])
    return np.hstack([demo, m])


def evaluate(synth: Store, train: Store, control: Store) -> dict[str, float]:
    out: dict[str, float] = {}
    pt, ps = train.persons(), synth.persons()
    ref = int(train.q("SELECT year(max(visit_start_date)) AS y FROM visit_occurrence")["y"][0])
    out["age_tvd"] = tvd(age_bins(pt, ref), age_bins(ps, ref))
    out["gender_tvd"] = tvd(pt["gender_concept_id"], ps["gender_concept_id"])
    out["race_tvd"] = tvd(pt["race_concept_id"], ps["race_concept_id"])
    prt, prs = train.presence(), synth.presence()
    prev_t = prt.groupby("code")["person_id"].nunique() / train.n
    prev_s = prs.groupby("code")["person_id"].nunique() / synth.n
    held = prev_t[prev_t * train.n >= 10]
    s = prev_s.reindex(held.index).fillna(0)
    out["prevalence_r"] = float(np.corrcoef(held, s)[0, 1])
    out["prevalence_missing"] = float((s == 0).mean())
    informative = held[(held >= 0.05) & (held <= 0.95)].sort_values(ascending=False).index[:30].tolist()
    top = held.sort_values(ascending=False).index[:30].tolist()
    for name, codes in (("cooc_informative", informative), ("cooc_top30", top)):
        mt, ms = matrix(train, codes), matrix(synth, codes)
        ct = np.nan_to_num(np.corrcoef(mt.to_numpy(dtype=float).T))
        cs = np.nan_to_num(np.corrcoef(ms.to_numpy(dtype=float).T))
        iu = np.triu_indices(len(codes), 1)
        out[f"{name}_abs_dphi"] = float(np.abs(ct[iu] - cs[iu]).mean())
    for table in ("visit_occurrence", *DOMAINS):
        a, b = train.per_person(table), synth.per_person(table)
        out[f"events_{table}_ratio"] = float(b.mean() / max(a.mean(), 1e-9))
        out[f"events_{table}_ks"] = float(ks_2samp(a, b).statistic)
    out["visit_gap_ks"] = float(ks_2samp(train.gaps(), synth.gaps()).statistic)
    top_m = train.q(
        "SELECT measurement_concept_id AS c FROM measurement WHERE measurement_concept_id <> 0 "
        "GROUP BY 1 ORDER BY count(*) DESC LIMIT 20"
    )["c"].tolist()
    kss = []
    for c in top_m:
        sql = (
            "SELECT value_as_number AS v FROM measurement "
            f"WHERE measurement_concept_id = {int(c)} AND value_as_number IS NOT NULL"
        )
        a, b = train.q(sql)["v"].to_numpy(), synth.q(sql)["v"].to_numpy()
        if len(a) and len(b):
            kss.append(ks_2samp(a, b).statistic)
    out["measurement_ks_median"] = float(np.median(kss)) if kss else float("nan")
    # Utility: predict the most informative condition from age, sex and the other concepts.
    codes = [c for c in informative]
    target = next(c for c in informative if c.startswith("cond"))
    feats = [c for c in codes if c != target]

    def xy(store: Store) -> tuple[np.ndarray, np.ndarray]:
        full = features(store, [target, *feats], ref)
        return np.delete(full, 2, axis=1), full[:, 2]

    xt, yt = xy(train)
    xs, ys = xy(synth)
    xc, yc = xy(control)
    auc_real = roc_auc_score(yc, LogisticRegression(max_iter=2000).fit(xt, yt).predict_proba(xc)[:, 1])
    auc_syn = roc_auc_score(yc, LogisticRegression(max_iter=2000).fit(xs, ys).predict_proba(xc)[:, 1])
    out["tstr_trtr"] = float(auc_syn / auc_real)
    # Privacy: distance to closest record, training vs control.
    codes = held.index.tolist()
    ft, fs, fc = features(train, codes, ref), features(synth, codes, ref), features(control, codes, ref)
    n = min(len(ft), len(fc))
    rng = np.random.default_rng(0)
    ft = ft[rng.permutation(len(ft))[:n]]
    fc = fc[rng.permutation(len(fc))[:n]]
    dt = NearestNeighbors(n_neighbors=1).fit(ft).kneighbors(fs)[0][:, 0]
    dc = NearestNeighbors(n_neighbors=1).fit(fc).kneighbors(fs)[0][:, 0]
    out["dcr_share_closer_to_train"] = float(((dt < dc) + 0.5 * (dt == dc)).mean())
    out["exact_copies"] = float(
        (NearestNeighbors(n_neighbors=1).fit(features(train, codes, ref)).kneighbors(fs)[0][:, 0] == 0).sum()
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("synth")
    ap.add_argument("--train")
    ap.add_argument("--control")
    args = ap.parse_args(argv)
    synth = Store(args.synth)
    train = Store(args.train or synth.meta("train_store") or "")
    control = Store(args.control or synth.meta("control_store") or "")
    figures = evaluate(synth, train, control)
    json.dump(figures, sys.stdout, indent=1)
    print()
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "generator_quality.json").write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
