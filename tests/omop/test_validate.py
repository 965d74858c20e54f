"""The OMOP validity checker: a clean cohort passes, each kind of breakage is counted under its own check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from synthcohort import cdm
from synthcohort.cli.main import cli
from synthcohort.connectors.omop import validate as validate_module
from synthcohort.connectors.omop.validate import check_queries, validate_omop
from synthcohort.errors import SourceError

PERSON = "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,race_concept_id,ethnicity_concept_id"
PERIOD = (
    "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,period_type_concept_id"
)
VISIT = "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date,visit_type_concept_id"
COND = (
    "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id,"
    "visit_occurrence_id"
)
DEATH = "person_id,death_date"
CONCEPT = (
    "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,"
    "valid_start_date,valid_end_date"
)


def write(folder: Path, tables: dict[str, list[str]]) -> Path:
    folder.mkdir()
    for name, lines in tables.items():
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return folder


def clean() -> dict[str, list[str]]:
    return {
        "person": [PERSON, "1,8507,1970,1,1,0,0", "2,8532,1980,6,15,0,0"],
        "observation_period": [PERIOD, "1,1,2000-01-01,2020-12-31,32817", "2,2,2000-01-01,2020-12-31,32817"],
        "visit_occurrence": [VISIT, "1,1,9202,2010-01-01,2010-01-02,32817", "2,2,9202,2011-01-01,2011-01-01,32817"],
        "condition_occurrence": [COND, "1,1,201826,2010-01-01,32817,1", "2,2,201826,2011-01-01,32817,2"],
        "death": [DEATH],
        "concept": [
            CONCEPT,
            "0,No matching concept,Metadata,None,Undefined,,No matching concept,1970-01-01,2099-12-31",
            "8507,MALE,Gender,Gender,Gender,S,M,1970-01-01,2099-12-31",
            "8532,FEMALE,Gender,Gender,Gender,S,F,1970-01-01,2099-12-31",
            "9202,Outpatient Visit,Visit,Visit,Visit,S,OP,1970-01-01,2099-12-31",
            "32817,EHR,Type Concept,Type Concept,Type Concept,S,OMOP4976890,2020-08-20,2099-12-31",
            "201826,Type 2 diabetes mellitus,Condition,SNOMED,Clinical Finding,S,44054006,1970-01-01,2099-12-31",
        ],
    }


def test_clean_folder_passes(tmp_path: Path) -> None:
    folder = write(tmp_path / "ok", clean())
    result = validate_omop(str(folder))
    assert result.ok, result.failed()
    assert len(result.checks) > 40
    cli_result = CliRunner().invoke(cli, ["validate", "omop", str(folder)])
    assert cli_result.exit_code == 0, cli_result.output


@pytest.mark.parametrize(
    ("table", "line", "rule", "count"),
    [
        ("person", "1,8507,1975,1,1,0,0", "primary_key_unique", 1),
        ("person", "3,,1975,1,1,0,0", "required_not_null", 1),
        ("person", "3,8507,1800,1,1,0,0", "year_of_birth_plausible", 1),
        ("person", "3,0,1975,1,1,0,0", "gender_valid", 1),
        ("condition_occurrence", "3,9,201826,2010-01-01,32817,", "foreign_key_resolves", 1),
        ("condition_occurrence", "3,1,201826,2010-01-01,32817,77", "foreign_key_resolves", 1),
        ("condition_occurrence", "3,1,999,2010-01-01,32817,", "foreign_key_resolves", 1),
        ("condition_occurrence", "3,1,201826,1960-01-01,32817,", "not_before_birth", 1),
        ("condition_occurrence", "3,1,201826,2021-06-01,32817,", "inside_observation_period", 1),
        ("visit_occurrence", "3,1,9202,2010-01-05,2010-01-01,32817", "start_before_end", 1),
        ("death", "1,2005-01-01", "not_after_death", 2),
    ],
)
def test_each_breakage_counted(tmp_path: Path, table: str, line: str, rule: str, count: int) -> None:
    tables = clean()
    tables[table].append(line)
    folder = write(tmp_path / "bad", tables)
    result = validate_omop(str(folder))
    assert result.by_rule()[rule] == count, result.failed()
    assert result.violations >= count
    cli_result = CliRunner().invoke(cli, ["validate", "omop", str(folder)])
    assert cli_result.exit_code == 8 and f"FAIL {rule}" in cli_result.output


def test_store_validated_without_cdm_source(synthea_1k_store: Path) -> None:
    result = validate_omop(str(synthea_1k_store))
    assert "cdm_source_filled" not in result.by_rule()
    assert result.by_rule()["foreign_key_resolves"] == 0 and result.by_rule()["primary_key_unique"] == 0
    assert result.as_dict()["checks"] == len(result.checks)


@pytest.mark.parametrize(
    ("extra", "rule", "count"),
    [
        # A key present three times counts twice, as count(pk) - count(DISTINCT pk) did.
        ({"person": ["1,8507,1975,1,1,0,0", "1,8507,1976,1,1,0,0"]}, "primary_key_unique", 2),
        # A duplicated referenced key neither counts a resolving row nor hides a dangling one.
        (
            {
                "visit_occurrence": ["1,1,9202,2010-01-01,2010-01-02,32817"],
                "condition_occurrence": [
                    "3,1,201826,2010-01-01,32817,1",
                    "4,1,201826,2010-01-01,32817,77",
                ],
            },
            "foreign_key_resolves",
            1,
        ),
        # Overlapping periods: an event inside several is not counted, one outside every period once.
        (
            {
                "observation_period": ["3,1,2005-01-01,2015-12-31,32817", "4,1,2009-01-01,2012-12-31,32817"],
                "condition_occurrence": ["3,1,201826,2010-01-01,32817,", "4,1,201826,2021-06-01,32817,"],
            },
            "inside_observation_period",
            1,
        ),
    ],
)
def test_counts_exact_with_duplicates(tmp_path: Path, extra: dict[str, list[str]], rule: str, count: int) -> None:
    tables = clean()
    for table, lines in extra.items():
        tables[table].extend(lines)
    result = validate_omop(str(write(tmp_path / "dup", tables)))
    assert result.by_rule()[rule] == count, result.failed()


def test_queries_avoid_shapes_that_cannot_spill() -> None:
    """count(DISTINCT) and NOT EXISTS build key-only hash tables in one piece, which do not spill under the
    512 MB limit of a store connection (validating 1,000,000 persons ran out of memory); no check uses them."""
    queries = check_queries(cdm.cdm_tables(), prefix='"main".')
    rules = {q.rule for q in queries}
    assert {"primary_key_unique", "foreign_key_resolves", "inside_observation_period"} <= rules
    for q in queries:
        assert "DISTINCT" not in q.sql.upper() and "EXISTS" not in q.sql.upper(), q.sql


def test_validate_connection_is_capped_and_can_spill(synthea_1k_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    seen: list[tuple[str, str]] = []
    real_connect = duckdb.connect

    def connect(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        con = real_connect(*args, **kwargs)
        row = con.execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
        assert row is not None
        seen.append((row[0], row[1]))
        return con

    monkeypatch.setattr(duckdb, "connect", connect)
    assert validate_omop(str(synthea_1k_store)).checks
    (limit, temp), *_ = seen
    assert limit.endswith("MiB") and float(limit.split()[0]) < 1024  # the 512 MB cap
    assert temp == f"{synthea_1k_store}.tmp"  # a read-only connection still spills beside the file


def test_out_of_memory_is_a_clear_error(synthea_1k_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcohort.cohort import hardened_config

    monkeypatch.setattr(
        validate_module, "hardened_config", lambda read_only: hardened_config(read_only, memory_limit="1MB")
    )
    with pytest.raises(SourceError, match=r"the check primary_key_unique:\w+\.\w+ ran out of memory"):
        validate_omop(str(synthea_1k_store))
    result = CliRunner().invoke(cli, ["validate", "omop", str(synthea_1k_store)])
    assert result.exit_code == SourceError.exit_code, result.output
    assert "ran out of memory" in result.output and "internal fault" not in result.output
