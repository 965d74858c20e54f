"""OMOP CSV folder -> cohort store, on the shared real data, through the CLI."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore


def _rows(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


@pytest.mark.parametrize("dataset", ["synthea_1k", "eunomia"])
def test_extract_keeps_every_row(dataset: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    folder: Path = request.getfixturevalue(dataset)
    out = tmp_path / "cohort.duckdb"
    result = CliRunner().invoke(cli, ["extract", "omop", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with CohortStore.open(out) as store:
        counts = store.counts()
        report = json.loads(store.get_meta("extraction_report") or "{}")
    for table in ("person", "visit_occurrence", "condition_occurrence", "drug_exposure", "measurement"):
        files = [p for p in folder.iterdir() if p.name.lower().startswith(table + ".")]
        quarantined = sum(report["quarantined"].get(table, {}).values())
        assert counts[table] + quarantined == _rows(files[0]), table


def test_info_reports_counts(synthea_1k_store: Path) -> None:
    result = CliRunner().invoke(cli, ["info", str(synthea_1k_store)])
    assert result.exit_code == 0, result.output
    # 565 source persons; one (year_of_birth 2099) is quarantined at extraction
    assert "persons: 564" in result.output


def test_existing_output_refused(synthea_1k: Path, tmp_path: Path) -> None:
    out = tmp_path / "cohort.duckdb"
    out.write_bytes(b"keep me")
    result = CliRunner().invoke(cli, ["extract", "omop", str(synthea_1k), "-o", str(out)])
    assert result.exit_code == 5
    assert "--overwrite" in result.output
    assert out.read_bytes() == b"keep me"
