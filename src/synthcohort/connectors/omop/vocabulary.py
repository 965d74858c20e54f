"""Copy into a store the vocabulary rows its cohort uses (not whole vocabularies); unknown concepts become 0."""

from __future__ import annotations

import logging
from typing import Protocol

import pyarrow as pa

from synthcohort import cdm
from synthcohort.cdm import base_concepts
from synthcohort.cohort import CohortStore
from synthcohort.connectors.omop.ingest import IngestReport

log = logging.getLogger(__name__)

NO_MATCHING_CONCEPT = 0
CDM_V54_CONCEPT = 756265
_POS = "_synthcohort_source_row"  # a source row's position, while new rows are picked


class VocabularySource(Protocol):
    """Where a reader finds vocabulary rows; each method returns None when the table is absent."""

    def concepts(self, ids: list[int]) -> pa.Table | None: ...

    def ancestors(self, descendant_ids: list[int]) -> pa.Table | None: ...

    def relationships(self, ids: list[int]) -> pa.Table | None: ...

    def vocabularies(self, vocabulary_ids: list[str]) -> pa.Table | None: ...


def concept_columns() -> list[tuple[str, str]]:
    """(table, column) of every concept reference in the clinical tables."""
    return [
        (t, c.name)
        for t in cdm.CLINICAL_TABLES
        for c in cdm.table(t).columns
        if c.references == ("concept", "concept_id") and c.name in cdm.table(t).stored_columns
    ]


def _ids(store: CohortStore, sql: str) -> list[int]:
    return [int(r[0]) for r in store.con.execute(sql).fetchall() if r[0] is not None]


def copy_vocabulary(store: CohortStore, source: VocabularySource, report: IngestReport) -> None:
    """Fill concept, concept_ancestor, concept_relationship and vocabulary for the concepts the store uses."""
    con = store.con
    refs = concept_columns()
    union = " UNION ".join(f'SELECT DISTINCT "{c}" FROM "{t}"' for t, c in refs)
    used = sorted(set(_ids(store, union)) | {NO_MATCHING_CONCEPT, CDM_V54_CONCEPT})
    con.begin()
    try:
        _append_new(store, source.concepts(used))
        ancestors = source.ancestors(used)
        if ancestors is not None and ancestors.num_rows:
            store.append("concept_ancestor", ancestors)
            extra = _ids(store, "SELECT DISTINCT ancestor_concept_id FROM concept_ancestor")
            known = set(_ids(store, "SELECT concept_id FROM concept"))
            _append_new(store, source.concepts(sorted(set(extra) - known)))
        base = base_concepts()
        con.register("_base", base)
        con.execute("INSERT INTO concept SELECT * FROM _base WHERE concept_id NOT IN (SELECT concept_id FROM concept)")
        con.unregister("_base")
        known = set(_ids(store, "SELECT concept_id FROM concept"))
        for table, column in refs:
            n = con.execute(
                f'UPDATE "{table}" SET "{column}" = 0 WHERE "{column}" IS NOT NULL '
                f'AND "{column}" NOT IN (SELECT concept_id FROM concept)'
            ).fetchone()
            report.note(table, f"{column}_not_in_vocabulary_set_to_0", int(n[0]) if n else 0)
        con.execute(
            "DELETE FROM concept_ancestor WHERE ancestor_concept_id NOT IN (SELECT concept_id FROM concept) "
            "OR descendant_concept_id NOT IN (SELECT concept_id FROM concept)"
        )
        rels = source.relationships(sorted(known))
        if rels is not None and rels.num_rows:
            store.append("concept_relationship", rels)
            con.execute(
                "DELETE FROM concept_relationship WHERE concept_id_1 NOT IN (SELECT concept_id FROM concept) "
                "OR concept_id_2 NOT IN (SELECT concept_id FROM concept)"
            )
        _copy_vocabulary_rows(store, source)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    for name in ("concept", "concept_ancestor", "concept_relationship", "vocabulary"):
        row = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        report.loaded[name] = int(row[0]) if row else 0


def _append_new(store: CohortStore, rows: pa.Table | None, table: str = "concept", key: str = "concept_id") -> None:
    """Append rows whose key the store does not hold yet (first one wins), in the order of the key.

    A window without ORDER BY picks any row of a partition and DuckDB returns its result in
    whatever order its threads finish: the source position decides, and the key orders the rows.
    """
    if rows is None or not rows.num_rows:
        return
    store.con.register("_new_rows", rows.append_column(_POS, pa.array(range(rows.num_rows), pa.int64())))
    try:
        store.con.execute(
            f'CREATE OR REPLACE TEMP TABLE _nr AS SELECT * FROM _new_rows WHERE "{key}" IS NOT NULL '
            f'AND "{key}" NOT IN (SELECT "{key}" FROM "{table}") '
            f'QUALIFY row_number() OVER (PARTITION BY "{key}" ORDER BY "{_POS}") = 1'
        )
    finally:
        store.con.unregister("_new_rows")
    store.append(table, store.con.sql(f'SELECT * EXCLUDE ("{_POS}") FROM _nr ORDER BY "{key}"').to_arrow_table())
    store.con.execute("DROP TABLE _nr")


def _copy_vocabulary_rows(store: CohortStore, source: VocabularySource) -> None:
    con = store.con
    wanted = [r[0] for r in con.execute("SELECT DISTINCT vocabulary_id FROM concept ORDER BY 1").fetchall()]
    rows = source.vocabularies(wanted)
    if rows is not None and rows.num_rows:
        _append_new(store, rows, "vocabulary", "vocabulary_id")
        con.execute(
            "UPDATE vocabulary SET vocabulary_concept_id = 0 WHERE vocabulary_concept_id IS NULL "
            "OR vocabulary_concept_id NOT IN (SELECT concept_id FROM concept)"
        )
    # A vocabulary the source does not describe still needs its row (concept.vocabulary_id refers to it).
    con.execute(
        "INSERT INTO vocabulary (vocabulary_id, vocabulary_name, vocabulary_concept_id) "
        "SELECT DISTINCT vocabulary_id, vocabulary_id, 0 FROM concept "
        "WHERE vocabulary_id NOT IN (SELECT vocabulary_id FROM vocabulary) ORDER BY 1"
    )
