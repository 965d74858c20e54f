"""A DuckDB file or store path that does not exist: a clear message, its exit code, and no file created there."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.errors import InputError, SourceError

NO_DATABASE = "there is no DuckDB database file at"
NO_STORE = "no cohort store at"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["extract", "omop", "duckdb:///missing.duckdb", "-o", "C.duckdb"], SourceError.exit_code, NO_DATABASE),
        (["extract", "omop", "duckdb:///sub/missing.duckdb", "-o", "C.duckdb"], SourceError.exit_code, NO_DATABASE),
        (["extract", "omop", "duckdb:///sub", "-o", "C.duckdb"], SourceError.exit_code, "is a folder, not a DuckDB"),
        (["validate", "omop", "duckdb:///missing.duckdb"], SourceError.exit_code, NO_DATABASE),
        (["validate", "omop", "missing.duckdb"], InputError.exit_code, "nothing to validate at missing.duckdb"),
        (["info", "missing.duckdb"], InputError.exit_code, NO_STORE),
        (["fit", "missing.duckdb", "-o", "model"], InputError.exit_code, NO_STORE),
        (["export", "missing.duckdb", "omop", "out"], InputError.exit_code, NO_STORE),
        (["export", "missing.duckdb", "fhir", "out"], InputError.exit_code, NO_STORE),
        (["evaluate", "missing.duckdb", "missing.duckdb", "--report", "r.html"], InputError.exit_code, NO_STORE),
    ],
)
def test_missing_database_or_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output and "what to do" in result.output, result.output
    assert [p.name for p in tmp_path.rglob("*")] == ["sub"]  # nothing created: no empty database, no store
