"""Tiny hand-written CDM v5.4 databases (official DuckDB DDL) for the bad-input tests."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.omop.conftest import CANARY_ID, CANARY_TEXT, official_ddl, split_sql

PERSONS = 6


def small_cdm(path: Path, *extra_sql: str) -> Path:
    """Six persons born 1950-1955, one observation period, one visit and one condition each; then ``extra_sql``."""
    con = duckdb.connect(str(path))
    for stmt in split_sql(official_ddl("duckdb", "ddl", "main")):
        con.execute(stmt)
    for i in range(1, PERSONS + 1):
        con.execute(
            "INSERT INTO person (person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth, "
            "race_concept_id, ethnicity_concept_id, person_source_value) VALUES (?, ?, ?, 6, 15, 8527, 38003564, ?)",
            [i, 8507 if i % 2 else 8532, 1949 + i, f"{CANARY_ID}-{i}"],
        )
        con.execute(
            "INSERT INTO observation_period VALUES (?, ?, DATE '2000-01-01', DATE '2020-12-31', 44814724)", [i, i]
        )
        con.execute(
            "INSERT INTO visit_occurrence (visit_occurrence_id, person_id, visit_concept_id, visit_start_date, "
            "visit_end_date, visit_type_concept_id, visit_source_value) "
            "VALUES (?, ?, 9202, DATE '2010-05-01', DATE '2010-05-02', 32817, ?)",
            [100 + i, i, CANARY_TEXT],
        )
        con.execute(
            "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id, "
            "condition_start_date, condition_end_date, condition_type_concept_id, visit_occurrence_id, "
            "condition_source_value) VALUES (?, ?, 201826, DATE '2010-05-01', DATE '2010-06-01', 32817, ?, ?)",
            [1000 + i, i, 100 + i, CANARY_TEXT],
        )
    con.execute(
        "INSERT INTO concept VALUES (201826, 'Type 2 diabetes mellitus', 'Condition', 'SNOMED', 'Clinical Finding', "
        "'S', '44054006', DATE '1970-01-01', DATE '2099-12-31', NULL)"
    )
    for stmt in extra_sql:
        con.execute(stmt)
    con.close()
    return path
