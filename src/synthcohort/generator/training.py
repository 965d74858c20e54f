"""Training data: a training store read into per-person frames after the pre-fit safeguards."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from synthcohort import cdm
from synthcohort.cohort import CohortStore
from synthcohort.generator import safeguards
from synthcohort.generator.chunk import EPOCH, EVENT_DOMAINS

log = logging.getLogger(__name__)

# Per event table: (concept, source concept, start, end or None, type, value columns)
EVENT_COLUMNS: dict[str, tuple[str, str, str, str | None, str, tuple[str, ...]]] = {
    "condition_occurrence": (
        "condition_concept_id",
        "condition_source_concept_id",
        "condition_start_date",
        "condition_end_date",
        "condition_type_concept_id",
        (),
    ),
    "drug_exposure": (
        "drug_concept_id",
        "drug_source_concept_id",
        "drug_exposure_start_date",
        "drug_exposure_end_date",
        "drug_type_concept_id",
        (),
    ),
    "procedure_occurrence": (
        "procedure_concept_id",
        "procedure_source_concept_id",
        "procedure_date",
        "procedure_end_date",
        "procedure_type_concept_id",
        (),
    ),
    "measurement": (
        "measurement_concept_id",
        "measurement_source_concept_id",
        "measurement_date",
        None,
        "measurement_type_concept_id",
        ("value_as_number", "unit_concept_id", "value_as_concept_id"),
    ),
    "observation": (
        "observation_concept_id",
        "observation_source_concept_id",
        "observation_date",
        None,
        "observation_type_concept_id",
        ("value_as_number", "unit_concept_id", "value_as_concept_id"),
    ),
}


@dataclass
class TrainingData:
    """What an engine learns from: one row per person, events with a code per (domain, concept)."""

    persons: pd.DataFrame  # person_id, gender_concept_id, birth_day, race_concept_id, ethnicity_concept_id
    periods: pd.DataFrame  # person_id, start, end (day numbers; one span per person)
    deaths: pd.DataFrame  # person_id, day, type
    visits: pd.DataFrame  # person_id, visit_occurrence_id, concept, start, end, type
    events: dict[str, pd.DataFrame]  # domain -> person_id, visit_occurrence_id, code, start, end, type, values
    totals: pd.DataFrame  # person_id x domain: raw event counts before rare codes were removed
    codes: pd.DataFrame  # code, domain, concept_id, source_concept_id, persons (after roll-up)
    vocabulary: pa.Table  # concept rows for every concept the data may emit
    ancestors: pa.Table  # concept_ancestor rows among those concepts
    ref_day: int  # last day of observation in the training data
    k: int
    report: dict[str, int] = field(default_factory=dict)

    @property
    def n_persons(self) -> int:
        return len(self.persons)


def _days(series: pd.Series) -> pd.Series:
    values = pd.to_datetime(series).to_numpy(dtype="datetime64[D]")
    out = (values - EPOCH).astype("float64")
    out[np.isnat(values)] = np.nan
    return pd.Series(out, index=series.index)


def _frame(store: CohortStore, sql: str) -> pd.DataFrame:
    return store.query_arrow(sql).to_pandas()


def load_training(store: CohortStore, k: int) -> TrainingData:
    """Read a training store and apply the pre-fit safeguards (size, top-coding, roll-up, clipping).

    Every read has an ORDER BY on a unique key: without one DuckDB may return rows in a different
    order from run to run, and the order of rows reaches the model (ties in counts, first values).
    """
    persons = _frame(
        store,
        "SELECT person_id, gender_concept_id, year_of_birth, coalesce(month_of_birth, 7) AS m, "
        "coalesce(day_of_birth, 1) AS d, coalesce(race_concept_id, 0) AS race_concept_id, "
        "coalesce(ethnicity_concept_id, 0) AS ethnicity_concept_id FROM person ORDER BY person_id",
    )
    periods = _frame(
        store,
        "SELECT person_id, min(observation_period_start_date) AS start, max(observation_period_end_date) AS end "
        "FROM observation_period GROUP BY person_id ORDER BY person_id",
    )
    visits = _frame(
        store,
        "SELECT person_id, visit_occurrence_id, visit_concept_id AS concept, visit_start_date AS start, "
        "coalesce(visit_end_date, visit_start_date) AS end, visit_type_concept_id AS type FROM visit_occurrence "
        "ORDER BY visit_occurrence_id",
    )
    deaths = _frame(
        store,
        "SELECT person_id, min(death_date) AS day, min(death_type_concept_id) AS type FROM death GROUP BY person_id "
        "ORDER BY person_id",
    )
    events: dict[str, pd.DataFrame] = {}
    for domain in EVENT_DOMAINS:
        concept, source, start, end, typ, values = EVENT_COLUMNS[domain]
        extra = "".join(f', "{v}"' for v in values)
        events[domain] = _frame(
            store,
            f'SELECT person_id, visit_occurrence_id, coalesce("{concept}", 0) AS concept_id, '
            f'coalesce("{source}", 0) AS source_concept_id, "{start}" AS start, '
            f'{f"{chr(34)}{end}{chr(34)}" if end else "NULL"} AS end, coalesce("{typ}", 0) AS type{extra} '
            f'FROM "{domain}" WHERE "{start}" IS NOT NULL ORDER BY "{cdm.table(domain).primary_key}"',
        )
    for df, cols in [(periods, ("start", "end")), (visits, ("start", "end")), (deaths, ("day",))] + [
        (e, ("start", "end")) for e in events.values()
    ]:
        for col in cols:
            df[col] = _days(df[col])
    # Observation span: the recorded period, else the span of the person's events.
    spans = pd.concat([v[["person_id", "start"]] for v in (visits, *events.values())], ignore_index=True)
    span = spans.groupby("person_id")["start"].agg(["min", "max"])
    periods = periods.set_index("person_id").reindex(persons["person_id"])
    periods["start"] = periods["start"].fillna(span["min"])
    periods["end"] = periods["end"].fillna(span["max"])
    periods = periods.reset_index()
    vocabulary = store.query_arrow("SELECT * FROM concept ORDER BY ALL")
    ancestors = store.query_arrow("SELECT * FROM concept_ancestor ORDER BY ALL")
    return safeguards.prepare(persons, periods, deaths, visits, events, vocabulary, ancestors, k)
