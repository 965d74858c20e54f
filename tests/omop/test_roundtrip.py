"""CSV -> cohort store -> DuckDB file / PostgreSQL schema laid out by the official OHDSI DDL: counts and constraints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from synthcohort.cdm import LOAD_ORDER
from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from tests.omop.conftest import foreign_keys, official_ddl, split_sql

DATASETS = {"synthea_1k": "synthea_1k_store", "eunomia": "eunomia_store"}
# Vocabulary reference tables outside the store's scope (the store carries CONCEPT, CONCEPT_ANCESTOR,
# CONCEPT_RELATIONSHIP and VOCABULARY): the constraints pointing at them are the only ones not applied.
OUT_OF_SCOPE = {"domain", "concept_class", "relationship"}


def _source_counts(folder: Path) -> dict[str, int]:
    out = {}
    for p in folder.iterdir():
        name = p.name.lower().split(".")[0]
        if name in LOAD_ORDER:
            out[name] = duckdb.sql(
                f"SELECT count(*) FROM read_csv('{p}', header = true, all_varchar = true)"
            ).fetchall()[0][0]
    return out


def _store(request: pytest.FixtureRequest, dataset: str) -> tuple[Path, Path]:
    return request.getfixturevalue(dataset), request.getfixturevalue(DATASETS[dataset])


@pytest.mark.parametrize("dataset", DATASETS)
def test_store_keeps_every_row_but_the_quarantined(dataset: str, request: pytest.FixtureRequest) -> None:
    folder, path = _store(request, dataset)
    with CohortStore.open(path) as store:
        counts = store.counts()
        report = json.loads(store.get_meta("extraction_report") or "{}")
        for table in LOAD_ORDER:
            pk = store.con.execute(f"SELECT * FROM {table} LIMIT 0").description[0][0]
            if table != "death":  # fresh ids: dense 1..n, never the source's
                lo, hi, n = store.con.execute(f"SELECT min({pk}), max({pk}), count(*) FROM {table}").fetchone()  # type: ignore[misc]
                assert n == 0 or (lo, hi) == (1, n), table
    for table, n in _source_counts(folder).items():
        assert counts[table] + sum(report["quarantined"].get(table, {}).values()) == n, table
    if dataset == "synthea_1k":  # person 265 is born in 2099
        assert report["quarantined"] == {"person": {"year_of_birth_implausible": 1}}


def test_fresh_ids_keep_each_persons_history(eunomia: Path, eunomia_store: Path) -> None:
    """Renumbering keeps every person's events together and every event's visit its own person's."""
    src = duckdb.connect()
    for table in ("condition_occurrence", "visit_occurrence"):
        src.execute(f"CREATE VIEW {table} AS SELECT * FROM read_csv('{eunomia}/{table.upper()}.csv', header = true)")
    signature = (
        "SELECT list(condition_concept_id || '@' || condition_start_date ORDER BY condition_concept_id, "
        "condition_start_date) FROM condition_occurrence GROUP BY person_id"
    )
    visit_check = (
        "SELECT count(*) FROM condition_occurrence c JOIN visit_occurrence v USING (visit_occurrence_id) "
        "WHERE c.person_id = v.person_id"
    )
    with CohortStore.open(eunomia_store) as store:
        assert Counter(map(str, store.con.execute(signature).fetchall())) == Counter(
            map(str, src.execute(signature).fetchall())
        )
        assert store.con.execute(visit_check).fetchone() == src.execute(visit_check).fetchone()


def _export(store: Path, target: str, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["export", str(store), "omop", target, *extra])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("dataset", DATASETS)
def test_duckdb_official_ddl(dataset: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    _, path = _store(request, dataset)
    target = tmp_path / "cdm.duckdb"
    con = duckdb.connect(str(target))
    for part in ("ddl", "primary_keys"):  # DuckDB rejects the official foreign-key file: those are queried below
        for stmt in split_sql(official_ddl("duckdb", part, "main")):
            con.execute(stmt)
    con.close()
    _export(path, f"duckdb:///{target}", "--append")
    con = duckdb.connect(str(target), read_only=True)
    with CohortStore.open(path) as store:
        for table, n in store.counts().items():
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (n if table != "cdm_source" else 1,), (
                table
            )
    checked = 0
    for table, name, col, ref, rcol in foreign_keys("duckdb"):
        if ref in OUT_OF_SCOPE:
            continue
        orphans = con.execute(
            f"SELECT count(*) FROM {table} x WHERE x.{col} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {ref} r WHERE r.{rcol} = x.{col})"
        ).fetchone()
        assert orphans == (0,), name
        checked += 1
    assert checked > 150


@pytest.mark.postgres
@pytest.mark.parametrize("dataset", DATASETS)
def test_postgres_official_ddl(dataset: str, request: pytest.FixtureRequest, pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    _, path = _store(request, dataset)
    engine = sa.create_engine(url)
    with engine.begin() as con:
        for part in ("ddl", "primary_keys"):
            for stmt in split_sql(official_ddl("postgresql", part, schema)):
                con.execute(sa.text(stmt))
    _export(path, url, "--schema", schema, "--append")
    applied = 0
    with engine.begin() as con:
        with CohortStore.open(path) as store:
            for table, n in store.counts().items():
                expected = n if table != "cdm_source" else 1
                assert con.execute(sa.text(f"SELECT count(*) FROM {schema}.{table}")).scalar() == expected, table
        for stmt in split_sql(official_ddl("postgresql", "constraints", schema)):
            ref = stmt.split("REFERENCES")[1].split("(")[0].strip().split(".")[-1].lower()
            if ref not in OUT_OF_SCOPE:
                con.execute(sa.text(stmt))  # raises if a single row breaks the constraint
                applied += 1
    engine.dispose()
    assert applied > 150


@pytest.mark.postgres
def test_postgres_created_tables_hold_keys(synthea_1k_store: Path, pg_schema: tuple[str, str]) -> None:
    """Without a prepared DDL the writer creates the tables itself, with primary and foreign keys."""
    url, schema = pg_schema
    _export(synthea_1k_store, url, "--schema", schema)
    engine = sa.create_engine(url)
    with engine.connect() as con:
        kinds = Counter(
            r[0]
            for r in con.execute(
                sa.text("SELECT constraint_type FROM information_schema.table_constraints WHERE table_schema = :s"),
                {"s": schema},
            )
        )
    engine.dispose()
    assert kinds["PRIMARY KEY"] == 10 and kinds["FOREIGN KEY"] >= 60
    result = CliRunner().invoke(cli, ["export", str(synthea_1k_store), "omop", url, "--schema", schema])
    assert result.exit_code == 5 and "--overwrite" in result.output
