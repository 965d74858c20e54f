"""The store's rows as FHIR JSON text, rendered by DuckDB from the compiled write templates.

One query per range of persons yields every resource of every table as (person, table rank,
primary key, resource type, id, JSON text, dropped references); the writer orders and routes
them. Codings are rendered once per concept (orjson) and joined in; references join the
persons and visits of the same range, so every reference names a resource of the output.
"""

from __future__ import annotations

from typing import Any

import duckdb
import orjson

from synthcohort import cdm
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.ids import uuid_sql
from synthcohort.mappings.rules import LOCAL_CONCEPT_BASE, RuleError, WriteRule, code_systems
from synthcohort.mappings.writing import UCUM, Value, compile_rule, concat, literal

TABLE_OF = {"Patient": "person", "Encounter": "visit_occurrence"}
RANGE = "BETWEEN $lo AND $hi"


class _TableQuery:
    """One table's rows as resources: the joins its compiled template asks for (a mappings.writing.SqlSources)."""

    def __init__(self, table: str, join: str | None) -> None:
        self.table = cdm.table(table)
        self.join = cdm.table(join) if join else None
        self.joins: list[str] = []
        self.dropped: list[str] = []
        self._concepts: dict[str, str] = {}

    def column(self, name: str) -> tuple[str, str]:
        if name in self.table.column_names:
            return f't."{name}"', self.table.column(name).type
        if self.join is not None and name in self.join.column_names:
            return f'j."{name}"', self.join.column(name).type
        raise RuleError(f"{self.table.name}: a write template names the unknown column {name}")

    def concept(self, column: str) -> str:
        alias = self._concepts.get(column)
        if alias is None:
            alias = self._concepts[column] = f"c{len(self._concepts)}"
            self.joins.append(f"LEFT JOIN sc_concept {alias} ON {alias}.concept_id = {self.column(column)[0]}")
        return alias

    def reference(self, resource_type: str, column: str) -> str:
        table = TABLE_OF.get(resource_type)
        if table is None:
            raise RuleError(f"{self.table.name}: references to {resource_type} are not written")
        alias, col = f"r{len(self.dropped)}", self.column(column)[0]
        self.joins.append(f"LEFT JOIN sc_ref_{table} {alias} ON {alias}.store_id = {col}")
        self.dropped.append(f"CAST({col} IS NOT NULL AND {alias}.store_id IS NULL AS INTEGER)")
        return f"{alias}.ref"


def _q(name: str) -> str:
    return f'"{name}"'


def _hashed(seed: str, table: str, key: str, where: str) -> str:
    """The table's rows with ``_h``, the MD5 of ``seed|table|key`` (the id's source), then ``_id``."""
    text = f"{literal(f'{seed}|{table}|')} || CAST({_q(key)} AS VARCHAR)"
    return f"SELECT *, {uuid_sql('_h')} AS _id FROM (SELECT *, md5({text}) AS _h FROM {_q(table)} WHERE {where})"


def references_sql(seed: str, table: str, resource_type: str, urn: bool) -> str:
    """The rows a reference may name in one range of persons, with the reference's JSON text."""
    key = cdm.table(table).primary_key or "person_id"
    prefix = "urn:uuid:" if urn else f"{resource_type}/"
    ref = f"'{{\"reference\":\"{prefix}' || _id || '\"}}'"
    return f"SELECT {_q(key)} AS store_id, {ref} AS ref FROM ({_hashed(seed, table, key, f'person_id {RANGE}')})"


def _one_per_person(table: str) -> str:
    """A joined table's row per person (its latest, should there be several)."""
    first = next(c.name for c in cdm.table(table).columns if c.name != "person_id")
    return (
        f"SELECT * FROM {_q(table)} WHERE person_id {RANGE} "
        f"QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY {_q(first)} DESC NULLS LAST) = 1"
    )


def rows_sql(rules: dict[str, WriteRule], seed: str, meta: dict[str, Any], urn: bool) -> str:
    """Every resource of one range of persons ($lo..$hi): p, r, k, tbl, rtype, id, line, dropped.

    ``line`` is the resource's JSON text (NDJSON: with its newline), NULL when the row has no
    resource (a required member, such as a writable code, is missing).
    """
    meta_text = orjson.dumps(meta).decode()
    end = "}" if urn else "}\n"
    parts = []
    for rank, (table, rule) in enumerate(rules.items()):
        query = _TableQuery(table, rule.join)
        compiled = compile_rule(rule, query)
        pk = cdm.table(table).primary_key or "person_id"
        resources = {
            rtype: concat(
                [
                    '{"resourceType":' + orjson.dumps(rtype).decode() + ',"id":"',
                    Value("t._id"),
                    '","meta":' + meta_text + ",",
                    members,
                    end,
                ]
            ).sql
            for rtype, members in compiled.members.items()
        }
        if len(resources) == 1:
            line = next(iter(resources.values()))
        else:
            cases = " ".join(f"WHEN {literal(k)} THEN {v}" for k, v in resources.items())
            line = f"CASE {compiled.resource_type} {cases} END"
        joins = list(query.joins)
        if rule.join:
            joins.insert(0, f"LEFT JOIN ({_one_per_person(rule.join)}) j ON j.person_id = t.person_id")
        dropped = " + ".join(query.dropped) or "0"
        parts.append(
            f"SELECT t.person_id AS p, {rank} AS r, t.{_q(pk)} AS k, {literal(table)} AS tbl, "
            f"{compiled.resource_type} AS rtype, t._id AS id, {line} AS line, {dropped} AS dropped "
            f"FROM ({_hashed(seed, table, pk, f'person_id {RANGE}')}) t {' '.join(joins)}"
        )
    return " UNION ALL ".join(parts)


_CONCEPT_SHAPE = (
    '[{"concept_id":"BIGINT","vocabulary_id":"VARCHAR","coding":"VARCHAR","key":"BIGINT","ucum":"VARCHAR"}]'
)


def load_concepts(cur: duckdb.DuckDBPyConnection, store: CohortStore) -> None:
    """TEMP TABLE sc_concept: per concept its vocabulary, FHIR coding as JSON text, and UCUM unit members.

    The coding has the vocabulary's system URI (or a local concept's own) and the concept's
    display; ``key`` numbers distinct (system, code) pairs, so a CodeableConcept lists each once.
    The rows travel as one JSON document (orjson's escaping, kept byte for byte).
    """
    uris = code_systems().uri_of
    rows = store.con.execute(
        "SELECT c.concept_id, c.vocabulary_id, c.concept_code, c.concept_name, v.vocabulary_reference "
        "FROM concept c LEFT JOIN vocabulary v ON v.vocabulary_id = c.vocabulary_id WHERE c.concept_id <> 0"
    ).fetchall()
    out: list[dict[str, Any]] = []
    keys: dict[tuple[str, str], int] = {}
    for cid, vocabulary_id, code, name, reference in rows:
        system = uris.get(vocabulary_id)
        if system is None and cid >= LOCAL_CONCEPT_BASE and reference:
            system = reference
        row: dict[str, Any] = {"concept_id": cid, "vocabulary_id": vocabulary_id}
        if system is not None and code:
            coding = {"system": system, "code": str(code)}
            if cid < LOCAL_CONCEPT_BASE and name:
                coding["display"] = str(name)
            row["coding"] = orjson.dumps(coding).decode()
            row["key"] = keys.setdefault((system, str(code)), len(keys))
            if system == UCUM:
                row["ucum"] = orjson.dumps({"unit": str(code), "system": UCUM, "code": str(code)}).decode()[1:-1]
        out.append(row)
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE sc_concept AS "
        f"SELECT unnest(from_json($1, '{_CONCEPT_SHAPE}'), recursive := true)",
        [orjson.dumps(out).decode()],
    )
