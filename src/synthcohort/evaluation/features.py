"""Read the compact views evaluation works on from a cohort store: persons, person-concept facts, samples."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from synthcohort.cohort import CohortStore

log = logging.getLogger(__name__)

# domain name -> (table, concept column, source concept column, start date column)
DOMAINS: dict[str, tuple[str, str, str, str]] = {
    "condition": (
        "condition_occurrence",
        "condition_concept_id",
        "condition_source_concept_id",
        "condition_start_date",
    ),
    "drug": ("drug_exposure", "drug_concept_id", "drug_source_concept_id", "drug_exposure_start_date"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_source_concept_id", "procedure_date"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_source_concept_id", "measurement_date"),
    "observation": ("observation", "observation_concept_id", "observation_source_concept_id", "observation_date"),
}
COUNT_DOMAINS = ("visit", *DOMAINS)
LOCAL_CONCEPT_MIN = 2_000_000_000
SAMPLE_CAP = 50_000


def _concept_key(id_col: str, source_col: str) -> str:
    """SQL for the cross-store concept key: the concept, else its source concept; local ones by code."""
    raw = f'coalesce(nullif("{id_col}", 0), nullif("{source_col}", 0), 0)'
    return (
        f"CASE WHEN {raw} >= {LOCAL_CONCEPT_MIN} THEN coalesce((SELECT k.vocabulary_id || ':' || k.concept_code "
        f"FROM concept k WHERE k.concept_id = {raw}), 'local:' || {raw}) ELSE CAST({raw} AS VARCHAR) END"
    )


@dataclass
class CohortData:
    """Everything evaluation needs from one store, aggregated per person (never raw rows of every table)."""

    name: str
    persons: pd.DataFrame  # person_id, gender, race, ethnicity, birth_date, obs_start, obs_end, death_date
    facts: pd.DataFrame  # person_id, domain, concept, n, first_date
    domain_counts: pd.DataFrame  # index person_id, one column per domain in COUNT_DOMAINS
    visit_gaps: np.ndarray
    diag_to_treat: np.ndarray
    event_years: pd.Series  # year -> count of events
    measurement_values: dict[str, np.ndarray] = field(default_factory=dict)
    concept_names: dict[str, str] = field(default_factory=dict)
    open_ended: dict[str, float] = field(default_factory=dict)  # condition -> share of rows with no end date

    @property
    def n(self) -> int:
        return len(self.persons)

    def subset(self, person_ids: np.ndarray, name: str | None = None) -> CohortData:
        """The same views for a subset of persons (samples of visit gaps etc. are kept whole)."""
        keep = set(int(i) for i in person_ids)
        persons = self.persons[self.persons.person_id.isin(keep)].reset_index(drop=True)
        return CohortData(
            name=name or self.name,
            persons=persons,
            facts=self.facts[self.facts.person_id.isin(keep)].reset_index(drop=True),
            domain_counts=self.domain_counts.loc[persons.person_id],
            visit_gaps=self.visit_gaps,
            diag_to_treat=self.diag_to_treat,
            event_years=self.event_years,
            measurement_values=self.measurement_values,
            concept_names=self.concept_names,
            open_ended=self.open_ended,
        )


def query(store: CohortStore, sql: str) -> pa.Table:
    """Run a query on a fresh cursor (a pending result on the store's own connection cannot block it)."""
    cur = store.con.cursor()
    try:
        return cur.sql(sql).to_arrow_table()
    finally:
        cur.close()


def _df(store: CohortStore, sql: str) -> pd.DataFrame:
    return query(store, sql).to_pandas()


def _persons(store: CohortStore) -> pd.DataFrame:
    """One row per person, ordered by content (ids are salted per extraction; seeded draws must not see them)."""
    spans = " UNION ALL ".join(
        f'SELECT person_id, min("{d}") lo, max("{d}") hi FROM "{t}" GROUP BY 1'
        for t, _, _, d in [*DOMAINS.values(), ("visit_occurrence", "", "", "visit_start_date")]
    )
    sql = f"""
        WITH op AS (SELECT person_id, min(observation_period_start_date) s, max(observation_period_end_date) e
                    FROM observation_period GROUP BY 1),
             ev AS (SELECT person_id, min(lo) s, max(hi) e FROM ({spans}) GROUP BY 1),
             dd AS (SELECT person_id, min(death_date) d FROM death GROUP BY 1)
        SELECT p.person_id, coalesce(p.gender_concept_id, 0) AS gender, coalesce(p.race_concept_id, 0) AS race,
               coalesce(p.ethnicity_concept_id, 0) AS ethnicity,
               coalesce(CAST(p.birth_datetime AS DATE),
                        try_cast(make_date(p.year_of_birth, coalesce(p.month_of_birth, 7),
                                           coalesce(p.day_of_birth, 1)) AS DATE)) AS birth_date,
               CAST(coalesce(op.s, ev.s) AS DATE) AS obs_start, CAST(coalesce(op.e, ev.e) AS DATE) AS obs_end,
               CAST(dd.d AS DATE) AS death_date
        FROM person p LEFT JOIN op USING (person_id) LEFT JOIN ev USING (person_id) LEFT JOIN dd USING (person_id)
        ORDER BY birth_date, gender, race, ethnicity, obs_start, obs_end, death_date, p.person_id
    """
    df = _df(store, sql)
    for col in ("birth_date", "obs_start", "obs_end", "death_date"):
        df[col] = pd.to_datetime(df[col])
    return df


def _facts(store: CohortStore) -> pd.DataFrame:
    parts = [
        f"SELECT person_id, '{dom}' AS domain, {_concept_key(cid, sid)} AS concept, count(*) AS n, "
        f'CAST(min("{d}") AS DATE) AS first_date FROM "{t}" GROUP BY ALL'
        for dom, (t, cid, sid, d) in DOMAINS.items()
    ]
    df = _df(
        store, f"SELECT * FROM ({' UNION ALL '.join(parts)}) WHERE concept <> '0' ORDER BY person_id, domain, concept"
    )
    df["first_date"] = pd.to_datetime(df["first_date"])
    df["domain"] = df["domain"].astype("category")
    return df


def _domain_counts(store: CohortStore, person_ids: pd.Series) -> pd.DataFrame:
    tables = {"visit": "visit_occurrence", **{k: v[0] for k, v in DOMAINS.items()}}
    parts = [f"SELECT person_id, '{dom}' AS domain, count(*) AS n FROM \"{t}\" GROUP BY 1" for dom, t in tables.items()]
    long = _df(store, " UNION ALL ".join(parts))
    wide = long.pivot_table(index="person_id", columns="domain", values="n", aggfunc="sum", fill_value=0)
    return wide.reindex(index=person_ids.to_numpy(), columns=list(COUNT_DOMAINS), fill_value=0).astype(float)


def _sampled(store: CohortStore, sql: str, column: str) -> np.ndarray:
    arr = query(store, f"SELECT {column} FROM ({sql}) WHERE {column} IS NOT NULL ORDER BY hash(rid) LIMIT {SAMPLE_CAP}")
    return np.asarray(arr.column(0).to_numpy(zero_copy_only=False), dtype=float)


def _visit_gaps(store: CohortStore) -> np.ndarray:
    sql = """SELECT visit_occurrence_id AS rid, datediff('day', lag(visit_start_date) OVER
               (PARTITION BY person_id ORDER BY visit_start_date, visit_occurrence_id), visit_start_date) AS gap
             FROM visit_occurrence"""
    return _sampled(store, sql, "gap")


def _diag_to_treat(store: CohortStore) -> np.ndarray:
    t, cid, sid, d = DOMAINS["condition"]
    sql = f"""WITH c AS (SELECT person_id, {_concept_key(cid, sid)} AS concept, CAST(min("{d}") AS DATE) AS d
                         FROM "{t}" GROUP BY ALL),
                   r AS (SELECT person_id, CAST(drug_exposure_start_date AS DATE) AS d FROM drug_exposure)
              SELECT hash(c.person_id, c.concept) AS rid, datediff('day', c.d, r.d) AS days
              FROM c ASOF JOIN r ON c.person_id = r.person_id AND r.d >= c.d"""
    return _sampled(store, sql, "days")


def _event_years(store: CohortStore) -> pd.Series:
    parts = [f'SELECT year("{d}") AS y FROM "{t}"' for t, _, _, d in DOMAINS.values()]
    df = _df(store, f"SELECT y, count(*) AS n FROM ({' UNION ALL '.join(parts)}) WHERE y IS NOT NULL GROUP BY 1")
    return pd.Series(df["n"].to_numpy(), index=df["y"].astype(int).to_numpy()).sort_index()


def measurement_values(store: CohortStore, concepts: list[str]) -> dict[str, np.ndarray]:
    """Values (value_as_number) of the given measurement concepts, a bounded sample each."""
    if not concepts:
        return {}
    t, cid, sid, _ = DOMAINS["measurement"]
    keys = ", ".join("'" + c.replace("'", "''") + "'" for c in concepts)
    sql = f"""SELECT concept, value FROM (
                SELECT {_concept_key(cid, sid)} AS concept, value_as_number AS value, measurement_id AS rid
                FROM "{t}" WHERE value_as_number IS NOT NULL)
              WHERE concept IN ({keys})
              QUALIFY row_number() OVER (PARTITION BY concept ORDER BY hash(rid)) <= {SAMPLE_CAP}"""
    df = _df(store, sql)
    return {str(k): g["value"].to_numpy(dtype=float) for k, g in df.groupby("concept")}


def top_measurement_concepts(store: CohortStore, k: int = 20) -> list[str]:
    t, cid, sid, _ = DOMAINS["measurement"]
    sql = f"""SELECT {_concept_key(cid, sid)} AS concept, count(*) AS n FROM "{t}"
              WHERE value_as_number IS NOT NULL GROUP BY 1 HAVING concept <> '0' ORDER BY n DESC, concept LIMIT {k}"""
    return [str(c) for c in _df(store, sql)["concept"]]


def _open_ended(store: CohortStore) -> dict[str, float]:
    """Per condition, the share of its rows without an end date (chronic conditions stay open)."""
    t, cid, sid, _ = DOMAINS["condition"]
    df = _df(
        store,
        f"""SELECT {_concept_key(cid, sid)} AS concept, avg(CASE WHEN condition_end_date IS NULL THEN 1 ELSE 0 END) AS s
            FROM "{t}" GROUP BY 1""",
    )
    return dict(zip(df["concept"].astype(str), df["s"].astype(float), strict=True))


def _concept_names(store: CohortStore) -> dict[str, str]:
    df = _df(
        store,
        f"""SELECT CASE WHEN concept_id >= {LOCAL_CONCEPT_MIN} THEN vocabulary_id || ':' || concept_code
                        ELSE CAST(concept_id AS VARCHAR) END AS key, concept_name FROM concept""",
    )
    return dict(zip(df["key"].astype(str), df["concept_name"].fillna("").astype(str), strict=True))


def load(store: CohortStore, name: str, measurement_concepts: list[str] | None = None) -> CohortData:
    """Read one store's evaluation views (a few aggregate queries; DuckDB does the work)."""
    persons = _persons(store)
    data = CohortData(
        name=name,
        persons=persons,
        facts=_facts(store),
        domain_counts=_domain_counts(store, persons["person_id"]),
        visit_gaps=_visit_gaps(store),
        diag_to_treat=_diag_to_treat(store),
        event_years=_event_years(store),
        concept_names=_concept_names(store),
        open_ended=_open_ended(store),
    )
    if measurement_concepts is not None:
        data.measurement_values = measurement_values(store, measurement_concepts)
    log.info("%s: %d persons, %d person-concept facts", name, data.n, len(data.facts))
    return data
