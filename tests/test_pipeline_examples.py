"""The three example pipelines of examples/, each run on the shared data, their outputs validated.

Only the places change (the test's database, schema and folders) and the size (a small n, no
evaluation: its cost is covered by test_pipeline_run); the rest of each example is run as shipped.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from synthcohort.pipeline.config import from_dict
from synthcohort.pipeline.runner import run

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = {"n": 40}


@pytest.fixture(autouse=True)
def _own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "key" / "installation.key"))


def example(name: str) -> dict[str, Any]:
    return tomllib.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def small(raw: dict[str, Any], folder: Path, persons: int | None = 160) -> dict[str, Any]:
    raw["generate"] = {**raw.get("generate", {}), **SMALL}
    raw["evaluate"] = {"enabled": False}
    if persons:  # the store ids written by the OMOP writer are 1..N
        ids = folder / "persons.txt"
        ids.write_text("".join(f"{i}\n" for i in range(1, persons + 1)), encoding="utf-8")
        raw["cohort"] = {"person_ids": str(ids)}
    return raw


def write_warehouse(store: Path, target: str, schema: str | None = None) -> None:
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.omop.writer import write_omop

    with CohortStore.open(store) as opened:
        write_omop(opened, target, schema=schema)


def test_omop_to_fhir_bulk_for_a_data_hub(synthea_1k_store: Path, tmp_path: Path) -> None:
    from synthcohort.connectors.fhir.validate import validate_fhir

    shutil.copy(EXAMPLES / "omop-to-fhir-bulk.toml", tmp_path)
    write_warehouse(synthea_1k_store, f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    raw = small(example("omop-to-fhir-bulk.toml"), tmp_path)
    result = run(from_dict(raw, tmp_path, "omop-to-fhir-bulk.toml"))
    assert result.status == "succeeded"
    fhir = tmp_path / "hub-release" / "fhir"
    names = sorted(p.name for p in fhir.iterdir())
    assert "Patient.ndjson.gz" in names and all(n.endswith(".ndjson.gz") for n in names)
    with gzip.open(fhir / "Patient.ndjson.gz", "rt", encoding="utf-8") as fh:
        patients = [json.loads(line) for line in fh]
    assert len(patients) == 40
    assert all(any(s["code"] == "HTEST" for s in p["meta"]["security"]) for p in patients)
    check = validate_fhir(fhir)
    assert check.ok, check.to_dict()


def _toml(raw: dict[str, Any]) -> str:
    from tests.test_pipeline_run import toml

    return toml(raw)
