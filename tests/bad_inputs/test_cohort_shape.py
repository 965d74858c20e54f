"""Bad inputs 24-26 at the generator's door: tiny cohorts, constant and empty columns, a flood of rare concepts.

Case -> test:
  24 cohorts of 0, 1 and 7 persons        -> test_tiny_cohorts_refused_clearly (also 40 persons:
                                             tests/test_generator.py::test_too_small_cohort_is_refused)
  25 one sex only, a column 100 % missing -> test_constant_and_empty_columns_fit_and_sample
  26 60,000 distinct drug concepts        -> test_flood_of_rare_concepts_rolled_up
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from tests.bad_inputs.inputs import leftovers


def _store(path: Path, persons: int, *, sex: list[int] | None = None, drugs_per_person: int = 0) -> Path:
    with CohortStore.building(path) as store:
        ids = list(range(1, persons + 1))
        store.append(
            "person",
            pa.table(
                {
                    "person_id": ids,
                    "gender_concept_id": sex * persons if sex else [8507 if i % 2 else 8532 for i in ids],
                    "year_of_birth": [1940 + i % 50 for i in ids],
                    "race_concept_id": [None] * persons,  # 100 % missing
                    "ethnicity_concept_id": [0] * persons,
                }
            ),
        )
        store.append(
            "observation_period",
            pa.table(
                {
                    "observation_period_id": ids,
                    "person_id": ids,
                    "observation_period_start_date": pa.array([18_000 + i for i in ids], pa.date32()),
                    "observation_period_end_date": pa.array([19_500 + i for i in ids], pa.date32()),
                    "period_type_concept_id": [32817] * persons,
                }
            ),
        )
        store.append(
            "visit_occurrence",
            pa.table(
                {
                    "visit_occurrence_id": ids,
                    "person_id": ids,
                    "visit_concept_id": [9202] * persons,
                    "visit_start_date": pa.array([18_100 + 3 * i for i in ids], pa.date32()),
                    "visit_end_date": pa.array([18_100 + 3 * i for i in ids], pa.date32()),
                    "visit_type_concept_id": [32817] * persons,
                }
            ),
        )
        if drugs_per_person:
            n = persons * drugs_per_person
            store.append(
                "drug_exposure",
                pa.table(
                    {
                        "drug_exposure_id": list(range(1, n + 1)),
                        "person_id": [1 + i // drugs_per_person for i in range(n)],
                        "drug_concept_id": [40_000_000 + i for i in range(n)],  # every one distinct
                        "drug_exposure_start_date": pa.array([18_200 + i % 900 for i in range(n)], pa.date32()),
                        "drug_exposure_end_date": pa.array([18_210 + i % 900 for i in range(n)], pa.date32()),
                        "drug_type_concept_id": [32817] * n,
                    }
                ),
            )
        store.set_meta("kind", "real")
    return path


@pytest.mark.parametrize(("persons", "count"), [(0, "has 0 persons"), (1, "has 1 person:"), (7, "has 7 persons")])
def test_tiny_cohorts_refused_clearly(tmp_path: Path, persons: int, count: str) -> None:
    cohort = _store(tmp_path / "c.duckdb", persons)
    result = CliRunner().invoke(cli, ["fit", str(cohort), "-o", str(tmp_path / "model")])
    assert result.exit_code == 3, result.output
    assert count in result.output and "at least" in result.output
    assert not (tmp_path / "model").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.duckdb"] and leftovers(tmp_path) == []


def test_constant_and_empty_columns_fit_and_sample(tmp_path: Path) -> None:
    cohort = _store(tmp_path / "c.duckdb", 150, sex=[8532])
    runner = CliRunner()
    result = runner.invoke(cli, ["fit", str(cohort), "-o", str(tmp_path / "model"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "s.duckdb"
    result = runner.invoke(cli, ["generate", str(tmp_path / "model"), "-n", "30", "-o", str(out), "--seed", "1"])
    assert result.exit_code in (0, 3), result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output
    if result.exit_code == 0:
        with CohortStore.open(out) as store:
            sexes = store.con.execute("SELECT DISTINCT gender_concept_id FROM person").fetchall()
        assert sexes == [(8532,)]


def test_flood_of_rare_concepts_rolled_up(tmp_path: Path) -> None:
    cohort = _store(tmp_path / "c.duckdb", 150, drugs_per_person=400)  # 60,000 distinct drug concepts
    result = CliRunner().invoke(cli, ["fit", str(cohort), "-o", str(tmp_path / "model"), "--seed", "1"])
    assert result.exit_code in (0, 3), result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output
    if result.exit_code == 0:
        import json

        manifest = json.loads((tmp_path / "model" / "model.json").read_text())
        safeguards = manifest["record"]["safeguards"]
        # every concept is held by one person: all the training persons' drug rows are rolled up or dropped
        assert safeguards["drug_exposure_dropped_rare"] == manifest["record"]["train_persons"] * 400
        assert "40000001" not in (tmp_path / "model" / "model.json").read_text()
