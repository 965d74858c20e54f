"""Writes sampled chunks into a synthetic store: fresh dense ids, CDM columns, vocabulary, CDM_SOURCE."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from synthcohort import __version__, cdm
from synthcohort.cohort import CohortStore
from synthcohort.generator.chunk import EVENT_DOMAINS, Chunk, to_arrow

CDM_V54_CONCEPT_ID = 756265
ID_COLUMNS = {name: cdm.table(name).primary_key for name in cdm.CLINICAL_TABLES}


class SyntheticWriter:
    """Appends chunks to a store; every id is the store's own, dense and counted from 1."""

    def __init__(self, store: CohortStore) -> None:
        self.store = store
        self.next: dict[str, int] = {name: 1 for name in cdm.CLINICAL_TABLES}

    def write(self, chunk: Chunk) -> int:
        person = chunk["person"]
        if not len(person):
            return 0
        local = person["person_id"].to_numpy()
        new_person = pd.Series(np.arange(len(local), dtype=np.int64) + self.next["person"], index=local)
        self.next["person"] += len(local)
        visits = chunk.get("visit_occurrence")
        new_visit = pd.Series(dtype="int64")
        if visits is not None and len(visits):
            new_visit = pd.Series(
                np.arange(len(visits), dtype=np.int64) + self.next["visit_occurrence"],
                index=visits["visit_occurrence_id"].to_numpy(),
            )
            self.next["visit_occurrence"] += len(visits)
        for name in cdm.CLINICAL_TABLES:
            df = chunk.get(name)
            if df is None or not len(df):
                continue
            df = df.copy()
            df["person_id"] = df["person_id"].map(new_person).astype("int64")
            if name == "visit_occurrence":
                df["visit_occurrence_id"] = df["visit_occurrence_id"].map(new_visit).astype("int64")
            elif "visit_occurrence_id" in df:
                df["visit_occurrence_id"] = df["visit_occurrence_id"].map(new_visit).astype("Int64")
            key = ID_COLUMNS[name]
            if key and name not in ("person", "visit_occurrence"):
                df[key] = np.arange(len(df), dtype=np.int64) + self.next[name]
                self.next[name] += len(df)
            df = df.sort_values(["person_id", *([key] if key and key != "person_id" else [])], kind="stable")
            self.store.append(name, to_arrow(name, df))
        return len(local)

    def _complete_vocabulary(self, ids: set[int]) -> None:
        """OMOP's own fixed concepts the store uses (0, type concepts, the CDM version), and a vocabulary row
        for every vocabulary a concept row names: the store's foreign keys resolve, as a CDM requires."""
        con = self.store.con
        base = cdm.base_concepts()
        wanted = base.filter(pc.is_in(base["concept_id"], value_set=pa.array(sorted(ids), pa.int64())))
        con.register("_base", wanted)
        try:
            con.execute(
                "INSERT INTO concept SELECT * FROM _base WHERE concept_id NOT IN (SELECT concept_id FROM concept)"
            )
        finally:
            con.unregister("_base")
        con.execute(
            "INSERT INTO vocabulary (vocabulary_id, vocabulary_name, vocabulary_concept_id) "
            "SELECT DISTINCT vocabulary_id, vocabulary_id, 0 FROM concept "
            "WHERE vocabulary_id NOT IN (SELECT vocabulary_id FROM vocabulary) ORDER BY 1"
        )

    def finish(self, vocabulary: pa.Table, ancestors: pd.DataFrame, release_day: int) -> None:
        """Vocabulary rows for the concepts the store uses, and a CDM_SOURCE row naming it synthetic."""
        parts = []
        for name in ("person", "observation_period", "visit_occurrence", "death", *EVENT_DOMAINS):
            cols = [c for c in cdm.table(name).stored_columns if c.endswith("_concept_id")]
            parts += [f'SELECT "{c}" AS id FROM "{name}"' for c in cols]
        used = self.store.query_arrow(f"SELECT DISTINCT id FROM ({' UNION ALL '.join(parts)}) WHERE id IS NOT NULL")
        ids = set(used["id"].to_pylist())
        if vocabulary.num_rows:
            mask = pa.array([cid in ids for cid in vocabulary["concept_id"].to_pylist()])
            self.store.append("concept", vocabulary.filter(mask))
        self._complete_vocabulary(ids | {CDM_V54_CONCEPT_ID})
        if len(ancestors) and "min_levels_of_separation" in ancestors:
            keep = ancestors["descendant_concept_id"].isin(ids) & ancestors["ancestor_concept_id"].isin(ids)
            self.store.append("concept_ancestor", ancestors[keep])
        # The data's own last day, not the clock: same model and seed give the same store.
        today = dt.date(1970, 1, 1) + dt.timedelta(days=int(release_day))
        self.store.append(
            "cdm_source",
            pa.table(
                {
                    "cdm_source_name": ["synthcohort synthetic cohort"],
                    "cdm_source_abbreviation": ["synthetic"],
                    "cdm_holder": ["synthcohort"],
                    "source_description": [
                        f"Synthetic persons generated by synthcohort {__version__}; no real person."
                    ],
                    "source_release_date": [today],
                    "cdm_release_date": [today],
                    "cdm_version": ["v5.4"],
                    "cdm_version_concept_id": [CDM_V54_CONCEPT_ID],
                    "vocabulary_version": ["subset of the source cohort's vocabulary"],
                }
            ),
        )
