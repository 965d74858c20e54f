"""Groups of subcommands (extract, export, validate): a path where the subcommand belongs names the subcommands."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli


@pytest.mark.parametrize(
    ("argv", "examples"),
    [
        (
            ["extract", "./data", "-o", "c.duckdb"],
            ["synthcohort extract fhir ./data -o c.duckdb", "synthcohort extract omop ./data -o c.duckdb"],
        ),
        (["validate", "out.ndjson"], ["synthcohort validate fhir out.ndjson", "synthcohort validate omop out.ndjson"]),
        (
            ["export", "c.duckdb", "out dir/"],
            ["synthcohort export c.duckdb fhir 'out dir/'", "synthcohort export c.duckdb omop 'out dir/'"],
        ),
    ],
)
def test_a_path_where_the_subcommand_belongs_names_the_subcommands(argv: list[str], examples: list[str]) -> None:
    result = CliRunner().invoke(cli, argv, prog_name="synthcohort")
    assert result.exit_code == 2, result.output
    assert "No such command" not in result.output
    assert f"is not a command of `synthcohort {argv[0]}`: name one of its commands before it" in result.output
    assert " or ".join(f"`{example}`" for example in examples) in result.output


def test_a_folder_on_disk_without_a_slash_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["extract", "data"], prog_name="synthcohort")
    assert result.exit_code == 2 and "data is not a command of `synthcohort extract`" in result.output


@pytest.mark.parametrize("word", ["omopp", "fihr"])
def test_other_unknown_commands_keep_clicks_message(word: str) -> None:
    result = CliRunner().invoke(cli, ["extract", word, "x"], prog_name="synthcohort")
    assert result.exit_code == 2 and f"No such command '{word}'" in result.output


def test_a_command_given_before_the_groups_own_argument_is_put_after_it() -> None:
    """``export`` takes the store before the command, unlike extract and validate: ``export omop STORE TARGET``
    is told in the right order rather than as a missing command."""
    result = CliRunner().invoke(cli, ["export", "omop", "c.duckdb", "out/"], prog_name="synthcohort")
    assert result.exit_code == 2, result.output
    assert "`synthcohort export` takes COHORT before the command, as in `synthcohort export c.duckdb omop out/`" in (
        result.output
    )
