"""FHIR R4 connector on the shared data: accounting, coverage, round trip, OMOP -> FHIR validity."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.reader import read_fhir
from synthcohort.connectors.fhir.report import RunReport
from synthcohort.connectors.fhir.validate import validate_fhir
from synthcohort.connectors.fhir.writer import FhirWriter, write_fhir
from synthcohort.mappings.vocabulary import Vocabulary
from tests.conftest import shared_path
from tests.fhir_helpers import codes, iter_output

pytestmark = pytest.mark.shared_data

CLINICAL = ("Condition", "Encounter", "Immunization", "MedicationRequest", "Observation", "Procedure", "Patient")
BUNDLE_COUNTS = {
    "AllergyIntolerance": 150,
    "CarePlan": 609,
    "Claim": 7758,
    "Condition": 1616,
    "DiagnosticReport": 2187,
    "Encounter": 6238,
    "ExplanationOfBenefit": 6238,
    "Goal": 448,
    "ImagingStudy": 137,
    "Immunization": 2392,
    "MedicationRequest": 1520,
    "Observation": 30276,
    "Organization": 336,
    "Patient": 200,
    "Practitioner": 336,
    "Procedure": 4792,
}


@pytest.fixture(scope="module")
def bundles() -> Path:
    return shared_path("data", "synthea-fhir-r4-bundles", "bundles")


@pytest.fixture(scope="module")
def bundle_store(tmp_path_factory: pytest.TempPathFactory, bundles: Path) -> tuple[Path, RunReport]:
    path = tmp_path_factory.mktemp("fhir") / "bundles.duckdb"
    with CohortStore.building(path) as store:
        report = read_fhir(bundles, store)
        store.set_meta("kind", "real")
    return path, report


def test_bundles_every_resource_accounted(bundle_store: tuple[Path, RunReport]) -> None:
    path, report = bundle_store
    assert dict(report.read) == BUNDLE_COUNTS
    assert report.balanced()
    for rtype in BUNDLE_COUNTS:
        skipped = sum(report.skipped.get(rtype, Counter()).values())
        assert report.read[rtype] == report.mapped[rtype] + skipped, rtype
    assert report.faults == 0
    # events before birth or over 60 days after death in the source data are quarantined
    assert report.by_reason() == {"unsupported_type": 18199, "after_death": 29, "before_birth": 4}
    with CohortStore.open(path) as store:
        counts = store.counts()
        persons = store.con.execute("SELECT min(person_id), max(person_id), count(*) FROM person").fetchone()
        local = store.con.execute("SELECT count(*) FROM concept WHERE concept_id >= 2000000000").fetchone()
    assert counts["person"] == 200 and persons == (1, 200, 200)
    assert counts["visit_occurrence"] == 6238 - 12
    assert counts["condition_occurrence"] == 1616 - 1
    assert counts["drug_exposure"] == 1520 - 14 + 2392
    assert counts["death"] == 41
    assert counts["observation_period"] == 200
    assert counts["measurement"] + counts["observation"] == sum(report.rows_by_type["Observation"].values())
    assert report.rows == {k: v for k, v in counts.items() if v and k not in ("concept", "vocabulary")}
    assert local and local[0] > 0


def test_store_from_fhir_is_valid_omop(bundle_store: tuple[Path, RunReport]) -> None:
    from synthcohort.connectors.omop.validate import validate_omop

    result = validate_omop(str(bundle_store[0]))
    assert result.violations == 0, result.by_rule()


def test_store_holds_no_identifier_or_text(bundle_store: tuple[Path, RunReport], bundles: Path) -> None:
    path, _ = bundle_store
    import gzip

    first = next(iter(sorted(bundles.iterdir())))
    patient = next(
        e["resource"]
        for e in orjson.loads(gzip.decompress(first.read_bytes()))["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    secrets = [patient["id"], patient["name"][0]["family"], patient["address"][0]["city"]]
    with CohortStore.open(path) as store:
        for table in ("person", "visit_occurrence", "condition_occurrence", "concept", "vocabulary"):
            text = json.dumps(store.con.execute(f'SELECT * FROM "{table}"').fetchall(), default=str)
            for secret in secrets:
                assert secret not in text, table


def test_bulk_ndjson_reads(tmp_path: Path) -> None:
    folder = shared_path("data", "synthea-bulk-fhir-ndjson-10", "ndjson")
    with CohortStore.building(tmp_path / "bulk.duckdb") as store:
        report = read_fhir(folder, store)
        counts = store.counts()
    assert report.balanced() and report.faults == 0
    assert report.read["Patient"] == 13 and report.mapped["Patient"] == 13
    assert report.mapped["Condition"] == 555 and report.mapped["Encounter"] == 1215
    assert report.skipped["DocumentReference"] == {"unsupported_type": 1215}
    assert counts["person"] == 13 and counts["condition_occurrence"] == 555
    assert counts["procedure_occurrence"] == report.mapped["Procedure"]


def test_coverage_with_eunomia_vocabulary(tmp_path: Path, bundles: Path, eunomia: Path) -> None:
    vocab = Vocabulary.open(eunomia)
    try:
        with CohortStore.building(tmp_path / "v.duckdb") as store:
            report = read_fhir(bundles, store, vocabulary=vocab)
            standard = store.con.execute(
                "SELECT count(*) FROM condition_occurrence c JOIN concept k ON k.concept_id = c.condition_concept_id "
                "WHERE k.standard_concept = 'S'"
            ).fetchone()
    finally:
        vocab.close()
    from synthcohort.connectors.omop.validate import validate_omop

    assert validate_omop(str(tmp_path / "v.duckdb")).violations == 0
    for rtype in ("Condition", "Observation", "MedicationRequest"):
        cov = report.coverage[rtype]
        assert cov["codes"] == sum(report.rows_by_type[rtype].values())
        assert 0.5 < cov["share"] <= 1.0, (rtype, cov)
    assert standard and standard[0] == report.coverage["Condition"]["mapped"]


def test_round_trip_keeps_counts_and_codes(bundle_store: tuple[Path, RunReport], bundles: Path, tmp_path: Path) -> None:
    path, report = bundle_store
    source: dict[str, Counter[tuple[str, str]]] = {}
    for res in iter_output(bundles):
        if res["resourceType"] in CLINICAL and res["resourceType"] != "Patient":
            found = codes(res)
            categories = {c.get("code") for cat in res.get("category", []) for c in cat.get("coding", [])}
            if res["resourceType"] == "Observation" and categories & {"laboratory", "vital-signs"}:
                # components with a quantity become measurements of their own (measurement.toml)
                for comp in res.get("component", []):
                    if comp.get("valueQuantity"):
                        found += codes({"resourceType": "Observation", "code": comp["code"]})
            source.setdefault(res["resourceType"], Counter()).update(found)
    with CohortStore.open(path) as store:
        export = write_fhir(store, tmp_path / "out", fmt="ndjson")
    exported: dict[str, Counter[tuple[str, str]]] = {}
    for res in iter_output(tmp_path / "out"):
        exported.setdefault(res["resourceType"], Counter()).update(codes(res))
    for rtype in CLINICAL:
        assert export.written[rtype] == sum(
            report.rows_by_type[rtype].get(t, 0) for t in report.rows_by_type[rtype] if t != "death"
        ), rtype
    for rtype, counter in source.items():
        # every exported code was in the input; what is missing is the quarantined resources' codes
        assert not exported[rtype] - counter, rtype
        per_resource = 2 if rtype == "Encounter" else 1  # Synthea encounters: class and one type coding
        quarantined = sum(report.skipped.get(rtype, Counter()).values())
        assert (counter - exported[rtype]).total() == quarantined * per_resource, rtype


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["ndjson", "bundle"])
def test_omop_to_fhir_is_valid(synthea_1k_store: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / fmt
    with CohortStore.open(synthea_1k_store) as store:
        counts = store.counts()
        report = write_fhir(store, out, fmt=fmt, gz=fmt == "ndjson")
    # every resource (and every Bundle without its entries) through the project's own checks, the
    # fhir.resources model and the official R4 JSON schema (the copy shipped with the package)
    result = validate_fhir(out)
    assert result.ok, result.to_dict()["first_errors"]
    summary = result.to_dict()
    bundles = len(list(out.rglob("*.json"))) if fmt == "bundle" else 0
    assert summary["resources"] == sum(report.written.values())
    assert summary["model_checked"] == summary["schema_checked"] == summary["resources"] + bundles
    assert summary["by_type"]["Patient"] == counts["person"]
    assert summary["by_type"]["Encounter"] == counts["visit_occurrence"]
    assert summary["by_type"]["Provenance"] == 1
    written_events = sum(
        n for t, n in report.written.items() if t not in ("Patient", "Encounter", "Device", "Provenance")
    )
    skipped = sum(n for k, n in report.skipped.items() if k.endswith("no_code"))
    events = sum(
        counts[t]
        for t in ("condition_occurrence", "drug_exposure", "procedure_occurrence", "measurement", "observation")
    )
    assert written_events + skipped == events


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bulk.duckdb"
    with CohortStore.building(path) as store:
        read_fhir(shared_path("data", "synthea-bulk-fhir-ndjson-10", "ndjson"), store)
    import os
    import shutil

    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(path, copy)
    os.utime(copy, (1_000_000_000, 1_000_000_000))  # another file time: the bytes must not depend on it
    outs = []
    for name, seed, store_path in (("a", 7, path), ("b", 7, copy), ("c", 8, path)):
        with CohortStore.open(store_path) as store:
            write_fhir(store, tmp_path / name, fmt="bundle", gz=True, seed=seed)
        outs.append(
            {p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*") if p.is_file()}
        )
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


@pytest.mark.parametrize("fmt", ["ndjson", "bundle"])
def test_bytes_do_not_depend_on_the_person_range(synthea_1k_store: Path, tmp_path: Path, fmt: str) -> None:
    """Persons are rendered a range at a time (Bundles in smaller ranges, to bound memory): the size
    of the range changes nothing in the output."""
    outs = []
    with CohortStore.open(synthea_1k_store) as store:
        for name, size in (("default", None), ("small", 97)):
            FhirWriter(store, fmt=fmt, chunk_size=size).write(tmp_path / name)
            outs.append(
                {p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*") if p.is_file()}
            )
    assert len(outs[0]) > 2
    assert outs[0] == outs[1]


def test_cli_extract_export_validate(bundles: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    store = tmp_path / "c.duckdb"
    result = runner.invoke(
        cli, ["extract", "fhir", str(bundles), "-o", str(store), "--report", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    assert "unsupported_type" in result.output and "rows per OMOP table" in result.output
    assert json.loads((tmp_path / "r.json").read_text())["mapped"] == 47034 - 33
    result = runner.invoke(cli, ["export", str(store), "fhir", str(tmp_path / "out"), "--format", "bundle"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out" / "bundles").iterdir())) == 200
    result = runner.invoke(cli, ["validate", "fhir", str(tmp_path / "out"), "--sample", "25"])
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.output
