"""Build the known-case stores of the evaluation tests from the session store of synthea-omop-1k-split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from synthcohort import cdm
from synthcohort.cohort import CohortStore

EVENT_CONCEPTS = {
    "condition_occurrence": ("condition_concept_id", "condition_source_concept_id"),
    "drug_exposure": ("drug_concept_id", "drug_source_concept_id"),
    "procedure_occurrence": ("procedure_concept_id", "procedure_source_concept_id"),
    "measurement": ("measurement_concept_id", "measurement_source_concept_id"),
    "observation": ("observation_concept_id", "observation_source_concept_id"),
}


def _read(src: CohortStore, sql: str) -> pa.Table:
    cur = src.con.cursor()
    try:
        return cur.sql(sql).to_arrow_table()
    finally:
        cur.close()


# A person's fingerprint from content alone: the store's ids are salted afresh on every extraction,
# so a split by id would take other patients in every test session.
_CONTENT_ORDER = """
    WITH ev AS (
        SELECT person_id, sum(hash(condition_concept_id, condition_start_date)) AS h
        FROM condition_occurrence GROUP BY 1
        UNION ALL
        SELECT person_id, sum(hash(drug_concept_id, drug_exposure_start_date)) FROM drug_exposure GROUP BY 1
        UNION ALL
        SELECT person_id, sum(hash(measurement_concept_id, measurement_date, value_as_number))
        FROM measurement GROUP BY 1
        UNION ALL
        SELECT person_id, sum(hash(visit_concept_id, visit_start_date)) FROM visit_occurrence GROUP BY 1)
    SELECT p.person_id FROM person p LEFT JOIN (SELECT person_id, sum(h) AS h FROM ev GROUP BY 1) e USING (person_id)
    ORDER BY hash(p.gender_concept_id, p.race_concept_id, p.year_of_birth, p.birth_datetime, coalesce(e.h, 0)),
             p.year_of_birth, p.person_id
"""


def split_ids(src_path: Path, parts: int, seed: int) -> list[np.ndarray]:
    """``parts`` disjoint random sets of persons; the same patients every time for the same seed."""
    with CohortStore.open(src_path) as src:
        ids = np.asarray(_read(src, _CONTENT_ORDER).column(0).to_numpy())
    return [np.sort(p) for p in np.array_split(ids[np.random.default_rng(seed).permutation(len(ids))], parts)]


def subset_store(
    src_path: Path,
    dst: Path,
    person_ids: np.ndarray,
    meta: dict[str, str],
    shuffle_concepts_seed: int | None = None,
) -> Path:
    """Copy the given persons (all clinical tables) and the vocabulary into a new store.

    With ``shuffle_concepts_seed`` every event's concept is permuted across the rows of its table:
    each patient keeps the number and dates of events, but which concept they are is random.
    """
    id_list = ",".join(str(int(i)) for i in person_ids)
    rng = np.random.default_rng(shuffle_concepts_seed)
    with CohortStore.open(src_path) as src, CohortStore.building(dst) as out:
        order = np.asarray(_read(src, _CONTENT_ORDER).column(0).to_numpy())
        rank = {int(pid): i for i, pid in enumerate(order)}
        case = " ".join(f"WHEN {int(pid)} THEN {rank[int(pid)]}" for pid in person_ids)
        for table in cdm.CLINICAL_TABLES:
            # rows in an order fixed by content, so the shuffle is the same whatever the ids
            sort = f"CASE person_id {case} END" if len(person_ids) else "person_id"
            if table in EVENT_CONCEPTS:
                start = cdm.EVENT_TABLES[table][1]
                sort += f', "{start}", ' + ", ".join(f'"{c}"' for c in EVENT_CONCEPTS[table])
            data = _read(src, f'SELECT * FROM "{table}" WHERE person_id IN ({id_list}) ORDER BY {sort}')
            if shuffle_concepts_seed is not None and table in EVENT_CONCEPTS and data.num_rows:
                order = rng.permutation(data.num_rows)
                for col in EVENT_CONCEPTS[table]:
                    i = data.schema.get_field_index(col)
                    data = data.set_column(i, col, data.column(col).take(pa.array(order)))
            out.append(table, data)
        for table in cdm.VOCABULARY_TABLES:
            data = _read(src, f'SELECT * FROM "{table}"')
            if data.num_rows:
                out.append(table, data)
        for key, value in meta.items():
            out.set_meta(key, value)
    return dst
