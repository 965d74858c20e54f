"""Extraction from CDM databases (DuckDB file, PostgreSQL): selection pushed into SQL, allow-listed columns only."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from synthcohort import cdm
from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from tests.conftest import PG_URL
from tests.omop.conftest import ANCESTOR, CANARY_ID, CANARY_TEXT, DESCENDANT, EUNOMIA_CSV_STATEMENTS, StatementLog

IN_SCOPE = cdm.CLINICAL_TABLES
EXCLUDED_COLUMNS = sorted(
    {c for t in IN_SCOPE for c in cdm.table(t).column_names if c not in cdm.table(t).omop_readable_columns}
)
EXCLUDED_TABLES = ("note", "note_nlp", "location", "provider", "care_site", "payer_plan_period", "cost", "specimen")


def extract(source: str, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["extract", "omop", source, "-o", str(out), *args])
    return result.exit_code, result.output


def source_count(cdm_file: Path, sql: str, params: list[object] | None = None) -> int:
    con = duckdb.connect(str(cdm_file), read_only=True)
    try:
        return int(con.execute(sql, params or []).fetchall()[0][0])
    finally:
        con.close()


def persons(path: Path) -> int:
    with CohortStore.open(path) as store:
        return store.person_count()


def assert_nothing_excluded(log: StatementLog) -> None:
    assert log.statements, "no statement was captured"
    text = "\n".join(log.statements).lower()
    for name in EXCLUDED_COLUMNS:
        assert not re.search(rf"\b{name}\b", text), name
    for name in EXCLUDED_TABLES:
        assert not re.search(rf"\.\s*\"?{name}\b|\bfrom\s+\"?{name}\b", text), name
    assert "person_source_value" in cdm.table("person").column_names and "person_source_value" in EXCLUDED_COLUMNS


def test_duckdb_source_all_persons(
    eunomia_cdm: Path, eunomia_store: Path, tmp_path: Path, statement_log: StatementLog
) -> None:
    out = tmp_path / "c.duckdb"
    code, output = extract(f"duckdb:///{eunomia_cdm}", out)
    assert code == 0, output
    assert_nothing_excluded(statement_log)
    with CohortStore.open(out) as got, CohortStore.open(eunomia_store) as from_csv:
        for table in IN_SCOPE:
            assert got.counts()[table] == from_csv.counts()[table], table
        assert got.counts()["concept"] == from_csv.counts()["concept"]
        assert got.get_meta("cdm_version") == "5.4"
        dump = str(got.con.execute("SELECT * FROM person").fetchall())
        assert CANARY_ID not in dump
        assert got.con.execute("SELECT count(*) FROM concept_ancestor").fetchone() == (3,)


def test_csv_folder_reads_no_excluded_column(eunomia_store: Path) -> None:
    log = StatementLog()
    log.statements = list(EUNOMIA_CSV_STATEMENTS)
    assert any("CREATE VIEW" in s for s in log.statements)
    assert_nothing_excluded(log)


def test_concept_set_with_descendants_equals_direct_sql(eunomia_cdm: Path, tmp_path: Path) -> None:
    direct = source_count(
        eunomia_cdm,
        "SELECT count(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id IN "
        "(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = ?)",
        [ANCESTOR],
    )
    only = source_count(
        eunomia_cdm,
        "SELECT count(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id = ?",
        [ANCESTOR],
    )
    assert direct > only > 0  # the descendant brings persons of its own
    code, output = extract(f"duckdb:///{eunomia_cdm}", tmp_path / "c.duckdb", "--concepts", str(ANCESTOR))
    assert code == 0, output
    assert persons(tmp_path / "c.duckdb") == direct
    code, output = extract(f"duckdb:///{eunomia_cdm}", tmp_path / "d.duckdb", "--concepts", f"{DESCENDANT}")
    assert code == 0, output
    assert persons(tmp_path / "d.duckdb") < direct


def test_cohort_id_reads_ohdsi_cohort_table(eunomia_cdm: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.duckdb"
    code, output = extract(f"duckdb:///{eunomia_cdm}", out, "--cohort-id", "1")
    assert code == 0, output
    expected = source_count(eunomia_cdm, "SELECT count(*) FROM cohort WHERE cohort_definition_id = 1")
    events = source_count(
        eunomia_cdm,
        "SELECT count(*) FROM measurement WHERE person_id IN "
        "(SELECT subject_id FROM cohort WHERE cohort_definition_id = 1)",
    )
    with CohortStore.open(out) as store:
        assert store.person_count() == expected == 14
        assert store.counts()["measurement"] == events


def test_person_ids_file_and_date_window(eunomia_cdm: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("person_id\n17\n18\n\n19\n18\n")
    out = tmp_path / "c.duckdb"
    code, output = extract(
        f"duckdb:///{eunomia_cdm}", out, "--person-ids", str(ids), "--start", "2015-01-01", "--end", "2019-12-31"
    )
    assert code == 0, output
    expected = source_count(
        eunomia_cdm,
        "SELECT count(*) FROM measurement WHERE person_id IN (17, 18, 19) "
        "AND measurement_date BETWEEN DATE '2015-01-01' AND DATE '2019-12-31'",
    )
    with CohortStore.open(out) as store:
        assert store.person_count() == 3
        assert store.counts()["measurement"] == expected > 0
        assert "ids" in (store.get_meta("selection") or "") and "17" not in (store.get_meta("selection") or "")


def test_csv_folder_selection_matches_database(eunomia: Path, eunomia_cdm: Path, tmp_path: Path) -> None:
    code, output = extract(str(eunomia), tmp_path / "a.duckdb", "--concepts", "372328,260139")
    assert code == 0, output
    code, output = extract(f"duckdb:///{eunomia_cdm}", tmp_path / "b.duckdb", "--concepts", "372328,260139")
    assert code == 0, output
    with CohortStore.open(tmp_path / "a.duckdb") as a, CohortStore.open(tmp_path / "b.duckdb") as b:
        assert a.counts()["condition_occurrence"] == b.counts()["condition_occurrence"]
        assert a.person_count() == b.person_count() > 0


@pytest.mark.postgres
def test_postgres_source(eunomia_pg: str, eunomia_store: Path, tmp_path: Path, statement_log: StatementLog) -> None:
    out = tmp_path / "c.duckdb"
    code, output = extract(PG_URL, out, "--schema", eunomia_pg)
    assert code == 0, output
    assert_nothing_excluded(statement_log)
    with CohortStore.open(out) as got, CohortStore.open(eunomia_store) as from_csv:
        for table in IN_SCOPE:
            assert got.counts()[table] == from_csv.counts()[table], table
        assert CANARY_ID not in str(got.con.execute("SELECT * FROM person").fetchall())
    code, output = extract(PG_URL, tmp_path / "d.duckdb", "--schema", eunomia_pg, "--cohort-id", "2")
    assert code == 0, output
    assert persons(tmp_path / "d.duckdb") == 5
    assert CANARY_TEXT not in output
