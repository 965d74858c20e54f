"""Privacy and plausibility safeguards applied whatever the engine: before fit and after sample.

Before fit: implausible persons left out, ages of 90 and over top-coded, concepts held by
fewer than k persons rolled up to an ancestor (``concept_ancestor``) or dropped, continuous
values clipped to the training 0.5-99.5 percentiles, cohorts too small refused.
After sample (see :mod:`rules` and :mod:`nearest`): fresh ids, dates re-anchored, clinical
rules enforced, synthetic persons too near a training person replaced.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from synthcohort.errors import CohortTooSmallError
from synthcohort.generator.chunk import EPOCH
from synthcohort.text import plural

if TYPE_CHECKING:
    from synthcohort.generator.training import TrainingData

log = logging.getLogger(__name__)

TOP_AGE = 90
MIN_YEAR_OF_BIRTH = 1850
CLIP_QUANTILES = (0.005, 0.995)
MIN_PERSONS = 50


def _birth_days(persons: pd.DataFrame) -> np.ndarray:
    years = persons["year_of_birth"].to_numpy(dtype="int64").clip(1, 9999)
    months = persons["m"].to_numpy(dtype="int64").clip(1, 12)
    days = persons["d"].to_numpy(dtype="int64").clip(1, 28)
    stamp = (
        (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (months - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + (days - 1).astype("timedelta64[D]")
    return (stamp - EPOCH).astype(np.int64)


def year_of(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, dtype="int64").astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def rare_to_zero(values: pd.Series, k: int) -> pd.Series:
    """Categories held by fewer than k persons become 0 ('no matching concept')."""
    counts = values.value_counts()
    rare = counts.index[counts < k]
    return values.where(~values.isin(rare), 0)


def _code_keys(df: pd.DataFrame) -> pd.Series:
    # A mapped concept is its own key; an unmapped one (0) is told apart by its source concept.
    return df["concept_id"].where(df["concept_id"] != 0, -df["source_concept_id"])


def _roll_up(
    events: dict[str, pd.DataFrame], ancestors: pa.Table, k: int, report: dict[str, int]
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Give each event a code; rare codes go to the nearest ancestor held by >= k persons, else away."""
    anc = ancestors.select(["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation"]).to_pandas()
    anc = anc[anc["ancestor_concept_id"] != anc["descendant_concept_id"]]
    rows = []
    out: dict[str, pd.DataFrame] = {}
    for domain, df in events.items():
        df = df.copy()
        df["key"] = _code_keys(df)
        held = df.groupby("key")["person_id"].nunique()
        rare = held.index[held < k]
        if len(rare) and len(anc):
            pairs = df.loc[df["key"].isin(rare), ["person_id", "key"]].drop_duplicates()
            cand = pairs.merge(anc, left_on="key", right_on="descendant_concept_id")
            everyone = (
                df[["person_id", "key"]].drop_duplicates().merge(anc, left_on="key", right_on="descendant_concept_id")
            )
            reach = everyone.groupby("ancestor_concept_id")["person_id"].nunique()
            direct = held.reindex(reach.index).fillna(0)
            reach = reach.where(direct == 0, reach.combine(direct, max))
            cand = cand[cand["ancestor_concept_id"].map(reach).fillna(0) >= k]
            best = cand.sort_values(["min_levels_of_separation", "ancestor_concept_id"]).drop_duplicates("key")
            mapping = dict(zip(best["key"], best["ancestor_concept_id"], strict=True))
            moved = df["key"].map(mapping)
            report[f"{domain}_rolled_up"] = int(moved.notna().sum())
            df.loc[moved.notna(), "concept_id"] = moved[moved.notna()].astype("int64")
            df["key"] = df["key"].where(moved.isna(), moved).astype("int64")
            held = df.groupby("key")["person_id"].nunique()
        keep = held.index[held >= k]
        dropped = ~df["key"].isin(keep)
        report[f"{domain}_dropped_rare"] = int(dropped.sum())
        df = df[~dropped].reset_index(drop=True)
        source = df.groupby("key")["source_concept_id"].agg(lambda s: int(s.mode().iloc[0]))
        for key in sorted(keep, key=lambda c: (-int(held[c]), int(c))):
            rows.append((domain, int(key), int(key) if key > 0 else 0, int(source[key]), int(held[key])))
        out[domain] = df
    codes = pd.DataFrame(rows, columns=["domain", "key", "concept_id", "source_concept_id", "persons"])
    codes.index.name = "code"
    for domain, df in out.items():
        lookup = pd.Series(codes.index[codes["domain"] == domain], index=codes.loc[codes["domain"] == domain, "key"])
        df["code"] = df["key"].map(lookup).astype("int64")
        out[domain] = df.drop(columns=["key"])
    return out, codes


def _clip_values(events: dict[str, pd.DataFrame], report: dict[str, int]) -> None:
    for domain, df in events.items():
        if "value_as_number" not in df:
            continue
        values = df["value_as_number"].astype("float64")
        grouped = values.groupby(df["code"])
        lo = grouped.transform(lambda s: s.quantile(CLIP_QUANTILES[0]))
        hi = grouped.transform(lambda s: s.quantile(CLIP_QUANTILES[1]))
        clipped = values.clip(lo, hi)
        report[f"{domain}_values_clipped"] = int(((clipped != values) & values.notna()).sum())
        df["value_as_number"] = clipped


def _vocabulary(vocabulary: pa.Table, ids: set[int]) -> pa.Table:
    wanted = pa.array(sorted(i for i in ids if i), type=pa.int64())
    return vocabulary.filter(pc.is_in(vocabulary["concept_id"], value_set=wanted))


def prepare(
    persons: pd.DataFrame,
    periods: pd.DataFrame,
    deaths: pd.DataFrame,
    visits: pd.DataFrame,
    events: dict[str, pd.DataFrame],
    vocabulary: pa.Table,
    ancestors: pa.Table,
    k: int,
) -> TrainingData:
    """The pre-fit safeguards, in order; returns what an engine may learn from."""
    from synthcohort.generator.training import TrainingData

    report: dict[str, int] = {}
    persons = persons.copy()
    persons["birth_day"] = _birth_days(persons)
    periods = periods.set_index("person_id").reindex(persons["person_id"])
    ref_day = int(np.nanmax(periods["end"].to_numpy(dtype="float64"))) if len(periods) else 0
    ok = (
        (persons["year_of_birth"].to_numpy() >= MIN_YEAR_OF_BIRTH)
        & (persons["birth_day"].to_numpy() <= ref_day)
        & periods["start"].notna().to_numpy()
        & (periods["end"].to_numpy(dtype="float64") >= persons["birth_day"].to_numpy())
    )
    report["persons_left_out_implausible"] = int((~ok).sum())
    persons = persons[ok].reset_index(drop=True)
    members = pd.Index(persons["person_id"])
    if len(persons) < MIN_PERSONS:
        raise CohortTooSmallError(
            f"only {plural(len(persons), 'plausible person')} to learn from; at least {MIN_PERSONS} are needed",
            "use a larger cohort",
        )
    periods = periods.loc[members].reset_index()
    # Ages are those at the end of observation (the last age the data shows, at death for the
    # dead): 90 and over is top-coded there, not at the end of the data, where everyone born
    # long ago, alive or not, would be over 90.
    end_year = year_of(periods["end"].to_numpy())
    old = end_year - year_of(persons["birth_day"].to_numpy()) >= TOP_AGE
    report["ages_top_coded"] = int(old.sum())
    persons.loc[old, "birth_day"] = persons.loc[old, "birth_day"] + (
        (end_year[old] - TOP_AGE - year_of(persons.loc[old, "birth_day"].to_numpy())) * 365.25
    ).astype("int64")
    periods["start"] = np.maximum(periods["start"], persons["birth_day"])
    for col in ("race_concept_id", "ethnicity_concept_id", "gender_concept_id"):
        persons[col] = rare_to_zero(persons[col], k)
    visits = visits[visits["person_id"].isin(members)].reset_index(drop=True)
    visit_types = visits.groupby("concept")["person_id"].nunique()
    report["visits_dropped_rare_type"] = int((~visits["concept"].isin(visit_types.index[visit_types >= k])).sum())
    visits = visits[visits["concept"].isin(visit_types.index[visit_types >= k])].reset_index(drop=True)
    events = {d: e[e["person_id"].isin(members)].reset_index(drop=True) for d, e in events.items()}
    totals = pd.DataFrame({d: e.groupby("person_id").size() for d, e in events.items()}).reindex(members).fillna(0)
    events, codes = _roll_up(events, ancestors, k, report)
    _clip_values(events, report)
    deaths = deaths[deaths["person_id"].isin(members)].reset_index(drop=True)
    if len(deaths) < k:
        report["deaths_withheld_rare"] = len(deaths)
        deaths = deaths.iloc[0:0]
    ids: set[int] = set(codes["concept_id"]) | set(codes["source_concept_id"]) | set(visits["concept"])
    ids |= set(visits["type"].dropna().astype("int64")) | set(deaths["type"].dropna().astype("int64"))
    for col in ("gender_concept_id", "race_concept_id", "ethnicity_concept_id"):
        ids |= set(persons[col])
    for df in events.values():
        for col in ("type", "unit_concept_id", "value_as_concept_id"):
            if col in df:
                ids |= set(df[col].dropna().astype("int64"))
    vocab = _vocabulary(vocabulary, ids)
    used = pa.array(sorted(ids), type=pa.int64())
    anc = ancestors.filter(pc.is_in(ancestors["descendant_concept_id"], value_set=used))
    log.info("pre-fit safeguards: %s", report)
    return TrainingData(
        persons=persons[["person_id", "gender_concept_id", "birth_day", "race_concept_id", "ethnicity_concept_id"]],
        periods=periods,
        deaths=deaths,
        visits=visits,
        events=events,
        totals=totals,
        codes=codes,
        vocabulary=vocab,
        ancestors=anc,
        ref_day=ref_day,
        k=k,
        report=report,
    )
