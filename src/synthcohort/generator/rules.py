"""Clinical rules enforced on every sampled chunk, whatever the engine, with counts of what was fixed."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pandas as pd

from synthcohort.generator.chunk import DATES, EVENT_DOMAINS, Chunk, day_number
from synthcohort.generator.safeguards import MIN_YEAR_OF_BIRTH


def _bounds(chunk: Chunk) -> pd.DataFrame:
    person = chunk["person"].set_index("person_id")
    bounds = pd.DataFrame(index=person.index)
    bounds["birth"] = person["birth_day"].astype("float64")
    death = chunk.get("death")
    bounds["death"] = np.inf
    if death is not None and len(death):
        bounds.loc[death["person_id"], "death"] = death["death_date"].to_numpy(dtype="float64")
    return bounds


def enforce(chunk: Chunk, today: int | None = None, counts: Counter[str] | None = None) -> Chunk:
    """Birth <= events <= death, start <= end, events inside the observation period, visits exist.

    Dates out of bounds are moved to the nearest bound; events that point to no visit lose
    the reference; persons born before 1850 or after ``today`` are removed. Each fix is counted.
    """
    counts = counts if counts is not None else Counter()
    today = today if today is not None else day_number(dt.date.today())
    person = chunk["person"]
    low = day_number(f"{MIN_YEAR_OF_BIRTH}-01-01")
    sane = person["birth_day"].between(low, today)
    counts["persons_removed_year_of_birth"] += int((~sane).sum())
    if not sane.all():
        keep = pd.Index(person.loc[sane, "person_id"])
        chunk = {n: df[df["person_id"].isin(keep)].reset_index(drop=True) for n, df in chunk.items()}
    bounds = _bounds(chunk)
    if len(chunk["death"]):
        death = chunk["death"]
        birth = bounds.loc[death["person_id"], "birth"].to_numpy()
        counts["death_before_birth"] += int((death["death_date"] < birth).sum())
        death["death_date"] = np.maximum(death["death_date"].to_numpy(dtype="float64"), birth)
        bounds = _bounds(chunk)
    # Observation period: one per person, inside birth..death, covering every event.
    period = chunk["observation_period"].drop_duplicates("person_id").set_index("person_id")
    period = period.reindex(bounds.index)
    starts = (
        [chunk["visit_occurrence"].set_index("person_id")["visit_start_date"]] if "visit_occurrence" in chunk else []
    )
    starts += [chunk[t].set_index("person_id")[DATES[t][0]] for t in EVENT_DOMAINS if t in chunk]
    span = pd.concat(starts).groupby(level=0).agg(["min", "max"]) if starts else pd.DataFrame(columns=["min", "max"])
    span = span.reindex(bounds.index)
    start_col, end_col = DATES["observation_period"]
    missing = period[start_col].isna()
    counts["observation_periods_added"] += int(missing.sum())
    lo = bounds["birth"]
    hi = np.minimum(bounds["death"], today)
    start = period[start_col].fillna(span["min"]).fillna(lo)
    end = period[end_col].fillna(span["max"]).fillna(start)
    new_start = start.clip(lo, hi)
    new_end = end.clip(lo, hi).combine(new_start, max)
    counts["observation_periods_fixed"] += int((((new_start != start) | (new_end != end)) & ~missing).sum())
    chunk["observation_period"] = pd.DataFrame(
        {"person_id": bounds.index.to_numpy(), start_col: new_start.to_numpy(), end_col: new_end.to_numpy()}
    ).merge(period.drop(columns=[start_col, end_col]).reset_index(), on="person_id", how="left")
    op_lo = new_start
    op_hi = new_end
    visits = chunk.get("visit_occurrence")
    owner = (
        pd.Series(visits["person_id"].to_numpy(), index=visits["visit_occurrence_id"].to_numpy())
        if visits is not None
        else None
    )
    for name in ("visit_occurrence", *EVENT_DOMAINS):
        if name not in chunk or not len(chunk[name]):
            continue
        df = chunk[name]
        s_col, e_col = DATES[name]
        plo = op_lo.reindex(df["person_id"]).to_numpy()
        phi = op_hi.reindex(df["person_id"]).to_numpy()
        s = df[s_col].to_numpy(dtype="float64")
        fixed_s = np.clip(s, plo, phi)
        counts[f"{name}_start_moved_into_period"] += int((fixed_s != s).sum())
        df[s_col] = fixed_s
        if e_col is not None and e_col in df:
            e = df[e_col].to_numpy(dtype="float64")
            fixed_e = np.where(np.isnan(e), e, np.clip(e, fixed_s, phi))
            counts[f"{name}_end_fixed"] += int(((fixed_e != e) & ~np.isnan(e)).sum())
            df[e_col] = fixed_e
        if name != "visit_occurrence" and "visit_occurrence_id" in df and owner is not None:
            ref = df["visit_occurrence_id"]
            dangling = ref.notna() & (ref.map(owner).to_numpy() != df["person_id"].to_numpy())
            counts[f"{name}_visit_reference_removed"] += int(dangling.sum())
            df["visit_occurrence_id"] = ref.where(~dangling)
    return chunk
