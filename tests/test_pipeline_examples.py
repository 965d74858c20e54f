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
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.pipeline.config import from_dict
from synthcohort.pipeline.run_record import MANIFEST_NAME
from synthcohort.pipeline.runner import run
from tests.conftest import shared_path

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


@pytest.mark.postgres
def test_warehouse_schema_to_synthetic_schema(
    synthea_1k_store: Path, pg_schema: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from synthcohort.connectors.omop.validate import validate_omop

    url, schema = pg_schema
    write_warehouse(synthea_1k_store, url, schema)
    target = f"{schema}_syn"
    canaries = {"CDM_PASSWORD": "canary-cdm-Pw-31f9", "SYNTH_PASSWORD": "canary-syn-Pw-88c2"}
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)  # the server trusts 127.0.0.1: any password is accepted, and must not leak
    raw = small(example("omop-warehouse-to-omop.toml"), tmp_path)
    raw["source"].update(url=url, schema=schema, vocab_schema=schema)
    raw["output"][0].update(url=url, schema=target)
    (tmp_path / "pipeline.toml").write_text(_toml(raw), encoding="utf-8")
    log = tmp_path / "debug.log"
    try:
        result = CliRunner().invoke(cli, ["-vv", "--log-file", str(log), "run", str(tmp_path / "pipeline.toml")])
        assert result.exit_code == 0, result.output
        check = validate_omop(url, schema=target)
        assert check.ok, check.as_dict()
        engine = sa.create_engine(url)
        with engine.connect() as con:
            persons = con.execute(sa.text(f'SELECT count(*) FROM "{target}".person')).scalar_one()
        engine.dispose()
        assert persons == 40
    finally:
        engine = sa.create_engine(url)
        with engine.begin() as con:
            con.execute(sa.text(f'DROP SCHEMA IF EXISTS "{target}" CASCADE'))
        engine.dispose()
    record = json.loads((tmp_path / "warehouse-release" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert record["status"] == "succeeded" and record["outputs"][0]["rows"]["person"] == 40
    written = [result.output.encode(), log.read_bytes()]
    written += [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".duckdb"]
    for value in canaries.values():
        assert not any(value.encode() in blob for blob in written), "a password reached a file or the output"


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


def _bulk_export(bundles: Path, folder: Path, limit: int) -> Path:
    """A Bulk Data export folder (one NDJSON file per resource type, Type/id references) from Bundles."""
    resources: list[dict[str, Any]] = []
    for path in sorted(bundles.glob("*.json.gz"))[:limit]:
        with gzip.open(path, "rb") as fh:
            resources += [entry["resource"] for entry in json.load(fh).get("entry", [])]
    types = {r["id"]: r["resourceType"] for r in resources if "id" in r}

    def relative(node: Any) -> Any:  # Synthea's urn:uuid fullUrls are the resources' ids
        if isinstance(node, dict):
            out = {k: relative(v) for k, v in node.items()}
            ref = out.get("reference")
            if isinstance(ref, str) and ref.startswith("urn:uuid:") and ref[9:] in types:
                out["reference"] = f"{types[ref[9:]]}/{ref[9:]}"
            return out
        return [relative(v) for v in node] if isinstance(node, list) else node

    folder.mkdir()
    by_type: dict[str, list[str]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(json.dumps(relative(resource)))
    for kind, lines in by_type.items():
        (folder / f"{kind}.000.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_fhir_bulk_export_to_synthetic_omop(tmp_path: Path) -> None:
    from synthcohort.connectors.omop.validate import validate_omop

    bundles = shared_path("data", "synthea-fhir-r4-bundles", "bundles")
    vocab = shared_path("data", "eunomia-synthea27nj", "csv")
    shutil.copy(EXAMPLES / "fhir-bulk-to-omop.toml", tmp_path)
    _bulk_export(bundles, tmp_path / "bulk-export", limit=120)
    raw = small(example("fhir-bulk-to-omop.toml"), tmp_path, persons=None)
    raw["source"]["vocab"] = str(vocab)
    result = run(from_dict(raw, tmp_path, "fhir-bulk-to-omop.toml"))
    assert result.status == "succeeded"
    release = tmp_path / "bulk-release"
    for target in (release / "synthetic-omop.duckdb", release / "parquet"):
        check = validate_omop(str(target))
        assert check.ok, check.as_dict()
    record = json.loads((release / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert record["input_fingerprint"]["persons"] >= 100
    assert record["stages"]["extract"]["report"]
    assert len(record["run_id"]) == 32


def _toml(raw: dict[str, Any]) -> str:
    from tests.test_pipeline_run import toml

    return toml(raw)
