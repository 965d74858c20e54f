"""DuckDB connections reach no file, URL or extension beyond what they need, and cannot be reconfigured."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from synthcohort.cohort import CohortStore
from synthcohort.connectors.omop.csv_source import _reader

ESCAPES = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_parquet('https://example.org/x.parquet')",
    "COPY (SELECT 1) TO '/tmp/synthcohort-escape.csv'",
    "ATTACH '/tmp/synthcohort-escape.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_store_connection_is_closed_to_the_outside(tmp_path: Path, sql: str) -> None:
    with CohortStore.building(tmp_path / "c.duckdb") as store, pytest.raises(duckdb.Error):
        store.con.execute(sql)
    with CohortStore.open(tmp_path / "c.duckdb") as store, pytest.raises(duckdb.Error):
        store.con.execute(sql)
    assert not Path("/tmp/synthcohort-escape.csv").exists()


@pytest.mark.parametrize("sql", ESCAPES)
def test_csv_reader_sees_only_its_folder(tmp_path: Path, sql: str) -> None:
    (tmp_path / "person.csv").write_text("person_id\n1\n")
    con = _reader(tmp_path)
    assert con.read_csv(str(tmp_path / "person.csv"), header=True).fetchall() == [(1,)]
    with pytest.raises(duckdb.Error):
        con.execute(sql)
    with pytest.raises(duckdb.Error):
        con.execute(f"SELECT * FROM read_csv('{tmp_path}/../x.csv')")
    con.close()


def test_source_duckdb_view_reading_other_files_is_not_followed(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from synthcohort.cli.main import cli

    secret = tmp_path / "elsewhere.csv"
    secret.write_text("name\nJeanne Canary\n")
    src = tmp_path / "src.duckdb"
    con = duckdb.connect(str(src))
    con.execute(
        "CREATE TABLE person AS SELECT 1::BIGINT AS person_id, 8507 AS gender_concept_id, 1970 AS year_of_birth"
    )
    con.execute(
        "CREATE TABLE observation_period AS SELECT 1::BIGINT AS observation_period_id, 1::BIGINT AS person_id, "
        "DATE '2010-01-01' AS observation_period_start_date, DATE '2020-01-01' AS observation_period_end_date, "
        "32817 AS period_type_concept_id"
    )
    con.execute(
        "CREATE VIEW visit_occurrence AS SELECT 1::BIGINT AS visit_occurrence_id, 1::BIGINT AS person_id, "
        f"9202 AS visit_concept_id, DATE '2015-01-01' AS visit_start_date, name FROM read_csv('{secret}')"
    )
    con.close()
    out = tmp_path / "c.duckdb"
    result = CliRunner().invoke(cli, ["extract", "omop", f"duckdb:///{src}", "-o", str(out)])
    assert result.exit_code == 4, result.output
    assert "reads files or URLs outside the database" in result.output
    assert "Canary" not in result.output and not out.exists()
