"""A whole pipeline with fixed seeds gives identical bytes twice (and a rerun after an interruption, bad input 32).

Run A reuses the session's fitted model (extract + fit, seed 3); run B does everything again from the same input in
another folder. Every exported file must have the same sha256, whatever the folder the run happened in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from click.testing import CliRunner

from synthcohort.cli.main import cli
from tests.bad_inputs.inputs import write_omop_csv


def _run(*argv: str) -> None:
    result = CliRunner().invoke(cli, list(argv))
    assert result.exit_code == 0, result.output


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _generate_and_export(model: Path, work: Path) -> dict[str, str]:
    synth = work / "synth.duckdb"
    _run("generate", str(model), "-n", "80", "-o", str(synth), "--seed", "11")
    _run("export", str(synth), "omop", str(work / "csv"))
    _run("export", str(synth), "omop", str(work / "parquet"), "--format", "parquet")
    return _digests(work / "csv") | {f"parquet/{k}": v for k, v in _digests(work / "parquet").items()}


def test_same_seeds_same_bytes(small_model: tuple[Path, Path], tmp_path: Path) -> None:
    first = _generate_and_export(small_model[1], tmp_path / "a")
    second_dir = tmp_path / "b"
    src = write_omop_csv(second_dir / "input", persons=150)
    cohort, model = second_dir / "cohort.duckdb", second_dir / "model"
    _run("extract", "omop", str(src), "-o", str(cohort))
    _run("fit", str(cohort), "-o", str(model), "--seed", "3")
    second = _generate_and_export(model, second_dir)
    assert len(first) >= 10 and any(name.startswith("person") for name in first)
    assert first == second
    third = _generate_and_export(model, tmp_path / "c")  # same model again, after run B's files exist
    assert third == first
