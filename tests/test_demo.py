"""``synthcohort demo``: the whole pipeline on the sample that comes with the install, ending with where things are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcohort.connectors.fhir.validate import validate_fhir
    from synthcohort.connectors.omop.validate import validate_omop

    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "key"))
    out = tmp_path / "demo"
    log = tmp_path / "demo.log"
    result = CliRunner().invoke(cli, ["-vv", "--log-file", str(log), "demo", str(out), "--persons", "30"])
    assert result.exit_code == 0, result.output + (log.read_text(encoding="utf-8")[-4000:] if log.exists() else "")
    assert f"report: {out / 'report.html'}" in result.output
    assert "open the report in a browser" in result.output
    for name in ("report.html", "metrics.json", "run-manifest.json", "omop/synthetic.duckdb"):
        assert (out / name).is_file(), name
    assert validate_omop(str(out / "omop" / "synthetic.duckdb")).ok
    assert validate_omop(str(out / "omop" / "csv")).ok
    assert validate_fhir(out / "fhir").ok
    record = json.loads((out / "run-manifest.json").read_text(encoding="utf-8"))
    assert record["status"] == "succeeded" and record["metrics"]["sizes"]["synthetic"] == 30
    assert record["input_fingerprint"]["persons"] > 1000
    assert "demonstration" in record["gates"]["accepted_risk"]

    again = CliRunner().invoke(cli, ["demo", str(out), "--persons", "30"])
    assert again.exit_code == 5 and "--overwrite" in again.output, again.output
