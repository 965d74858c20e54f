"""``synthcohort run`` end to end (every stage, evaluation included) and a failed gate that blocks the export."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.pipeline.run_record import MANIFEST_NAME, sha256_file
from tests.test_pipeline_run import pipeline, toml

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "key" / "installation.key"))


def manifest(outdir: Path) -> dict[str, Any]:
    return json.loads((outdir / MANIFEST_NAME).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_run_end_to_end_writes_valid_outputs_and_a_run_record(synthea_1k: Path, tmp_path: Path) -> None:
    from synthcohort.connectors.fhir.validate import validate_fhir
    from synthcohort.connectors.omop.validate import validate_omop

    outputs = [
        {"kind": "omop", "url": "duckdb:///out/omop.duckdb"},
        {"kind": "omop", "path": "out/parquet", "format": "parquet"},
        {"kind": "fhir", "path": "out/fhir", "format": "ndjson"},
    ]
    raw = pipeline(synthea_1k, tmp_path, outputs, evaluate={"enabled": True, "accept_risk": "test run on Synthea data"})
    (tmp_path / "pipeline.toml").write_text(toml(raw), encoding="utf-8")
    log = tmp_path / "run.log"
    result = CliRunner().invoke(cli, ["-v", "--log-file", str(log), "run", str(tmp_path / "pipeline.toml")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert "run succeeded" in result.output and str(out / "report.html") in result.output

    record = manifest(out)
    assert record["status"] == "succeeded" and record["run_id"]
    assert record["seeds"] == {"model": 5, "generate": 6, "evaluate": 0}
    assert record["versions"]["synthcohort"] and record["versions"]["duckdb"]
    fingerprint = record["input_fingerprint"]
    assert fingerprint["persons"] >= 100 and len(fingerprint["content_hmac_sha256"]) == 64
    assert set(record["stages"]) == {"extract", "fit", "generate", "evaluate", "export"}
    assert all(stage["status"] == "done" for stage in record["stages"].values())
    assert record["gates"]["accepted_risk"] == "test run on Synthea data"
    assert {g["name"] for g in record["gates"]["results"]} >= {"dcr_share", "exact_copies", "mia_auc"}
    assert record["metrics"]["sizes"]["synthetic"] == 30 and "dcr_share" in record["metrics"]["figures"]
    assert (out / "report.html").stat().st_size > 10_000 and (out / "metrics.json").is_file()

    # every output file is listed with the sha256 of what is on disk
    duck, parquet, fhir = record["outputs"]
    assert duck["target"] == "omop.duckdb" and duck["rows"]["person"] == 30
    assert duck["files"][0]["sha256"] == sha256_file(out / "omop.duckdb")
    for entry, folder in ((parquet, out / "parquet"), (fhir, out / "fhir")):
        on_disk = sorted(p.name for p in folder.iterdir())
        assert sorted(f["path"] for f in entry["files"]) == on_disk
        assert all(f["sha256"] == sha256_file(folder / f["path"]) for f in entry["files"])
        assert entry["validation"]["ok"]
    assert fhir["rows"]["Patient"] == 30

    # and each passes the validators on its own
    assert validate_omop(str(out / "omop.duckdb")).ok
    assert validate_omop(str(out / "parquet")).ok
    assert validate_fhir(out / "fhir").ok
    assert not list(out.rglob("*.partial")), "a temporary file was left behind"
    assert "stage export done" in log.read_text(encoding="utf-8")


def test_gate_failure_exports_nothing(synthea_1k: Path, tmp_path: Path) -> None:
    raw = pipeline(
        synthea_1k,
        tmp_path,
        [{"kind": "omop", "path": "out/csv"}],
        evaluate={"enabled": True, "gates": {"mia_auc": 0.0}},
    )
    (tmp_path / "pipeline.toml").write_text(toml(raw), encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "pipeline.toml")])
    assert result.exit_code == 7, result.output
    assert "mia_auc" in result.output and "accept_risk" in result.output
    assert not (tmp_path / "out" / "csv").exists()
    record = manifest(tmp_path / "out")
    assert record["status"] == "gate-failed" and record["gates"]["passed"] is False
    assert (tmp_path / "out" / "report.html").is_file()
    assert os.stat(tmp_path / "work").st_mode & 0o077 == 0, "the workdir holds real data: owner-only"
