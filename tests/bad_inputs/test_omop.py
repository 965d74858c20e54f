"""Bad inputs 17, 21 and 27 on a PostgreSQL source: injection refused, identifiers never selected, faults bounded.

Case -> test (the OMOP connector's own suite covers the rest of 17-28; this module fills the gaps):
  17 schema `cdm; DROP TABLE person;--`, `"cdm"."person"`  -> test_injection_looking_names_refused_before_sql
     neighbours: injection in --vocab-schema, --cohort-schema, --concepts, a person-ids file
  21 person_source_value, free-text *_source_value, note, location -> test_identifier_columns_never_in_any_sql
  27 connection dropped mid-extraction (pg_terminate_backend)      -> test_dropped_connection_is_retried,
                                                                      test_connection_dropped_every_time_gives_up
  27 database unreachable                                         -> test_unreachable_database_gives_up_cleanly
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from tests.bad_inputs.inputs import (
    CANARY_PASSWORD,
    CANARY_PATIENT,
    PERSONS,
    VISITS_EACH,
    fill_pg,
    leftovers,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_source(pg_schema: tuple[str, str]) -> tuple[str, str]:
    url, schema = pg_schema
    fill_pg(url, schema)
    return url, schema


class Statements:
    """Every SQL statement this process sends to any engine, with a way to kill the latest backend."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.pids: list[int] = []

    def before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sql.append(statement)

    def on_connect(self, dbapi_con: Any, record: Any) -> None:
        if type(dbapi_con).__module__.startswith("psycopg"):
            with dbapi_con.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                self.pids.append(cur.fetchone()[0])


@pytest.fixture
def statements() -> Iterator[Statements]:
    seen = Statements()
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen.before)
    sa.event.listen(sa.engine.Engine, "connect", seen.on_connect)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen.before)
        sa.event.remove(sa.engine.Engine, "connect", seen.on_connect)


def _terminate(url: str, pid: int) -> None:
    engine = sa.create_engine(url)
    with engine.connect() as con:
        con.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    engine.dispose()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--schema", "cdm; DROP TABLE person;--"),
        ("--schema", '"cdm"."person"'),
        ("--schema", "{schema}; DROP TABLE {schema}.person;--"),
        ("--schema", '"{schema}"."person"'),
        ("--vocab-schema", "{schema}' OR '1'='1"),
        ("--cohort-schema", "pg_catalog; DROP TABLE {schema}.person"),
    ],
)
def test_injection_looking_names_refused_before_sql(
    pg_source: tuple[str, str], statements: Statements, tmp_path: Path, option: str, value: str
) -> None:
    url, schema = pg_source
    out = tmp_path / "cohort.duckdb"
    code, output = _run("extract", "omop", url, "--schema", schema, option, value.format(schema=schema), "-o", str(out))
    assert code == 3, output
    assert "does not exist" in output
    assert value.format(schema=schema) not in output  # the refused text is not echoed back
    assert not any("DROP" in s.upper() or "'1'='1" in s for s in statements.sql)
    assert not out.exists() and leftovers(tmp_path) == []
    engine = sa.create_engine(url)
    with engine.connect() as con:
        assert con.execute(sa.text(f'SELECT count(*) FROM "{schema}".person')).scalar() == PERSONS
    engine.dispose()


@pytest.mark.parametrize("concepts", ["201826); DROP TABLE person;--", "201826 OR 1=1", "1e3", "'201826'", "201826,,x"])
def test_injection_looking_concept_lists_refused(pg_source: tuple[str, str], tmp_path: Path, concepts: str) -> None:
    url, schema = pg_source
    code, output = _run("extract", "omop", url, "--schema", schema, "--concepts", concepts, "-o", str(tmp_path / "c"))
    assert code == 2, output
    assert "concept ids" in output
    assert not (tmp_path / "c").exists()


def test_injection_looking_person_ids_file_refused(pg_source: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_source
    ids = tmp_path / "ids.txt"
    ids.write_text("person_id\n1\n2); DROP TABLE person;--\n")
    code, output = _run("extract", "omop", url, "--schema", schema, "--person-ids", str(ids), "-o", str(tmp_path / "c"))
    assert code == 2 and "not an integer" in output and "DROP" not in output


def test_values_are_bound_never_inlined(pg_source: tuple[str, str], statements: Statements, tmp_path: Path) -> None:
    url, schema = pg_source
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in (7, 11, 13)) + "\n")
    out = tmp_path / "c.duckdb"
    code, output = _run("extract", "omop", url, "--schema", schema, "--person-ids", str(ids), "-o", str(out))
    assert code == 0, output
    with CohortStore.open(out) as store:
        assert store.person_count() == 3
    selects = [s for s in statements.sql if "person_id" in s and "FROM" in s.upper()]
    assert selects
    assert not any("13" in s.replace(schema, "") for s in selects)  # the ids travel as bound parameters


def test_identifier_columns_never_in_any_sql(
    pg_source: tuple[str, str], statements: Statements, tmp_path: Path
) -> None:
    url, schema = pg_source
    out = tmp_path / "c.duckdb"
    code, output = _run("extract", "omop", url, "--schema", schema, "-o", str(out))
    assert code == 0, output
    issued = "\n".join(statements.sql).lower()
    assert issued, "no SQL captured"
    for column in ("person_source_value", "visit_source_value", "gender_source_value", "note_text", "address_1"):
        assert column not in issued, column
    assert f'"{schema}".note' not in issued and f"{schema}.note " not in issued
    assert f'"{schema}".location' not in issued and f"{schema}.location " not in issued
    with CohortStore.open(out) as store:
        assert store.person_count() == PERSONS
        dump = str(store.con.execute("SELECT * FROM person").fetchall())
        dump += str(store.con.execute("SELECT * FROM visit_occurrence").fetchall())
    assert CANARY_PATIENT not in dump and "canary" not in dump.lower()


def test_dropped_connection_is_retried(
    pg_source: tuple[str, str], statements: Statements, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from synthcohort.connectors.omop.database import make_engine
    from synthcohort.connectors.omop.sql_source import extract

    url, schema = pg_source
    killed: list[int] = []

    def kill_once(table: str, n: int) -> None:
        if table == "visit_occurrence" and not killed:
            killed.append(statements.pids[-1])
            _terminate(url, statements.pids[-1])

    engine = make_engine(url)
    out = tmp_path / "c.duckdb"
    with caplog.at_level(logging.WARNING), CohortStore.building(out) as store:
        report = extract(engine, store, schema=schema, progress=kill_once, batch_rows=50)
    engine.dispose()
    assert killed, "the backend was never terminated"
    assert "retrying" in caplog.text and "dropped" in caplog.text
    assert report.loaded["visit_occurrence"] == PERSONS * VISITS_EACH
    with CohortStore.open(out) as store:
        assert store.counts()["visit_occurrence"] == PERSONS * VISITS_EACH  # no row twice after the retry
        assert store.person_count() == PERSONS


def test_connection_dropped_every_time_gives_up(
    pg_source: tuple[str, str], statements: Statements, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthcohort.cli import progress as progress_mod

    url, schema = pg_source
    kills: list[int] = []

    def advance(self: Any, n: int = 1, description: str | None = None) -> None:
        if description == "visit_occurrence":
            kills.append(statements.pids[-1])
            _terminate(url, statements.pids[-1])

    monkeypatch.setattr(progress_mod.Bar, "advance", advance)
    monkeypatch.setattr("synthcohort.connectors.omop.sql_source.BATCH_ROWS", 50)
    monkeypatch.setattr("synthcohort.connectors.omop.database.RETRY_PAUSE_S", 0.05)
    out = tmp_path / "out" / "c.duckdb"
    code, output = _run("extract", "omop", url, "--schema", schema, "-o", str(out))
    assert code == 4, output
    assert "gave up after 3 attempts" in output
    assert len(kills) == 3  # bounded: exactly the configured number of attempts
    assert not out.exists() and leftovers(tmp_path) == []


def test_unreachable_database_gives_up_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_DB_PASSWORD", CANARY_PASSWORD)
    monkeypatch.setattr("synthcohort.connectors.omop.database.RETRY_PAUSE_S", 0.01)
    out = tmp_path / "c.duckdb"
    code, output = _run("extract", "omop", "postgresql://someone@127.0.0.1:1/cdm", "-o", str(out))
    assert code == 4, output
    assert "cannot reach" in output and CANARY_PASSWORD not in output
    assert not out.exists() and leftovers(tmp_path) == []
