"""The FHIR writer's SQL rendering writes what orjson would: numbers, ids, codings with odd displays."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest

from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.ids import fhir_uuid, uuid_sql
from synthcohort.connectors.fhir.reader import read_fhir
from synthcohort.connectors.fhir.render import load_concepts
from synthcohort.connectors.fhir.writer import FhirWriter, write_fhir
from synthcohort.mappings.writing import number_sql


def _orjson_number(v: float) -> str | None:
    if not math.isfinite(v):
        return None
    return orjson.dumps(int(v) if v.is_integer() and abs(v) < 2**53 else v).decode()


def test_numbers_render_as_orjson_writes_them() -> None:
    rng = random.Random(3)
    values = [0.0, -0.0, 1.0, 0.1, 1e-5, -1.2345e-5, 9.99e-5, 1e-4, 1e-7, 2.0**53, 1e16, 5e-324, math.nan, math.inf]
    for _ in range(3000):
        values.append(rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30))
        values.append(struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0])
        values.append(round(rng.uniform(0, 500), rng.randint(0, 6)))
    got = duckdb.execute(f"SELECT {number_sql('v')} FROM (SELECT unnest($1::DOUBLE[]) AS v)", [values]).fetchall()
    wrong = [(v, g) for v, (g,) in zip(values, got, strict=True) if g != _orjson_number(v)]
    assert wrong == []


def test_sql_ids_are_the_python_ids() -> None:
    texts = [f"7|measurement|{i}" for i in range(500)] + ["seed with 'quote'|person|-3"]
    sql = f"SELECT {uuid_sql('h')} FROM (SELECT md5(t) AS h FROM (SELECT unnest($1::VARCHAR[]) AS t))"
    got = [r[0] for r in duckdb.execute(sql, [texts]).fetchall()]
    assert got == [fhir_uuid(t) for t in texts]


def test_concept_names_keep_every_character(tmp_path: Path) -> None:
    names = ['a "quoted" name', "back\\slash / slash", "tab\tline\nbreak\x01", "été 😀 \u2028"]
    concept_ids = [3_000_001 + i for i in range(len(names))]
    with CohortStore.building(tmp_path / "store.duckdb") as store:
        store.append(
            "concept",
            pa.table(
                {
                    "concept_id": concept_ids,
                    "concept_name": names,
                    "vocabulary_id": ["SNOMED"] * len(names),
                    "concept_code": [str(i) for i in range(len(names))],
                }
            ),
        )
        cur = store.con.cursor()
        load_concepts(cur, store)
        rows = dict(cur.execute("SELECT concept_id, coding FROM sc_concept").fetchall())
        cur.close()
    for cid, name in zip(concept_ids, names, strict=True):
        coding = orjson.loads(rows[cid])
        assert coding["display"] == name
        assert rows[cid] == orjson.dumps(coding).decode()


def test_empty_store_writes_device_and_provenance_only(tmp_path: Path) -> None:
    with CohortStore.building(tmp_path / "store.duckdb"):
        pass
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        report = write_fhir(store, tmp_path / "out")
    assert dict(report.written) == {"Device": 1, "Provenance": 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Device.ndjson", "Provenance.ndjson"]


def test_provenance_targets_every_patient_across_chunks(tmp_path: Path) -> None:
    """The Provenance's target list is streamed chunk by chunk; it names every Patient, in order."""
    patients = [
        {"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": f"19{50 + i}-01-02"}
        for i in range(7)
    ]
    (tmp_path / "in.ndjson").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in patients))
    with CohortStore.building(tmp_path / "store.duckdb") as store:
        read_fhir(tmp_path / "in.ndjson", store)
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        for fmt in ("ndjson", "bundle"):
            report = FhirWriter(store, fmt=fmt, chunk_size=3).write(tmp_path / fmt)
            assert report.files == sum(1 for p in (tmp_path / fmt).rglob("*") if p.is_file())  # counted, not listed
    written = [orjson.loads(line)["id"] for line in (tmp_path / "ndjson" / "Patient.ndjson").read_bytes().splitlines()]
    assert len(written) == 7
    provenance = orjson.loads((tmp_path / "ndjson" / "Provenance.ndjson").read_bytes())
    assert [t["reference"] for t in provenance["target"]] == [f"Patient/{p}" for p in written]
    bundle = orjson.loads((tmp_path / "bundle" / "provenance.json").read_bytes())
    device, provenance = (e["resource"] for e in bundle["entry"])
    assert provenance["agent"][0]["who"]["reference"] == f"Device/{device['id']}"
    in_bundles = sorted(
        e["resource"]["id"]
        for f in (tmp_path / "bundle" / "bundles").iterdir()
        for e in orjson.loads(f.read_bytes())["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    assert sorted(t["reference"].removeprefix("Patient/") for t in provenance["target"]) == in_bundles
    assert len(in_bundles) == 7


def test_person_ranges_stay_in_duckdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer takes each range's bounds from DuckDB and never lists every person id in Python (a list that
    grows with the store: about 39 MiB for 1,000,000 persons); progress still counts every person once."""
    patients = [
        {"resourceType": "Patient", "id": f"p{i}", "gender": "male", "birthDate": f"19{60 + i}-03-04"} for i in range(7)
    ]
    (tmp_path / "in.ndjson").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in patients))
    with CohortStore.building(tmp_path / "store.duckdb") as store:
        read_fhir(tmp_path / "in.ndjson", store)

    def every_id(self: CohortStore) -> list[int]:
        raise AssertionError("the writer listed every person id")

    monkeypatch.setattr(CohortStore, "person_ids", every_id)
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        for fmt in ("ndjson", "bundle"):
            steps: list[int] = []
            report = FhirWriter(store, fmt=fmt, chunk_size=3, progress=steps.append).write(tmp_path / fmt)
            assert steps == [3, 3, 1]
            assert report.written["Patient"] == 7
    assert len(list((tmp_path / "bundle" / "bundles").iterdir())) == 7


def test_export_summary_says_what_was_not_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from synthcohort.cli.main import cli
    from synthcohort.connectors.fhir import writer

    with CohortStore.building(tmp_path / "store.duckdb"):
        pass
    report = writer.ExportReport()
    report.skipped.update({"measurement:no_code": 3, "reference_dropped": 2})
    monkeypatch.setattr(writer, "write_fhir", lambda *args, **kwargs: report)
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "store.duckdb"), "fhir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "not exported: 3 measurement rows without a code\n" in result.output
    assert "not exported: 2 references dropped (their target is not in the store)\n" in result.output
