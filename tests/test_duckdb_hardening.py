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
