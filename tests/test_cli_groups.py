"""Groups of commands (synthcohort, extract, export, validate): a path where the command belongs names the commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import synthcohort
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


@pytest.mark.parametrize("word", ["omopp", "fihr", "x" * 5000])
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


@pytest.mark.parametrize(
    ("path", "examples"),
    [
        ("./cohort.duckdb", ["info ./cohort.duckdb", "fit ./cohort.duckdb -o MODEL"]),
        ("pipeline.toml", ["run pipeline.toml"]),
        ("out.ndjson", ["extract fhir out.ndjson -o COHORT.duckdb", "validate fhir out.ndjson"]),
        ("my data/", ["extract fhir 'my data/' -o COHORT.duckdb", "extract omop 'my data/' -o COHORT.duckdb"]),
    ],
)
def test_a_path_given_as_the_command_names_the_commands_that_take_it(path: str, examples: list[str]) -> None:
    result = CliRunner().invoke(cli, [path, "-o", "x"], prog_name="synthcohort")
    assert result.exit_code == 2, result.output
    assert "No such command" not in result.output
    assert "is not a command of `synthcohort`: name one of its commands before it, as in " in result.output
    assert " or ".join(f"`synthcohort {example}`" for example in examples) in result.output


def test_what_is_on_disk_tells_a_folder_from_a_model_and_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}", encoding="utf-8")
    (tmp_path / "notes").touch()
    monkeypatch.chdir(tmp_path)
    said = {word: CliRunner().invoke(cli, [word], prog_name="synthcohort") for word in ("data", "model", "notes")}
    assert {result.exit_code for result in said.values()} == {2}
    assert "data is not a command of `synthcohort`" in said["data"].output
    assert "`synthcohort extract omop data -o COHORT.duckdb`" in said["data"].output
    assert "`synthcohort generate model -n N -o SYNTH.duckdb`" in said["model"].output
    notes = "notes is not a command of `synthcohort`: name one of its commands before it (`synthcohort --help`"
    assert notes in said["notes"].output


@pytest.mark.parametrize("word", ["fitt", "x" * 5000])
def test_other_unknown_words_keep_clicks_message_at_the_top(word: str) -> None:
    result = CliRunner().invoke(cli, [word], prog_name="synthcohort")
    assert result.exit_code == 2 and f"No such command '{word}'" in result.output


def test_the_top_level_help_imports_no_heavy_module() -> None:
    """--help lists every command with its summary: the commands' modules load, their heavy imports do not."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from synthcohort.cli.main import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('numpy', 'duckdb', 'pyarrow') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(synthcohort.__file__).parents[1])}  # this source, not another
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "[]"
