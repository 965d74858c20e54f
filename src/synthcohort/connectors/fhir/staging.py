"""Stage mapped rows in the store under construction, then resolve, check and insert them in SQL."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pyarrow as pa

from synthcohort import cdm
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.report import RunReport
from synthcohort.mappings.reading import staging_layout, table_columns
from synthcohort.mappings.rules import LOCAL_CONCEPT_BASE, ColumnRule, all_rules, code_systems
from synthcohort.mappings.vocabulary import Vocabulary

log = logging.getLogger(__name__)

FLUSH_ROWS = 50_000
DEATH_GRACE_DAYS = 60
DOMAINS = {
    "condition_concept_id": "Condition",
    "drug_concept_id": "Drug",
    "procedure_concept_id": "Procedure",
    "measurement_concept_id": "Measurement",
    "observation_concept_id": "Observation",
    "visit_source_concept_id": "Visit",
    "unit_concept_id": "Unit",
    "value_as_concept_id": "Meas Value",
}
_ARROW = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64()}


def _date(raw: str) -> str:
    return (
        f"CASE WHEN length({raw}) = 4 THEN TRY_CAST({raw} || '-01-01' AS DATE) "
        f"WHEN length({raw}) = 7 THEN TRY_CAST({raw} || '-01' AS DATE) "
        f"WHEN length({raw}) = 10 THEN TRY_CAST({raw} AS DATE) "
        f"ELSE CAST({_datetime(raw)} AS DATE) END"
    )


def _datetime(raw: str) -> str:
    # Instants with an offset become UTC wall time whatever the session time zone; FHIR forbids a
    # time without a zone, but such values are read as UTC.
    return (
        f"CASE WHEN length({raw}) <= 10 THEN NULL "
        f"WHEN regexp_matches({raw}, '(Z|[+-][0-9][0-9]:[0-9][0-9])$') "
        f"THEN make_timestamp(epoch_us(TRY_CAST({raw} AS TIMESTAMPTZ))) "
        f"ELSE TRY_CAST({raw} AS TIMESTAMP) END"
    )


def _date_of_person(raw: str) -> str:
    # birth dates: a date-only value is midnight of that date
    return f"CAST({_date(raw)} AS TIMESTAMP)"


class Stager:
    """Column buffers per OMOP table, flushed to ``_stage_<table>`` in the store."""

    def __init__(self, store: CohortStore) -> None:
        self.store = store
        self.con = store.con
        self.columns: dict[str, list[ColumnRule]] = {}
        self.buffers: dict[str, list[list[Any]]] = {}
        self.arrow: dict[str, pa.Schema] = {}
        for table in all_rules():
            self.columns[table] = list(table_columns(table))
            schema = staging_layout(table)
            self.buffers[table] = []
            self.arrow[table] = pa.schema([(n, _ARROW[t]) for n, t in schema])
            col_sql = ", ".join(f'"{n}" {t}' for n, t in schema)
            self.con.execute(f'CREATE TABLE "_stage_{table}" ({col_sql})')
        self.seq = 0

    def add(self, table: str, row: list[Any], rtype: str, res: int) -> None:
        """Stage a row laid out as :func:`staging_layout` gives, its last three cells left for the row's origin."""
        buf = self.buffers[table]
        self.seq += 1
        row[-3], row[-2], row[-1] = rtype, res, self.seq
        buf.append(row)
        if len(buf) >= FLUSH_ROWS:
            self._flush(table)

    def _flush(self, table: str) -> None:
        buf = self.buffers[table]
        if not buf:
            return
        schema = self.arrow[table]
        columns = zip(*buf, strict=True)
        batch = pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)
        self.con.register("_batch", batch)
        try:
            self.con.execute(f'INSERT INTO "_stage_{table}" SELECT * FROM _batch')
        finally:
            self.con.unregister("_batch")
        buf.clear()

    # -- finalize ------------------------------------------------------------------
    def finalize(self, report: RunReport, vocabulary: Vocabulary | None, today: dt.date) -> None:
        for table in self.buffers:
            self._flush(table)
        con = self.con
        self._resolve_codes(vocabulary)
        self._decide_drops(today)
        self._account(report)
        for table in all_rules():
            self._insert(table)
        self._observation_periods()
        self._base_concepts()
        self._vocabularies()
        self._coverage(report)
        for table in all_rules():
            con.execute(f'DROP TABLE "_stage_{table}"')
        for t in ("_codes", "_persons", "_visits", "_life"):
            con.execute(f'DROP TABLE IF EXISTS "{t}"')
        for table, n in self.store.counts().items():
            if n and table in cdm.CLINICAL_TABLES:
                report.rows[table] = n

    def _coding_columns(self) -> list[tuple[str, ColumnRule]]:
        return [(t, c) for t, cols in self.columns.items() for c in cols if c.kind == "coding"]

    def _resolve_codes(self, vocabulary: Vocabulary | None) -> None:
        con = self.con
        parts = [
            f'SELECT "{c.column}__sys" AS sys, "{c.column}__code" AS code, '
            f"'{DOMAINS.get(c.column, 'Observation')}' AS domain "
            f'FROM "_stage_{t}" WHERE "{c.column}__sys" IS NOT NULL'
            for t, c in self._coding_columns()
        ]
        distinct = con.sql(
            f"SELECT sys, code, min(domain) AS domain FROM ({' UNION ALL '.join(parts)}) GROUP BY 1, 2 ORDER BY 1, 2"
        ).to_arrow_table()
        systems = code_systems()
        vocab_ids = [systems.vocabulary_of(s) for s in distinct.column("sys").to_pylist()]
        codes = distinct.append_column("vocabulary_id", pa.array(vocab_ids, pa.string()))
        if vocabulary is not None and codes.num_rows:
            resolved, concepts = vocabulary.resolve(codes.select(["vocabulary_id", "code"]))
        else:
            resolved = pa.table(
                {
                    "vocabulary_id": pa.array([], pa.string()),
                    "code": pa.array([], pa.string()),
                    "source_concept_id": pa.array([], pa.int64()),
                    "concept_id": pa.array([], pa.int64()),
                }
            )
            concepts = None
        con.register("_distinct", codes)
        con.register("_resolved", resolved)
        con.execute(
            f"""
            CREATE TABLE _codes AS
            SELECT d.sys, d.code, d.domain, d.vocabulary_id,
                   coalesce(r.source_concept_id,
                            {LOCAL_CONCEPT_BASE} + row_number() OVER (PARTITION BY r.source_concept_id IS NULL
                                                                      ORDER BY d.vocabulary_id, d.code) - 1)
                       AS source_concept_id,
                   coalesce(r.concept_id, 0) AS concept_id,
                   r.source_concept_id IS NULL AS is_local,
                   d.vocabulary_id NOT LIKE 'SC-%' AS known_system
            FROM _distinct d LEFT JOIN _resolved r ON r.vocabulary_id = d.vocabulary_id AND r.code = d.code
            """
        )
        con.unregister("_distinct")
        con.unregister("_resolved")
        if concepts is not None and concepts.num_rows:
            self.store.append("concept", concepts)
        con.execute(
            """
            INSERT INTO concept (concept_id, concept_name, domain_id, vocabulary_id, concept_class_id,
                                 standard_concept, concept_code, valid_start_date, valid_end_date)
            SELECT source_concept_id, left(vocabulary_id || ' ' || code, 255), domain, vocabulary_id, 'Local code',
                   NULL, code, DATE '1970-01-01', DATE '2099-12-31'
            FROM _codes WHERE is_local ORDER BY source_concept_id
            """
        )

    def _decide_drops(self, today: dt.date) -> None:
        """Add ``_drop`` (a skip reason or NULL) to every staged row; tables are rebuilt, not updated."""
        con = self.con
        birth = _date("p.birth_datetime__raw")
        con.execute(
            f"""
            CREATE OR REPLACE TABLE _stage_person AS
            WITH deaths AS (SELECT person_id, min({_date("death_date__raw")}) AS death FROM _stage_death GROUP BY 1)
            SELECT p.*, CASE
                WHEN {birth} IS NULL THEN 'no_date'
                WHEN {birth} > DATE '{today.isoformat()}' THEN 'quarantined'
                WHEN d.death < {birth} THEN 'quarantined'
                WHEN row_number() OVER (PARTITION BY p.person_id ORDER BY p._seq) > 1 THEN 'duplicate'
            END AS _drop
            FROM _stage_person p LEFT JOIN deaths d ON d.person_id = p.person_id
            ORDER BY p._seq
            """
        )
        con.execute(
            "CREATE TABLE _persons AS SELECT person_id AS old_id, row_number() OVER (ORDER BY person_id) AS new_id "
            "FROM _stage_person WHERE _drop IS NULL"
        )
        quarantined = "(SELECT person_id FROM _stage_person WHERE _drop = 'quarantined')"
        birth, death = _date("p.birth_datetime__raw"), _date("d.death_date__raw")
        con.execute(
            f"""
            CREATE TABLE _life AS
            SELECT p.person_id AS old_id, {birth} AS birth,
                   (SELECT min({death}) FROM _stage_death d WHERE d.person_id = p.person_id) AS death
            FROM _stage_person p WHERE p._drop IS NULL
            """
        )
        for table in all_rules():
            if table == "person":
                continue
            dates = [c for c in self.columns[table] if c.kind == "date" and c.required]
            no_date = " OR ".join(_date(f"s.{c.column}__raw") + " IS NULL" for c in dates) or "FALSE"
            extra = ""
            if dates and table != "death":
                # events before birth or over 60 days after death are quarantined (OMOP plausibility rules)
                start = _date(f"s.{dates[0].column}__raw")
                extra = (
                    f"WHEN {start} < l.birth THEN 'before_birth' "
                    f"WHEN {start} > l.death + INTERVAL {DEATH_GRACE_DAYS} DAY THEN 'after_death' "
                )
            if table == "visit_occurrence":
                extra += (
                    "WHEN row_number() OVER (PARTITION BY s.visit_occurrence_id ORDER BY s._seq) > 1 THEN 'duplicate'"
                )
            elif table == "death":
                extra = "WHEN s._res NOT IN (SELECT _res FROM _stage_person WHERE _drop IS NULL) THEN 'duplicate'"
            con.execute(
                f"""
                CREATE OR REPLACE TABLE "_stage_{table}" AS
                SELECT s.*, CASE
                    WHEN s.person_id IN {quarantined} THEN 'quarantined_person'
                    WHEN s.person_id NOT IN (SELECT old_id FROM _persons) THEN 'orphan'
                    WHEN {no_date} THEN 'no_date'
                    {extra}
                END AS _drop
                FROM "_stage_{table}" s LEFT JOIN _life l ON l.old_id = s.person_id ORDER BY s._seq
                """
            )
        con.execute(
            "CREATE TABLE _visits AS SELECT v.visit_occurrence_id AS old_id, v.person_id AS person_old, "
            "row_number() OVER (ORDER BY v.visit_occurrence_id) AS new_id "
            "FROM _stage_visit_occurrence v WHERE _drop IS NULL"
        )

    def _account(self, report: RunReport) -> None:
        union = " UNION ALL ".join(f"SELECT _rtype, _res, _drop, '{t}' AS tbl FROM \"_stage_{t}\"" for t in all_rules())
        rows = self.con.execute(
            f"""
            SELECT _rtype, reason, count(*) FROM (
                SELECT _rtype, _res, min(_drop) AS reason FROM ({union})
                GROUP BY 1, 2 HAVING bool_and(_drop IS NOT NULL)
            ) GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).fetchall()
        for rtype, reason, n in rows:
            report.mapped[rtype] -= n
            report.skip(rtype, reason, n)
        for rtype, table, n in self.con.execute(
            f"SELECT _rtype, tbl, count(*) FROM ({union}) WHERE _drop IS NULL GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall():
            report.rows_by_type.setdefault(rtype, type(report.rows)())[table] = n
        dropped_links = self.con.execute(
            "SELECT "
            + " + ".join(
                f'(SELECT count(*) FROM "_stage_{t}" s WHERE s._drop IS NULL AND s.visit_occurrence_id IS NOT NULL '
                "AND NOT EXISTS (SELECT 1 FROM _visits v "
                "WHERE v.old_id = s.visit_occurrence_id AND v.person_old = s.person_id))"
                for t, cols in self.columns.items()
                if t != "visit_occurrence" and any(c.column == "visit_occurrence_id" for c in cols)
            )
        ).fetchone()
        if dropped_links and dropped_links[0]:
            report.notes["link_dropped"] += int(dropped_links[0])

    def _insert(self, table: str) -> None:
        spec = cdm.table(table)
        select: dict[str, str] = {}
        joins: list[str] = []
        for i, c in enumerate(self.columns[table]):
            if c.kind == "ref":
                if c.column == "person_id":
                    joins.append("JOIN _persons p ON p.old_id = s.person_id")
                    select["person_id"] = "p.new_id"
                elif c.column == "visit_occurrence_id" and table == "visit_occurrence":
                    joins.append("JOIN _visits v ON v.old_id = s.visit_occurrence_id")
                    select[c.column] = "v.new_id"
                else:
                    joins.append(
                        "LEFT JOIN _visits v ON v.old_id = s.visit_occurrence_id AND v.person_old = s.person_id"
                    )
                    select[c.column] = "v.new_id"
            elif c.kind == "coding":
                k = f"k{i}"
                joins.append(
                    f'LEFT JOIN _codes {k} ON {k}.sys = s."{c.column}__sys" AND {k}.code = s."{c.column}__code"'
                )
                if c.column.endswith("_source_concept_id"):
                    select[c.column] = f"{k}.source_concept_id"
                else:
                    select[c.column] = f"coalesce({k}.concept_id, 0)"
                if c.source_concept:
                    select[c.source_concept] = f"{k}.source_concept_id"
                if c.source_value:
                    select[c.source_value] = f'CASE WHEN {k}.known_system THEN s."{c.column}__code" END'
            elif c.kind == "date":
                raw = f's."{c.column}__raw"'
                if spec.column(c.column).type == "datetime":
                    select[c.column] = _date_of_person(raw)
                    select[f"{c.column}__raw"] = raw
                else:
                    select[c.column] = _date(raw)
                if c.datetime:
                    select[c.datetime] = _datetime(raw)
            else:
                select[c.column] = f's."{c.column}"'
        pk = spec.primary_key
        if pk and pk not in select:
            select[pk] = "row_number() OVER (ORDER BY s._seq)"
        inner = ", ".join(f'{expr} AS "{name}"' for name, expr in select.items())
        join_sql = " ".join(dict.fromkeys(joins))
        query = f'SELECT {inner} FROM "_stage_{table}" s {join_sql} WHERE s._drop IS NULL ORDER BY s._seq'
        derive = all_rules()[table].derive
        out_cols = [n for n in select if n in spec.column_names and n not in derive] + list(derive)
        outer = ", ".join(f'{derive.get(n, f"q.{n}")} AS "{n}"' for n in out_cols)
        cols = ", ".join(f'"{n}"' for n in out_cols)
        self.con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {outer} FROM ({query}) q')

    def _base_concepts(self) -> None:
        """OMOP's fixed concepts the rows use (genders, races, visit and type concepts), when not there yet."""
        columns = [
            (t, c.name)
            for t in cdm.CLINICAL_TABLES
            for c in cdm.table(t).columns
            if c.references == ("concept", "concept_id") and c.name in cdm.table(t).stored_columns
        ]
        used = " UNION ".join(f'SELECT DISTINCT "{c}" AS id FROM "{t}"' for t, c in columns)
        self.con.register("_base", cdm.base_concepts())
        try:
            self.con.execute(
                f"INSERT INTO concept SELECT * FROM _base WHERE concept_id IN ({used}) "
                "AND concept_id NOT IN (SELECT concept_id FROM concept) ORDER BY concept_id"
            )
        finally:
            self.con.unregister("_base")

    def _vocabularies(self) -> None:
        """A vocabulary row for every vocabulary the concept table uses; the system URI as its reference."""
        con = self.con
        uri_rows = list(code_systems().uri_of.items())
        local_rows = con.execute("SELECT DISTINCT vocabulary_id, sys FROM _codes WHERE NOT known_system").fetchall()
        vocab = pa.table(
            {
                "vocabulary_id": pa.array([r[0] for r in uri_rows + local_rows], pa.string()),
                "uri": pa.array([r[1] for r in uri_rows + local_rows], pa.string()),
            }
        )
        con.register("_vocab", vocab)
        try:
            con.execute(
                """
                INSERT INTO vocabulary (vocabulary_id, vocabulary_name, vocabulary_reference, vocabulary_concept_id)
                SELECT c.vocabulary_id,
                       CASE WHEN c.vocabulary_id LIKE 'SC-%' THEN 'Local code system' ELSE c.vocabulary_id END,
                       v.uri, 0
                FROM (SELECT DISTINCT vocabulary_id FROM concept) c LEFT JOIN _vocab v USING (vocabulary_id)
                WHERE c.vocabulary_id NOT IN (SELECT vocabulary_id FROM vocabulary)
                ORDER BY 1
                """
            )
        finally:
            con.unregister("_vocab")

    def _observation_periods(self) -> None:
        parts = [
            f'SELECT person_id, "{start}" AS lo, coalesce("{end}", "{start}") AS hi FROM "{t}"'
            if end
            else f'SELECT person_id, "{start}" AS lo, "{start}" AS hi FROM "{t}"'
            for t, (_, start, end) in cdm.EVENT_TABLES.items()
        ]
        self.con.execute(
            f"""
            INSERT INTO observation_period (observation_period_id, person_id, observation_period_start_date,
                                            observation_period_end_date, period_type_concept_id)
            SELECT row_number() OVER (ORDER BY person_id), person_id, min(lo), max(hi), 32817
            FROM ({" UNION ALL ".join(parts)}) WHERE lo IS NOT NULL GROUP BY person_id ORDER BY person_id
            """
        )

    def _coverage(self, report: RunReport) -> None:
        parts = []
        for table, cols in self.columns.items():
            primary = next((c for c in cols if c.kind == "coding" and c.required), None)
            if primary is None:
                continue
            parts.append(
                f'SELECT s._rtype, k.concept_id FROM "_stage_{table}" s JOIN _codes k '
                f'ON k.sys = s."{primary.column}__sys" AND k.code = s."{primary.column}__code" WHERE s._drop IS NULL'
            )
        for rtype, total, mapped in self.con.execute(
            f"SELECT _rtype, count(*), count(*) FILTER (WHERE concept_id > 0) FROM ({' UNION ALL '.join(parts)}) "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall():
            report.coverage[rtype] = {
                "codes": total,
                "mapped": mapped,
                "share": round(mapped / total, 4) if total else 0.0,
            }
