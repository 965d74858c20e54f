"""Fixtures for the bad-input suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_inputs.inputs import write_omop_csv


@pytest.fixture
def omop_csv(tmp_path: Path) -> Path:
    return write_omop_csv(tmp_path / "omop-in")


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cohort store, fitted native model folder) of 150 hand-written persons, built once per session."""
    from click.testing import CliRunner

    from synthcohort.cli.main import cli

    base = tmp_path_factory.mktemp("small-model")
    src = write_omop_csv(base / "input", persons=150)
    cohort, model = base / "cohort.duckdb", base / "model"
    for argv in (
        ["extract", "omop", str(src), "-o", str(cohort)],
        ["fit", str(cohort), "-o", str(model), "--seed", "3"],
    ):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, result.output
    return cohort, model
