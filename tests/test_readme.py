"""The README's CLI reference and exit codes are generated from the commands: a test fails when they drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool() -> object:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "tools" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_cli_reference_is_in_sync() -> None:
    tool = _tool()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tool.render(readme) == readme, "README.md is out of date: run python tools/cli_reference.py"  # type: ignore[attr-defined]


def test_reference_covers_every_command_and_exit_code() -> None:
    from synthcohort import errors
    from synthcohort.cli.main import COMMANDS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in COMMANDS:
        assert f"### `synthcohort {name}" in readme, name
    for cls in (errors.ConfigError, errors.GateFailed, errors.ValidationFailed, errors.DependencyMissing):
        assert f"| {cls.exit_code} |" in readme and f"`{cls.__name__}`" in readme


def test_readme_never_calls_data_anonymous() -> None:
    for path in (ROOT / "README.md", ROOT / "docs" / "native-generator.md", *sorted((ROOT / "examples").glob("*"))):
        text = path.read_text(encoding="utf-8").lower()
        assert "anonymous" not in text.replace('never calls a dataset "anonymous"', ""), path
