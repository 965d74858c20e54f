"""The HTML report's words: counts are written as messages write them ("1 patient", "1,234 patients")."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.evaluation.api import evaluate
from synthcohort.evaluation.report import render_html
from tests.bad_inputs.inputs import write_omop_csv
from tests.evaluation.stores import split_ids, subset_store


def test_a_store_of_one_patient_is_one_patient_in_the_report(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort.duckdb"
    result = CliRunner().invoke(
        cli, ["extract", "omop", str(write_omop_csv(tmp_path / "input", persons=150)), "-o", str(cohort)]
    )
    assert result.exit_code == 0, result.output
    one, two, _ = split_ids(cohort, 3, seed=0)
    synthetic = subset_store(cohort, tmp_path / "synthetic.duckdb", one[:1], {"kind": "synthetic"})
    control = subset_store(cohort, tmp_path / "control.duckdb", two[:1], {"kind": "control"})
    html = render_html(evaluate(cohort, synthetic, control))
    assert "(1 patient)" in html and "(1 patient, never used to fit the generator)" in html
    assert "(150 patients)" in html and "1 patients" not in html
