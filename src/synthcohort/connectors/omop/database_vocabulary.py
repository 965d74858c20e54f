"""FHIR code resolution against a database's vocabulary schema: only the rows the codes seen need are read.

For the distinct (vocabulary_id, code) pairs of an extraction, the database is asked for those CONCEPT rows
(bound code lists per vocabulary), their ``Maps to`` relationships and the target concepts; the rest of the
vocabulary never leaves the database.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from synthcohort.connectors.omop.database import Catalogue, make_engine
from synthcohort.connectors.omop.selection import SourceTables
from synthcohort.connectors.omop.sql_source import SqlVocabulary, vocabulary_tables
from synthcohort.errors import ConfigError, InputError
from synthcohort.mappings.vocabulary import RESOLUTION_COLUMNS, Vocabulary

log = logging.getLogger(__name__)


def open_vocabulary(source: str | Path, schema: str | None = None) -> Vocabulary:
    """An Athena CSV folder, a DuckDB file, or a database URL (``schema``: its vocabulary schema)."""
    if "://" in str(source):
        return database_vocabulary(str(source), schema)
    if schema:
        raise ConfigError("--vocab-schema applies to a vocabulary given as a database URL")
    return Vocabulary.open(source)


def database_vocabulary(url: str, schema: str | None = None) -> Vocabulary:
    """A vocabulary read from the CONCEPT and CONCEPT_RELATIONSHIP tables of ``schema`` in the database at ``url``."""
    engine = make_engine(url)
    try:
        where = f"the vocabulary tables of {engine.url.get_backend_name()} database {engine.url.database or ''}"
        cat = Catalogue.load(engine, where)
        vschema = cat.schema(schema)
        tables = vocabulary_tables(cat, vschema)
        for name, needed in RESOLUTION_COLUMNS.items():
            lacking = set(needed) - {c.name for c in tables[name].c} if name in tables else set()
            if name not in tables or lacking:
                raise InputError(
                    f"the vocabulary schema has no {name.upper()} table"
                    if name not in tables
                    else f"the {name.upper()} table of the vocabulary schema lacks {', '.join(sorted(lacking))}",
                    "point --vocab-schema at the schema holding the OMOP vocabulary tables",
                )
    except BaseException:
        engine.dispose()
        raise
    source = SqlVocabulary(engine, SourceTables(vocab=tables))
    description = f"{engine.url.get_backend_name()} database {Path(engine.url.database or '').name}, schema {vschema}"
    return Vocabulary.fetching(lambda codes: fetch_rows(source, codes), description, engine.dispose)


def _present(table: pa.Table | None) -> pa.Table:
    assert table is not None, "database_vocabulary checked that the table exists"
    return table


def fetch_rows(source: SqlVocabulary, codes: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The CONCEPT rows of ``codes`` (vocabulary_id, code) and of their Maps-to targets, and those relationships."""
    concepts = _present(source.concepts([]))  # no row yet: the table's shape
    grouped = codes.group_by("vocabulary_id").aggregate([("code", "distinct")])
    pairs = zip(grouped["vocabulary_id"].to_pylist(), grouped["code_distinct"].to_pylist(), strict=True)
    for vocabulary_id, values in pairs:
        if vocabulary_id is not None:
            found = source.concepts_by_code(vocabulary_id, sorted(v for v in values if v is not None))
            concepts = pa.concat_tables([concepts, _present(found)])
    source_ids = sorted(set(concepts.column("concept_id").drop_null().to_pylist()))
    maps = _present(source.maps_to(source_ids))
    targets = sorted(set(maps.column("concept_id_2").drop_null().to_pylist()) - set(source_ids))
    concepts = pa.concat_tables([concepts, _present(source.concepts(targets))])
    log.info(
        "vocabulary: %d concepts and %d Maps-to rows read for %d codes", concepts.num_rows, maps.num_rows, len(codes)
    )
    return concepts, maps
