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


def test_fhir_vocabulary_file_with_views_over_other_files_is_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from synthcohort.cli.main import cli

    secret = tmp_path / "elsewhere.csv"
    secret.write_text("concept_id,concept_code\n1,Canary\n")
    vocab = tmp_path / "vocab.duckdb"
    con = duckdb.connect(str(vocab))
    con.execute(f"CREATE VIEW concept AS SELECT * FROM read_csv('{secret}')")
    con.execute("CREATE TABLE concept_relationship (concept_id_1 BIGINT, concept_id_2 BIGINT)")
    con.close()
    fhir = tmp_path / "Patient.ndjson"
    fhir.write_text('{"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}\n')
    out = tmp_path / "c.duckdb"
    result = CliRunner().invoke(cli, ["extract", "fhir", str(fhir), "--vocab", str(vocab), "-o", str(out)])
    assert result.exit_code == 3, result.output
    assert "not followed" in result.output and "Canary" not in result.output
    assert not out.exists()


def test_athena_vocabulary_reader_sees_only_its_folder(tmp_path: Path) -> None:
    from synthcohort.mappings.vocabulary import Vocabulary

    folder = tmp_path / "athena"
    folder.mkdir()
    (folder / "CONCEPT.csv").write_text(
        "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\t"
        "valid_start_date\tvalid_end_date\tinvalid_reason\n"
        "201826\tType 2 diabetes mellitus\tCondition\tSNOMED\tClinical Finding\tS\t44054006\t19700101\t20991231\t\n"
    )
    (folder / "CONCEPT_RELATIONSHIP.csv").write_text(
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
    )
    vocab = Vocabulary.open(folder)
    assert vocab.con.execute("SELECT count(*) FROM concept").fetchone() == (1,)
    for sql in ESCAPES:
        with pytest.raises(duckdb.Error):
            vocab.con.execute(sql)


def test_writing_connection_has_capped_memory_and_threads(tmp_path: Path) -> None:
    """A long write (1,000,000 synthetic persons) keeps DuckDB's buffer pool bounded, not 80 % of RAM."""
    with CohortStore.building(tmp_path / "c.duckdb") as store:
        limit, threads = store.con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        ).fetchone() or (None, None)
        assert limit == "488.2 MiB"
        assert 1 <= int(threads) <= 2
        with pytest.raises(duckdb.Error):
            store.con.execute("SET memory_limit = '64GB'")


def test_reading_connection_has_capped_memory(tmp_path: Path) -> None:
    """An export reads the whole store: DuckDB's buffer pool would otherwise keep every block read
    (80 % of RAM), so that peak memory grew with the number of persons exported."""
    CohortStore.create(tmp_path / "c.duckdb").close()
    with CohortStore.open(tmp_path / "c.duckdb") as store:
        row = store.con.execute("SELECT current_setting('memory_limit')").fetchone()
        assert row == ("488.2 MiB",)
        with pytest.raises(duckdb.Error):
            store.con.execute("SET memory_limit = '64GB'")
