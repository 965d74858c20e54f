"""Concept resolution: (vocabulary_id, code) -> source concept -> ``Maps to`` -> standard concept.

The vocabulary is the user's own: an Athena CSV folder (CONCEPT, CONCEPT_RELATIONSHIP; comma or tab,
.csv or .csv.gz), a DuckDB file holding the vocabulary tables (a CDM database or a cohort store), or rows
fetched for the codes seen (:meth:`Vocabulary.fetching`, e.g. from a database's vocabulary schema).
Nothing is bundled. Resolution runs once per extraction, as one join over the distinct codes seen.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from synthcohort import cdm
from synthcohort.cohort import hardened_config, out_of_memory
from synthcohort.errors import InputError
from synthcohort.text import plural

log = logging.getLogger(__name__)

RESOLVED_SCHEMA = pa.schema(
    [
        ("vocabulary_id", pa.string()),
        ("code", pa.string()),
        ("source_concept_id", pa.int64()),
        ("concept_id", pa.int64()),
    ]
)
CONCEPT_COLUMNS = (
    "concept_id",
    "concept_name",
    "domain_id",
    "vocabulary_id",
    "concept_class_id",
    "standard_concept",
    "concept_code",
    "valid_start_date",
    "valid_end_date",
    "invalid_reason",
)


RowSource = Callable[[pa.Table], tuple[pa.Table, pa.Table]]
"""Codes (vocabulary_id, code) -> (their CONCEPT rows and those of their targets, their Maps-to relationships)."""

# The columns resolution reads, per table.
RESOLUTION_COLUMNS = {
    "concept": CONCEPT_COLUMNS,
    "concept_relationship": ("concept_id_1", "concept_id_2", "relationship_id", "invalid_reason"),
}


# An empty flag is no flag (a CSV loaded as '' rather than NULL): the store holds NULL, as OMOP has it.
_CONCEPT_SELECT = ", ".join(
    f"nullif({c}, '') AS {c}" if c in ("standard_concept", "invalid_reason") else c for c in CONCEPT_COLUMNS
)


def _held_table_sql(table: str) -> str:
    """An empty table for the rows a fetching vocabulary holds, typed as the CDM types them."""
    spec = cdm.table(table)
    types = {c: spec.column(c).type.upper().replace("INTEGER", "BIGINT") for c in RESOLUTION_COLUMNS[table]}
    return f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in types.items())})"


def _find(folder: Path, table: str) -> Path | None:
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        if path.is_file() and not path.is_symlink():
            for suffix in (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt"):
                if name == table + suffix:
                    return path
    return None


def _delimiter(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return "\t" if header.count("\t") > header.count(",") else ","


def _date(expr: str) -> str:
    return f"COALESCE(TRY_CAST({expr} AS DATE), TRY_CAST(TRY_STRPTIME({expr}, '%Y%m%d') AS DATE))"


class Vocabulary:
    """An open vocabulary source; ``resolve`` maps codes to concepts."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        description: str,
        rows: RowSource | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.con = con
        self.description = description
        self._rows = rows
        self._on_close = on_close

    @classmethod
    def open(cls, source: str | Path) -> Vocabulary:
        path = Path(source)
        if not path.exists():
            raise InputError(
                f"there is no vocabulary at {path}",
                "give an Athena download folder, a .duckdb file or a database URL holding CONCEPT and "
                "CONCEPT_RELATIONSHIP",
            )
        if path.is_dir():
            return cls._athena(path)
        if path.is_file() and path.suffix in (".duckdb", ".db", ".ddb"):
            return cls._duckdb(path)
        raise InputError(
            f"vocabulary source {path} is neither a folder nor a DuckDB file",
            "give an Athena download folder (CONCEPT.csv, CONCEPT_RELATIONSHIP.csv) or a .duckdb file with them",
        )

    @classmethod
    def fetching(cls, rows: RowSource, description: str, on_close: Callable[[], None]) -> Vocabulary:
        """A vocabulary that holds, at each ``resolve``, only the rows ``rows`` returns for the codes asked."""
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        con.execute("SET enable_external_access = false")
        for table in RESOLUTION_COLUMNS:
            con.execute(_held_table_sql(table))
        return cls(con, description, rows, on_close)

    @classmethod
    def _athena(cls, folder: Path) -> Vocabulary:
        concept, rel = _find(folder, "concept"), _find(folder, "concept_relationship")
        if concept is None or rel is None:
            raise InputError(
                f"no CONCEPT and CONCEPT_RELATIONSHIP files in {folder}",
                "give the folder of an OHDSI Athena vocabulary download",
            )
        # May read this folder's files only: no other file, no URL, no extension, no reconfiguration.
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        con.execute("SET allowed_directories = [?]", [str(folder.resolve()) + "/"])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        for name, path in (("concept", concept), ("concept_relationship", rel)):
            rel_ = con.read_csv(str(path), header=True, all_varchar=True, sep=_delimiter(path), quotechar='"')
            cols = {c.lower(): c for c in rel_.columns}
            con.register(f"_{name}_raw", rel_)
            if name == "concept":
                sel = ", ".join(
                    f'CAST("{cols[c]}" AS BIGINT) AS {c}'
                    if c == "concept_id"
                    else (_date(f'"{cols[c]}"') + f" AS {c}" if c.startswith("valid_") else f'"{cols[c]}" AS {c}')
                    for c in CONCEPT_COLUMNS
                )
            else:
                sel = (
                    f'CAST("{cols["concept_id_1"]}" AS BIGINT) AS concept_id_1, '
                    f'CAST("{cols["concept_id_2"]}" AS BIGINT) AS concept_id_2, '
                    f'"{cols["relationship_id"]}" AS relationship_id, "{cols["invalid_reason"]}" AS invalid_reason'
                )
            con.execute(f"CREATE VIEW {name} AS SELECT {sel} FROM _{name}_raw")
        return cls(con, f"Athena CSV folder {folder.name}")

    @classmethod
    def _duckdb(cls, path: Path) -> Vocabulary:
        try:
            # A vocabulary file may hold views over other files or URLs: none of that is followed.
            con = duckdb.connect(str(path), config=hardened_config(read_only=True))
        except duckdb.Error as exc:
            if said := out_of_memory(exc):
                raise InputError(
                    f"cannot open the vocabulary database {path.name} ({said.message})", said.hint
                ) from None
            raise InputError(f"cannot open the vocabulary database {path.name}: {exc}") from None
        found = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE lower(table_name) IN ('concept', 'concept_relationship')"
            ).fetchall()
        }
        if {"concept", "concept_relationship"} - {f.lower() for f in found}:
            con.close()
            raise InputError(f"{path.name} has no concept and concept_relationship tables", "give a CDM database")
        try:
            for table in ("concept", "concept_relationship"):
                con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
        except duckdb.Error as exc:
            con.close()
            if said := out_of_memory(exc):
                raise InputError(
                    f"the vocabulary tables in {path.name} cannot be read ({said.message})", said.hint
                ) from None
            raise InputError(
                f"the vocabulary tables in {path.name} cannot be read (views over files or URLs are not followed)",
                "give a DuckDB file whose concept and concept_relationship are tables",
            ) from None
        return cls(con, f"DuckDB {path.name}")

    def resolve(self, codes: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Resolve ``codes`` (vocabulary_id, code): returns (resolved rows, the concept rows they use)."""
        con = self.con
        if self._rows is not None:
            self._hold(*self._rows(codes))
        con.register("_q", codes)
        try:
            resolved = con.sql(
                """
                WITH src AS (
                    SELECT q.vocabulary_id, q.code, c.concept_id AS source_concept_id, c.standard_concept
                    FROM _q q JOIN concept c ON c.vocabulary_id = q.vocabulary_id AND c.concept_code = q.code
                    QUALIFY row_number() OVER (PARTITION BY q.vocabulary_id, q.code
                                               ORDER BY coalesce(c.invalid_reason, '') = '' DESC, c.concept_id) = 1
                ),
                maps AS (
                    SELECT r.concept_id_1, min(r.concept_id_2) AS target
                    FROM concept_relationship r JOIN concept t ON t.concept_id = r.concept_id_2
                    WHERE r.relationship_id = 'Maps to' AND coalesce(r.invalid_reason, '') = ''
                      AND t.standard_concept = 'S'
                      AND r.concept_id_1 IN (SELECT source_concept_id FROM src)
                    GROUP BY 1
                )
                SELECT src.vocabulary_id, src.code, src.source_concept_id,
                       coalesce(maps.target,
                                CASE WHEN src.standard_concept = 'S' THEN src.source_concept_id END, 0) AS concept_id
                FROM src LEFT JOIN maps ON maps.concept_id_1 = src.source_concept_id
                ORDER BY 1, 2
                """
            ).to_arrow_table()
            con.register("_r", resolved)
            concepts = con.sql(
                f"""
                SELECT {_CONCEPT_SELECT} FROM concept
                WHERE concept_id IN (SELECT source_concept_id FROM _r UNION SELECT concept_id FROM _r)
                QUALIFY row_number() OVER (PARTITION BY concept_id) = 1
                ORDER BY concept_id
                """
            ).to_arrow_table()
        finally:
            con.unregister("_q")
            with_r = "_r" in {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
            if with_r:
                con.unregister("_r")
        found, of = f"{resolved.num_rows:,}", plural(codes.num_rows, "code")
        log.info("vocabulary %s: %s of %s found", self.description, found, of)
        return resolved.cast(RESOLVED_SCHEMA), concepts

    def _hold(self, concepts: pa.Table, relationships: pa.Table) -> None:
        """Replace the rows held with these (columns matched by name; absent ones are NULL)."""
        for table, rows in (("concept", concepts), ("concept_relationship", relationships)):
            self.con.execute(f"DELETE FROM {table}")
            self.con.register("_rows", rows)
            try:
                columns = ", ".join(c for c in rows.column_names if c in RESOLUTION_COLUMNS[table])
                self.con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _rows")
            finally:
                self.con.unregister("_rows")

    def close(self) -> None:
        self.con.close()
        if self._on_close is not None:
            self._on_close()
