"""Bad inputs 17-28 of ../shared/docs/bad-inputs.md that reach the OMOP connector.

17 injection-looking schema names     -> test_injection_schema_names_refused_before_sql
18 CDM v5.3 / no observation_period   -> test_v53_refused, test_no_observation_period_refused
19 NULL gender, concepts not in CONCEPT -> test_unmapped_values_counted
20 duplicate / negative / huge ids    -> test_duplicate_person_refused, test_odd_ids_renumbered
21 identifiers, free text, notes      -> test_sql_source.py::assert_nothing_excluded (statement log)
22 events before birth, after death, end < start, year 1800/2100 -> test_rule_breakers_quarantined
23 infinity dates, zone-aware times   -> test_postgres_infinity_refused_and_zones_normalised
24-26 tiny cohorts, constant columns, 60k concepts: the generator's part
27 unreachable, dropped, permission   -> test_unreachable_database, test_vocabulary_permission_denied,
                                          tests/bad_inputs/test_omop.py (dropped connection retried / given up)
28 locked DuckDB file                 -> test_locked_duckdb_source_and_target
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.connectors.omop.validate import validate_omop
from tests.conftest import PG_URL
from tests.omop.conftest import CANARY_ID, StatementLog, official_ddl, pg_engine, split_sql
from tests.omop.small_cdm import PERSONS, small_cdm

CANARY_PASSWORD = "pw-CANARY-omop-31337"


def extract(source: str, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["extract", "omop", source, "-o", str(out), *args])
    return result.exit_code, result.output


def nothing_left(folder: Path) -> bool:
    return not any(p.suffix in (".duckdb", ".partial", ".wal") or ".partial" in p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "name", ["cdm; DROP TABLE person;--", '"cdm"."person"', 'main"; DROP TABLE person; --', "main.person"]
)
def test_injection_schema_names_refused_before_sql(name: str, tmp_path: Path, statement_log: StatementLog) -> None:
    src = small_cdm(tmp_path / "cdm.duckdb")
    out = tmp_path / "out" / "c.duckdb"
    for option in ("--schema", "--vocab-schema", "--cohort-schema"):
        code, output = extract(f"duckdb:///{src}", out, option, name)
        assert code == 3, output
        assert "does not exist" in output and name not in output
    assert not any("drop" in s.lower() or name in s for s in statement_log.statements)
    assert not out.parent.exists() or nothing_left(out.parent)
    assert duckdb.connect(str(src), read_only=True).execute("SELECT count(*) FROM person").fetchall() == [(PERSONS,)]
    with CohortStore.building(tmp_path / "s.duckdb") as store:
        store.append("person", duckdb.sql("SELECT 1 AS person_id, 8507 AS gender_concept_id").to_arrow_table())
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "s.duckdb"), "omop", PG_URL, "--schema", name])
    assert result.exit_code == 2 and "schema name" in result.output


def test_v53_refused(tmp_path: Path) -> None:
    renamed = small_cdm(
        tmp_path / "a.duckdb",
        "ALTER TABLE visit_occurrence RENAME COLUMN admitted_from_concept_id TO admitting_source_concept_id",
    )
    declared = small_cdm(
        tmp_path / "b.duckdb",
        "INSERT INTO cdm_source (cdm_source_name, cdm_source_abbreviation, cdm_holder, source_release_date, "
        "cdm_release_date, cdm_version, cdm_version_concept_id, vocabulary_version) "
        "VALUES ('x', 'x', 'x', DATE '2020-01-01', DATE '2020-01-01', 'v5.3.1', 0, 'v5')",
    )
    for src in (renamed, declared):
        code, output = extract(f"duckdb:///{src}", tmp_path / "out" / "c.duckdb")
        assert code == 3 and "v5.3" in output, output
        assert not (tmp_path / "out" / "c.duckdb").exists()


def test_no_observation_period_refused(tmp_path: Path) -> None:
    src = small_cdm(tmp_path / "cdm.duckdb", "DROP TABLE observation_period")
    code, output = extract(f"duckdb:///{src}", tmp_path / "out" / "c.duckdb")
    assert code == 3 and "OBSERVATION_PERIOD" in output, output
    assert not (tmp_path / "out").exists() or nothing_left(tmp_path / "out")


def test_duplicate_person_refused(tmp_path: Path) -> None:
    src = small_cdm(
        tmp_path / "cdm.duckdb",
        "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id) "
        "VALUES (3, 8507, 1960, 0, 0)",
    )
    code, output = extract(f"duckdb:///{src}", tmp_path / "out" / "c.duckdb")
    assert code == 3 and "duplicate person_id" in output, output
    assert nothing_left(tmp_path / "out")


def test_odd_ids_renumbered(tmp_path: Path) -> None:
    """Negative ids and ids above 2^31 come out fresh and dense, links intact."""
    src = small_cdm(
        tmp_path / "cdm.duckdb",
        "ALTER TABLE person ALTER COLUMN person_id TYPE BIGINT",
        "ALTER TABLE observation_period ALTER COLUMN person_id TYPE BIGINT",
        "ALTER TABLE visit_occurrence ALTER COLUMN person_id TYPE BIGINT",
        "ALTER TABLE visit_occurrence ALTER COLUMN visit_occurrence_id TYPE BIGINT",
        "ALTER TABLE condition_occurrence ALTER COLUMN person_id TYPE BIGINT",
        "ALTER TABLE condition_occurrence ALTER COLUMN visit_occurrence_id TYPE BIGINT",
        "UPDATE person SET person_id = CASE WHEN person_id = 1 THEN -7 ELSE person_id + 3000000000 END",
        "UPDATE observation_period SET person_id = CASE WHEN person_id = 1 THEN -7 ELSE person_id + 3000000000 END",
        "UPDATE visit_occurrence SET person_id = CASE WHEN person_id = 1 THEN -7 ELSE person_id + 3000000000 END, "
        "visit_occurrence_id = visit_occurrence_id + 5000000000",
        "UPDATE condition_occurrence SET person_id = CASE WHEN person_id = 1 THEN -7 ELSE person_id + 3000000000 END, "
        "visit_occurrence_id = visit_occurrence_id + 5000000000",
    )
    out = tmp_path / "c.duckdb"
    code, output = extract(f"duckdb:///{src}", out)
    assert code == 0, output
    with CohortStore.open(out) as store:
        assert store.person_ids() == list(range(1, PERSONS + 1))
        linked = store.con.execute(
            "SELECT count(*) FROM condition_occurrence c JOIN visit_occurrence v USING (visit_occurrence_id) "
            "WHERE c.person_id = v.person_id"
        ).fetchall()
        assert linked == [(PERSONS,)]
        assert store.con.execute("SELECT max(visit_occurrence_id) FROM visit_occurrence").fetchall() == [(PERSONS,)]


def test_unmapped_values_counted(tmp_path: Path) -> None:
    src = small_cdm(
        tmp_path / "cdm.duckdb",
        "ALTER TABLE person ALTER COLUMN gender_concept_id DROP NOT NULL",
        "UPDATE person SET gender_concept_id = NULL WHERE person_id = 2",
        "UPDATE condition_occurrence SET condition_source_concept_id = 123456789 WHERE person_id <= 3",
    )
    out = tmp_path / "c.duckdb"
    code, output = extract(f"duckdb:///{src}", out)
    assert code == 0, output
    assert "3 condition source concept id not in vocabulary set to 0" in output
    with CohortStore.open(out) as store:
        report = json.loads(store.get_meta("extraction_report") or "{}")
        assert report["notes"]["person"] == {"gender_concept_id_null_set_to_0": 1}
        assert store.con.execute("SELECT count(*) FROM person WHERE gender_concept_id = 0").fetchall() == [(1,)]
        assert store.con.execute(
            "SELECT count(*) FROM condition_occurrence WHERE condition_source_concept_id = 123456789"
        ).fetchall() == [(0,)]
        assert store.con.execute("SELECT concept_name FROM concept WHERE concept_id = 201826").fetchall() == [
            ("Type 2 diabetes mellitus",)
        ]


def test_rule_breakers_quarantined(tmp_path: Path) -> None:
    src = small_cdm(
        tmp_path / "cdm.duckdb",
        "UPDATE person SET year_of_birth = 1800 WHERE person_id = 1",
        "UPDATE person SET year_of_birth = 2100 WHERE person_id = 2",
        "INSERT INTO death (person_id, death_date, death_type_concept_id) VALUES (3, DATE '2009-01-01', 32817)",
        "UPDATE visit_occurrence SET visit_end_date = DATE '2010-04-01' WHERE person_id = 4",
        "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id, "
        "condition_start_date, condition_type_concept_id) VALUES (9001, 5, 201826, DATE '1940-01-01', 32817)",
        "INSERT INTO death (person_id, death_date, death_type_concept_id) VALUES (6, DATE '2010-01-01', 32817), "
        "(6, DATE '2011-01-01', 32817)",
        "INSERT INTO observation_period VALUES (50, 5, DATE '2019-01-01', DATE '2022-12-31', 44814724), "
        "(51, 5, DATE '2022-06-01', DATE '2023-01-31', 44814724), (52, 4, DATE '2022-01-01', DATE '2022-12-31', 32817)",
    )
    out = tmp_path / "c.duckdb"
    code, output = extract(f"duckdb:///{src}", out)
    assert code == 0, output
    with CohortStore.open(out) as store:
        report = json.loads(store.get_meta("extraction_report") or "{}")
        assert store.person_count() == PERSONS - 2
        periods = store.con.execute(
            "SELECT observation_period_start_date::VARCHAR, observation_period_end_date::VARCHAR "
            "FROM observation_period"
        ).fetchall()
        assert periods.count(("2000-01-01", "2023-01-31")) == 1  # three overlapping periods of one person
        assert store.con.execute("SELECT max(observation_period_id), count(*) FROM observation_period").fetchall() == [
            (PERSONS - 1, PERSONS - 1)
        ]
    q = report["quarantined"]
    assert q["person"] == {"year_of_birth_implausible": 2}
    assert q["visit_occurrence"] == {"person_quarantined": 2, "end_before_start": 1, "after_death": 2}
    assert q["condition_occurrence"] == {"person_quarantined": 2, "before_birth": 1, "after_death": 2}
    assert q["observation_period"] == {"person_quarantined": 2, "overlapping_merged": 2}
    assert q["death"] == {"duplicate_death": 1}
    assert report["notes"]["condition_occurrence"] == {"visit_link_dropped": 1}
    result = validate_omop(str(out))
    rules = result.by_rule()
    for rule in ("not_before_birth", "not_after_death", "start_before_end", "year_of_birth_plausible"):
        assert rules[rule] == 0, rule
    assert CANARY_ID not in output


def test_unreachable_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_DB_PASSWORD", CANARY_PASSWORD)
    monkeypatch.setattr("synthcohort.connectors.omop.database.RETRY_PAUSE_S", 0.01)
    code, output = extract("postgresql://someone@127.0.0.1:9/cdm", tmp_path / "c.duckdb")
    assert code == 4, output
    assert "cannot reach the database" in output and "gave up after 3 attempts" in output
    assert CANARY_PASSWORD not in output
    assert not (tmp_path / "c.duckdb").exists() and nothing_left(tmp_path)
    code, output = extract(f"postgresql://someone:{CANARY_PASSWORD}@127.0.0.1:9/cdm", tmp_path / "c.duckdb")
    assert code == 2 and CANARY_PASSWORD not in output


def _pg_small(schema: str, *extra: str) -> None:
    engine = pg_engine()
    with engine.begin() as con:
        con.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        for stmt in split_sql(official_ddl("postgresql", "ddl", schema)):
            con.execute(sa.text(stmt))
        for i in range(1, 4):
            con.execute(
                sa.text(
                    f"INSERT INTO {schema}.person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
                    f"ethnicity_concept_id) VALUES ({i}, 8507, 1960, 0, 0)"
                )
            )
            con.execute(
                sa.text(
                    f"INSERT INTO {schema}.observation_period VALUES ({i}, {i}, '2000-01-01', '2020-01-01', 44814724)"
                )
            )
            con.execute(
                sa.text(
                    f"INSERT INTO {schema}.visit_occurrence (visit_occurrence_id, person_id, visit_concept_id, "
                    f"visit_start_date, visit_start_datetime, visit_end_date, visit_type_concept_id) "
                    f"VALUES ({i}, {i}, 9202, '2010-01-01', '2010-01-01 10:00:00', '2010-01-01', 32817)"
                )
            )
        for stmt in extra:
            con.execute(sa.text(stmt))
    engine.dispose()


@pytest.mark.postgres
def test_postgres_infinity_refused_and_zones_normalised(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_schema
    _pg_small(
        schema,
        f"ALTER TABLE {schema}.visit_occurrence ALTER COLUMN visit_start_datetime TYPE timestamptz "
        "USING visit_start_datetime AT TIME ZONE 'Europe/Paris'",
    )
    code, output = extract(url, tmp_path / "a.duckdb", "--schema", schema)
    assert code == 0, output
    with CohortStore.open(tmp_path / "a.duckdb") as store:
        times = {
            r[0].isoformat() for r in store.con.execute("SELECT visit_start_datetime FROM visit_occurrence").fetchall()
        }
    assert times == {"2010-01-01T09:00:00"}  # 10:00 in Paris (UTC+1 in January) is 09:00 UTC
    engine = pg_engine()
    with engine.begin() as con:
        con.execute(sa.text(f"UPDATE {schema}.observation_period SET observation_period_end_date = 'infinity'"))
    engine.dispose()
    code, output = extract(url, tmp_path / "b.duckdb", "--schema", schema)
    assert code == 3 and "infinity" in output, output
    assert not (tmp_path / "b.duckdb").exists()


@pytest.mark.postgres
def test_vocabulary_permission_denied(eunomia_pg: str, tmp_path: Path) -> None:
    engine = pg_engine()
    role, vocab = f"r_{uuid.uuid4().hex[:8]}", f"voc_{uuid.uuid4().hex[:8]}"
    with engine.begin() as con:
        con.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        con.execute(sa.text(f"CREATE SCHEMA {vocab}"))
        con.execute(sa.text(f"CREATE TABLE {vocab}.concept AS SELECT * FROM {eunomia_pg}.concept"))
        con.execute(sa.text(f"GRANT USAGE ON SCHEMA {eunomia_pg}, {vocab} TO {role}"))
        con.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {eunomia_pg} TO {role}"))
    try:
        url = PG_URL.replace("postgres@", f"{role}@")
        code, output = extract(url, tmp_path / "c.duckdb", "--schema", eunomia_pg, "--vocab-schema", vocab)
        assert code == 4 and "permission denied" in output, output
        assert "grant" in output.lower()
        assert not (tmp_path / "c.duckdb").exists() and nothing_left(tmp_path)
    finally:
        with engine.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA {vocab} CASCADE"))
            con.execute(sa.text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {eunomia_pg} FROM {role}"))
            con.execute(sa.text(f"REVOKE ALL ON SCHEMA {eunomia_pg} FROM {role}"))
            con.execute(sa.text(f"DROP ROLE {role}"))
        engine.dispose()


def test_locked_duckdb_source_and_target(tmp_path: Path, synthea_1k_store: Path) -> None:
    src = small_cdm(tmp_path / "cdm.duckdb")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(src)!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, output = extract(f"duckdb:///{src}", tmp_path / "out" / "c.duckdb")
        assert code == 4 and "locked" in output, output
        result = CliRunner().invoke(cli, ["export", str(synthea_1k_store), "omop", f"duckdb:///{src}", "--append"])
        assert result.exit_code == 5 and "locked" in result.output, result.output
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert not (tmp_path / "out").exists() or nothing_left(tmp_path / "out")
