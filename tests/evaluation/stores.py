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


def split_ids(src_path: Path, parts: int, seed: int) -> list[np.ndarray]:
    with CohortStore.open(src_path) as src:
        ids = np.asarray(_read(src, "SELECT person_id FROM person ORDER BY 1").column(0).to_numpy())
    return [np.sort(p) for p in np.array_split(np.random.default_rng(seed).permutation(ids), parts)]


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
        for table in cdm.CLINICAL_TABLES:
            data = _read(src, f'SELECT * FROM "{table}" WHERE person_id IN ({id_list})')
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
