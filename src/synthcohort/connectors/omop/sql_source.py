"""Extract a cohort from an OMOP CDM database (any SQLAlchemy URL) into a cohort store, streaming Arrow batches."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from synthcohort import cdm
from synthcohort.cohort import CohortStore
from synthcohort.connectors.omop.database import Catalogue, make_engine, with_retries
from synthcohort.connectors.omop.ingest import Ingest, IngestReport
from synthcohort.connectors.omop.selection import Selection, SourceTables, person_filter, table_query
from synthcohort.connectors.omop.vocabulary import copy_vocabulary
from synthcohort.errors import InputError
from synthcohort.secrets import display_url
from synthcohort.text import plural

log = logging.getLogger(__name__)

BATCH_ROWS = 50_000
ID_CHUNK = 10_000
_ARROW = {"integer": pa.int64(), "float": pa.float64(), "date": pa.date32(), "datetime": pa.timestamp("us")}
Progress = Callable[[str, int], None]


def arrow_schema(table: str, columns: list[str]) -> pa.Schema:
    spec = cdm.table(table)
    return pa.schema([(c, _ARROW.get(spec.column(c).type, pa.string())) for c in columns])


def _conform(arrays: list[pa.Array], schema: pa.Schema) -> pa.RecordBatch:
    out = []
    for arr, f in zip(arrays, schema, strict=True):
        if pa.types.is_timestamp(arr.type) and arr.type.tz is not None:
            arr = arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))  # zone-aware -> UTC, naive
        out.append(arr.cast(f.type))
    return pa.record_batch(out, schema=schema)


def _to_batch(rows: list[sa.Row[tuple[object, ...]]], schema: pa.Schema) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return _conform([pa.array(values, from_pandas=False) for values in columns], schema)


def stream(
    engine: Engine, stmt: sa.Select[tuple[object, ...]], schema: pa.Schema, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Run ``stmt`` (values bound) and yield Arrow batches: DuckDB hands Arrow over, others a server-side cursor."""
    with engine.connect() as con:
        if engine.dialect.name == "duckdb":
            result = con.execute(stmt)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning)
                reader = result.cursor.to_arrow_reader(batch_rows)  # type: ignore[union-attr]
            try:
                for batch in reader:
                    yield _conform(list(batch.columns), schema)
            finally:
                # A reader stopped early (an error downstream) must release the connection's result.
                with contextlib.suppress(Exception):
                    reader.close()
                    result.cursor.abort()  # type: ignore[union-attr]
            return
        result = con.execution_options(stream_results=True, yield_per=batch_rows).execute(stmt)
        try:
            for part in result.partitions():
                yield _to_batch(list(part), schema)
        finally:
            result.close()  # also after a dropped connection: no server-side cursor is left behind


def detect_version(cat: Catalogue, schema: str) -> str:
    """'5.4', or an explicit error for a v5.3 database or one without PERSON/OBSERVATION_PERIOD."""
    for needed in ("person", "observation_period"):
        if cat.table(schema, needed) is None:
            raise InputError(
                f"the source schema has no {needed.upper()} table",
                "point --schema at an OMOP CDM v5.4 schema; nothing was extracted",
            )
    declared = ""
    name = cat.table(schema, "cdm_source")
    if name and "cdm_version" in cat.columns(schema, name):
        t = sa.table(name, sa.column(cat.columns(schema, name)["cdm_version"]), schema=schema)
        with cat.engine.connect() as con:
            declared = str(con.execute(sa.select(*t.c).limit(1)).scalar() or "")
    visit = cat.table(schema, "visit_occurrence")
    shape = "5.4"
    if visit and "admitting_source_concept_id" in cat.columns(schema, visit):
        shape = "5.3"
    if declared.lower().lstrip("v").startswith("5.3") or shape == "5.3":
        raise InputError(
            "the source is an OMOP CDM v5.3 database; this tool reads v5.4",
            "migrate it with the OHDSI CDM v5.3 -> v5.4 script, then run again; nothing was extracted",
        )
    return "5.4"


def source_tables(cat: Catalogue, schema: str, vocab_schema: str, cohort_schema: str) -> SourceTables:
    """Clauses naming only catalogue identifiers and allow-listed columns."""
    src = SourceTables()
    for name in cdm.LOAD_ORDER:
        found = cat.table(schema, name)
        if found is None:
            continue
        cols = cat.columns(schema, found)
        wanted = [c for c in cdm.table(name).omop_readable_columns if c in cols]
        if "person_id" not in wanted:
            continue
        src.tables[name] = sa.table(found, *(sa.column(cols[c]) for c in wanted), schema=schema)
    src.vocab = vocabulary_tables(cat, vocab_schema)
    found = cat.table(cohort_schema, "cohort")
    if found:
        cols = cat.columns(cohort_schema, found)
        if {"subject_id", "cohort_definition_id"} <= set(cols):
            src.cohort = sa.table(
                found, sa.column(cols["subject_id"]), sa.column(cols["cohort_definition_id"]), schema=cohort_schema
            )
    return src


def vocabulary_tables(cat: Catalogue, vocab_schema: str) -> dict[str, sa.TableClause]:
    """The vocabulary tables found in ``vocab_schema``, each with the CDM columns it has."""
    tables = {}
    for name in cdm.VOCABULARY_TABLES:
        found = cat.table(vocab_schema, name)
        if found is None:
            continue
        cols = cat.columns(vocab_schema, found)
        wanted = [c for c in cdm.table(name).column_names if c in cols]
        tables[name] = sa.table(found, *(sa.column(cols[c]) for c in wanted), schema=vocab_schema)
    return tables


class SqlVocabulary:
    """Vocabulary rows fetched by bound id lists, in chunks."""

    def __init__(self, engine: Engine, src: SourceTables) -> None:
        self.engine = engine
        self.vocab = src.vocab

    def _fetch(
        self, table: str, key: str, values: list[int] | list[str], where: dict[str, str] | None = None
    ) -> pa.Table | None:
        """Rows whose ``key`` is one of ``values`` (and whose columns equal ``where``'s values)."""
        t = self.vocab.get(table)
        if t is None:
            return None
        also = [t.c[column] == value for column, value in (where or {}).items()]
        names = [c.name for c in t.c]
        schema = arrow_schema(table, names)
        elem_type: Any = sa.BigInteger() if values and isinstance(values[0], int) else sa.String()
        batches: list[pa.RecordBatch] = []
        for i in range(0, len(values), ID_CHUNK):
            chunk = values[i : i + ID_CHUNK]
            param = sa.bindparam("ids", list(chunk), type_=sa.ARRAY(elem_type), unique=True)
            stmt = sa.select(*t.c).where(t.c[key] == sa.any_(param), *also)

            def read(stmt: sa.Select[tuple[object, ...]] = stmt) -> list[pa.RecordBatch]:
                return list(stream(self.engine, stmt, schema))

            batches.extend(with_retries(read, f"the vocabulary table {table}"))
        return pa.Table.from_batches(batches, schema=schema)

    def concepts(self, ids: list[int]) -> pa.Table | None:
        return self._fetch("concept", "concept_id", ids)

    def concepts_by_code(self, vocabulary_id: str, codes: list[str]) -> pa.Table | None:
        return self._fetch("concept", "concept_code", codes, {"vocabulary_id": vocabulary_id})

    def maps_to(self, ids: list[int]) -> pa.Table | None:
        """The ``Maps to`` relationships from these concepts."""
        return self._fetch("concept_relationship", "concept_id_1", ids, {"relationship_id": "Maps to"})

    def ancestors(self, descendant_ids: list[int]) -> pa.Table | None:
        return self._fetch("concept_ancestor", "descendant_concept_id", descendant_ids)

    def relationships(self, ids: list[int]) -> pa.Table | None:
        return self._fetch("concept_relationship", "concept_id_1", ids)

    def vocabularies(self, vocabulary_ids: list[str]) -> pa.Table | None:
        return self._fetch("vocabulary", "vocabulary_id", vocabulary_ids)


def resolve_persons(engine: Engine, src: SourceTables, sel: Selection) -> Selection:
    """Run the cohort definition once in the source; every table is then read for those persons (bound ids)."""
    if sel.cohort_id is None and sel.concepts is None:
        return sel
    person = src.tables["person"]
    stmt = sa.select(person.c.person_id).where(*person_filter(src, sel, person.c.person_id))
    with engine.connect() as con:
        ids = tuple(int(r[0]) for r in con.execute(stmt) if r[0] is not None)
    log.info("selection %s: %s", sel.describe(), plural(len(ids), "person"))
    return Selection(person_ids=ids, start=sel.start, end=sel.end)


def extract(
    engine: Engine,
    store: CohortStore,
    *,
    schema: str | None = None,
    vocab_schema: str | None = None,
    cohort_schema: str | None = None,
    selection: Selection | None = None,
    progress: Progress | None = None,
    where: str = "the source database",
    batch_rows: int = BATCH_ROWS,
) -> IngestReport:
    """Read the selected cohort from ``engine`` into ``store``; identifiers come from the catalogue only."""
    sel = selection or Selection()
    cat = Catalogue.load(engine, where)
    cdm_schema = cat.schema(schema)
    vschema = cat.schema(vocab_schema) if vocab_schema else cdm_schema
    cschema = cat.schema(cohort_schema) if cohort_schema else cdm_schema
    version = with_retries(lambda: detect_version(cat, cdm_schema), where)
    src = source_tables(cat, cdm_schema, vschema, cschema)
    resolved = with_retries(lambda: resolve_persons(engine, src, sel), "the cohort selection")
    ingest = Ingest(store)
    for name in cdm.LOAD_ORDER:
        if name not in src.tables:
            continue
        stmt = table_query(src, resolved, name)
        schema_ = arrow_schema(name, [c.name for c in src.tables[name].c])

        def load(name: str = name, stmt: sa.Select[tuple[object, ...]] = stmt, schema_: pa.Schema = schema_) -> int:
            with ingest.table(name):
                n = 0
                for batch in stream(engine, stmt, schema_, batch_rows):
                    n += ingest.add(name, batch)
                    if progress:
                        progress(name, batch.num_rows)
                return n

        with_retries(load, f"the {name} table")
        log.info(
            "%s: %s read, %d kept", name, plural(ingest.report.source_rows[name], "row"), ingest.report.loaded[name]
        )
    with_retries(lambda: copy_vocabulary(store, SqlVocabulary(engine, src), ingest.report), "the vocabulary tables")
    store.set_meta("cdm_version", version)
    store.set_meta("selection", sel.describe())
    store.set_meta("extraction_report", json.dumps(ingest.report.as_dict(), sort_keys=True))
    return ingest.report


def read_database(
    url: str,
    store: CohortStore,
    *,
    schema: str | None = None,
    vocab_schema: str | None = None,
    cohort_schema: str | None = None,
    selection: Selection | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Extract from a database URL (DuckDB file, PostgreSQL, ...); the URL is shown masked."""
    engine = make_engine(url)
    where = display_url(engine.url)
    try:
        report = extract(
            engine,
            store,
            schema=schema,
            vocab_schema=vocab_schema,
            cohort_schema=cohort_schema,
            selection=selection,
            progress=progress,
            where=where,
        )
    finally:
        engine.dispose()
    store.set_meta("source_kind", f"omop-{engine.url.get_backend_name()}")
    return report
