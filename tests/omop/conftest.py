"""OMOP connector fixtures: CDM source databases built once per session from the shared CSV sets."""

from __future__ import annotations

import gzip
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL, _pg_up, shared_path

CANARY_ID = "HOSP-CANARY-0815"
CANARY_TEXT = "canary note Marie Canary-Durand, 12 rue des Lilas"
# Two condition concepts of Eunomia (9 and 10 persons), linked in CONCEPT_ANCESTOR by the fixture below.
ANCESTOR, DESCENDANT = 372328, 260139


def official_ddl(dialect: str, part: str, schema: str) -> str:
    """One file of the official OHDSI DDL (ddl, primary_keys, constraints) with the schema filled in."""
    path = shared_path("spec", "omop-cdm-5.4", "ddl", dialect, f"OMOPCDM_{dialect}_5.4_{part}.sql")
    return path.read_text().replace("@cdmDatabaseSchema", schema)


def split_sql(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


FK_RE = re.compile(
    r"ALTER TABLE \S+?\.(\w+)\s+ADD CONSTRAINT (\w+) FOREIGN KEY \((\w+)\) REFERENCES \S+?\.(\w+) \((\w+)\)", re.I
)


def foreign_keys(dialect: str) -> list[tuple[str, str, str, str, str]]:
    """(table, name, column, referenced table, referenced column) declared by the official constraints file."""
    text = official_ddl(dialect, "constraints", "s")
    return [(t.lower(), n, c.lower(), rt.lower(), rc.lower()) for t, n, c, rt, rc in FK_RE.findall(text)]


def _csv_files(folder: Path) -> dict[str, Path]:
    out = {}
    for p in folder.iterdir():
        name = p.name.lower().split(".")[0]
        out[name] = p
    return out


def _build_eunomia_duckdb(path: Path, folder: Path) -> None:
    con = duckdb.connect(str(path))
    for stmt in split_sql(official_ddl("duckdb", "ddl", "main")):
        con.execute(stmt)
    for name, file in _csv_files(folder).items():
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [name]
            ).fetchall()
        ]
        if not cols or name == "concept_relationship":  # 266k rows no test needs from here
            continue
        con.execute(f"INSERT INTO {name} SELECT * FROM read_csv(?, header = true, all_varchar = true)", [str(file)])
    _add_sensitive_rows(con)
    con.close()


def _add_sensitive_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Rows the tool must never read, an ancestor link for the concept-set test, and an OHDSI cohort."""
    con.execute(
        "INSERT INTO note (note_id, person_id, note_date, note_type_concept_id, note_class_concept_id, note_text, "
        "encoding_concept_id, language_concept_id) VALUES (1, 1, DATE '2010-01-01', 0, 0, ?, 0, 0)",
        [CANARY_TEXT],
    )
    con.execute("INSERT INTO location (location_id, address_1, city) VALUES (1, ?, 'Paris')", [CANARY_TEXT])
    con.execute("UPDATE person SET person_source_value = ? || person_id", [CANARY_ID])
    con.execute(
        "INSERT INTO concept_ancestor VALUES (?, ?, 1, 1), (?, ?, 0, 0), (?, ?, 0, 0)",
        [ANCESTOR, DESCENDANT, ANCESTOR, ANCESTOR, DESCENDANT, DESCENDANT],
    )
    con.execute(
        "INSERT INTO cohort SELECT 1, person_id, DATE '2000-01-01', DATE '2001-01-01' FROM person "
        "WHERE person_id % 2 = 0"
    )
    con.execute(
        "INSERT INTO cohort SELECT 2, person_id, DATE '2000-01-01', DATE '2001-01-01' FROM person WHERE person_id <= 5"
    )


@pytest.fixture(scope="session")
def eunomia_cdm(tmp_path_factory: pytest.TempPathFactory, eunomia: Path) -> Path:
    """Eunomia as a full CDM v5.4 DuckDB database (official DDL), with identifiers, notes and addresses."""
    path = tmp_path_factory.mktemp("cdm") / "eunomia.duckdb"
    _build_eunomia_duckdb(path, eunomia)
    return path


@pytest.fixture(scope="session")
def eunomia_store(tmp_path_factory: pytest.TempPathFactory, eunomia: Path) -> Path:
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.omop.csv_source import read_csv_folder

    path = tmp_path_factory.mktemp("stores") / "eunomia.duckdb"
    log = StatementLog()
    sa.event.listen(sa.Engine, "before_cursor_execute", log)
    try:
        with CohortStore.building(path) as store:
            read_csv_folder(eunomia, store)
            store.set_meta("kind", "real")
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", log)
    EUNOMIA_CSV_STATEMENTS[:] = log.statements
    return path


EUNOMIA_CSV_STATEMENTS: list[str] = []  # what building eunomia_store sent to the CSV folder's engine


def pg_engine() -> sa.Engine:
    if not _pg_up():
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432")
    pytest.importorskip("psycopg")
    return sa.create_engine(PG_URL)


def _load_pg_schema(con: sa.Connection, schema: str, files: dict[str, Path]) -> None:
    """Create ``schema`` with the official PostgreSQL DDL and COPY each CSV file into its table."""
    con.execute(sa.text(f"CREATE SCHEMA {schema}"))
    for stmt in split_sql(official_ddl("postgresql", "ddl", schema)):
        con.execute(sa.text(stmt))
    raw = con.connection.driver_connection
    assert raw is not None
    for name, file in files.items():
        opener = gzip.open if file.suffix == ".gz" else open
        copy_sql = f"COPY {schema}.{name} FROM STDIN (FORMAT csv, HEADER true)"
        with opener(file, "rb") as fh, raw.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.write(fh.read())


def _drop_pg_schema(engine: sa.Engine, schema: str) -> None:
    with engine.begin() as con:
        con.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


@pytest.fixture(scope="session")
def eunomia_pg(eunomia: Path) -> Iterator[str]:
    """Eunomia loaded (COPY) into the official PostgreSQL DDL, in a schema of its own, for the session."""
    engine = pg_engine()
    schema = f"src_{uuid.uuid4().hex[:10]}"
    # CONCEPT_RELATIONSHIP: 266k rows the CDM tests do not need from PostgreSQL (eunomia_vocabulary_pg has them)
    files = {name: file for name, file in _csv_files(eunomia).items() if name != "concept_relationship"}
    with engine.begin() as con:
        _load_pg_schema(con, schema, files)
        con.execute(sa.text(f"UPDATE {schema}.person SET person_source_value = '{CANARY_ID}' || person_id"))
        con.execute(
            sa.text(
                f"INSERT INTO {schema}.cohort SELECT 2, person_id, '2000-01-01', '2001-01-01' "
                f"FROM {schema}.person WHERE person_id <= 5"
            )
        )
    try:
        yield schema
    finally:
        _drop_pg_schema(engine, schema)


@pytest.fixture(scope="session")
def eunomia_vocabulary_pg(eunomia: Path) -> Iterator[str]:
    """Eunomia's CONCEPT and CONCEPT_RELATIONSHIP only, in a PostgreSQL schema of their own, for the session."""
    engine = pg_engine()
    schema = f"voc_{uuid.uuid4().hex[:10]}"
    files = {n: f for n, f in _csv_files(eunomia).items() if n in ("concept", "concept_relationship")}
    with engine.begin() as con:
        _load_pg_schema(con, schema, files)
    try:
        yield schema
    finally:
        _drop_pg_schema(engine, schema)


class StatementLog:
    """Every SQL statement any SQLAlchemy engine sends while active."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        self.statements.append(statement)


@pytest.fixture
def statement_log() -> Iterator[StatementLog]:
    log = StatementLog()
    sa.event.listen(sa.Engine, "before_cursor_execute", log)
    try:
        yield log
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", log)
