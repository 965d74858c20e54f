"""The in-memory form of a sampled batch of patients that engines hand to the base class.

A chunk is a dict of pandas DataFrames keyed by CDM table name. Dates are held as day
numbers (days since 1970-01-01, float with NaN for an empty optional date) so that
re-anchoring and rule checks are plain arithmetic; ids are chunk-local integers; the person
table carries ``birth_day`` instead of year/month/day of birth. ``to_arrow`` turns a chunk
into the CDM columns of the store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from synthcohort import cdm

Chunk = dict[str, pd.DataFrame]

# Date columns per table (start, end or None) in a chunk.
DATES: dict[str, tuple[str, str | None]] = {
    "observation_period": ("observation_period_start_date", "observation_period_end_date"),
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "condition_occurrence": ("condition_start_date", "condition_end_date"),
    "drug_exposure": ("drug_exposure_start_date", "drug_exposure_end_date"),
    "procedure_occurrence": ("procedure_date", "procedure_end_date"),
    "measurement": ("measurement_date", None),
    "observation": ("observation_date", None),
    "death": ("death_date", None),
}
EVENT_DOMAINS = ("condition_occurrence", "drug_exposure", "procedure_occurrence", "measurement", "observation")
CONCEPT_COLUMN = {t: c for t, (c, _, _) in cdm.EVENT_TABLES.items()}
EPOCH = np.datetime64("1970-01-01", "D")


def day_number(value: object) -> int:
    """Days since 1970-01-01 of a date-like value."""
    return int((np.datetime64(value, "D") - EPOCH).astype(np.int64))  # type: ignore[call-overload]


def empty_chunk() -> Chunk:
    return {}


def concat(chunks: list[Chunk]) -> Chunk:
    out: Chunk = {}
    names = {name for c in chunks for name in c}
    for name in names:
        parts = [c[name] for c in chunks if name in c and len(c[name])]
        out[name] = pd.concat(parts, ignore_index=True) if parts else next(c[name] for c in chunks if name in c)
    return out


def select_persons(chunk: Chunk, keep: np.ndarray) -> Chunk:
    """Rows of the chunk that belong to the persons whose local ids are in ``keep``."""
    keep_set = pd.Index(keep)
    out: Chunk = {}
    for name, df in chunk.items():
        mask = df["person_id"].isin(keep_set).to_numpy()
        whole = mask.all() and isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
        # Every row kept: the table itself, not a copy (most rounds reject nobody).
        out[name] = df if whole else df[mask].reset_index(drop=True)
    return out


def _date_array(values: pd.Series) -> pa.Array:
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    mask = np.isnan(arr)
    days = np.where(mask, 0, arr).astype(np.int32)
    return pa.array(days, type=pa.date32(), mask=mask)


def to_arrow(name: str, df: pd.DataFrame) -> pa.Table:
    """CDM columns of one chunk table (dates back to DATE, birth_day to year/month/day)."""
    spec = cdm.table(name)
    columns: dict[str, pa.Array] = {}
    if name == "person":
        birth = df["birth_day"].to_numpy(dtype="int64").astype("datetime64[D]")
        years = birth.astype("datetime64[Y]")
        months = birth.astype("datetime64[M]")
        columns["year_of_birth"] = pa.array(years.astype(np.int64) + 1970)
        columns["month_of_birth"] = pa.array((months - years).astype(np.int64) + 1)
        columns["day_of_birth"] = pa.array((birth - months).astype(np.int64) + 1)
    date_cols = set(DATES.get(name, ())) - {None}
    for col in df.columns:
        if col == "birth_day" or col not in spec.column_names:
            continue
        if col in date_cols:
            columns[col] = _date_array(df[col])
        else:
            columns[col] = pa.array(df[col].to_numpy(), from_pandas=True)
    return pa.table(columns)
