"""``validate fhir`` catches a broken resource: faults injected into a small export, each reported by the
validator that checks that rule (fhir.resources models, the official R4 JSON schema, the project's own
checks) at the resource's file:line or bundle entry; the compiled schema agrees with the reference
implementation; the official schema ships with the package and is checked without --schema."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.reader import read_fhir
from synthcohort.connectors.fhir.schema import R4_SCHEMA_ID, R4Schema
from synthcohort.connectors.fhir.validate import validate_fhir
from synthcohort.connectors.fhir.writer import write_fhir
from synthcohort.errors import InputError, ValidationFailed
from synthcohort.pipeline import stages
from synthcohort.pipeline.config import OutputConfig
from synthcohort.pipeline.progress import null_bars
from tests.fhir_helpers import iter_output

_AT = "2010-05-06T10:00:00+02:00"
_ENC = {"reference": "Encounter/e1"}
_SUBJECT = {"reference": "Patient/p1"}


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# one resource of every clinical type the writer exports (Device and Provenance come with any export)
SOURCE = [
    {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-02-03"},
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [_coded("http://snomed.info/sct", "185349003")],
        "subject": _SUBJECT,
        "period": {"start": _AT, "end": "2010-05-06T11:00:00+02:00"},
    },
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": _SUBJECT,
        "encounter": _ENC,
        "code": _coded("http://snomed.info/sct", "44054006"),
        "onsetDateTime": _AT,
    },
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": _coded("http://loinc.org", "8302-2"),
        "subject": _SUBJECT,
        "encounter": _ENC,
        "effectiveDateTime": _AT,
        "valueQuantity": {"value": 170.2, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
    },
    {
        "resourceType": "Procedure",
        "id": "pr1",
        "status": "completed",
        "code": _coded("http://snomed.info/sct", "430193006"),
        "subject": _SUBJECT,
        "encounter": _ENC,
        "performedPeriod": {"start": _AT, "end": "2010-05-06T10:30:00+02:00"},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": _coded("http://www.nlm.nih.gov/research/umls/rxnorm", "314076"),
        "subject": _SUBJECT,
        "encounter": _ENC,
        "authoredOn": _AT,
    },
    {
        "resourceType": "Immunization",
        "id": "i1",
        "status": "completed",
        "vaccineCode": _coded("http://hl7.org/fhir/sid/cvx", "140"),
        "patient": _SUBJECT,
        "encounter": _ENC,
        "occurrenceDateTime": _AT,
    },
]
TYPES = {"Patient", "Encounter", "Condition", "Observation", "Procedure", "MedicationRequest", "Immunization"}


# the sha256 of the uncompressed fhir.schema.json, as staged from HL7's R4 release (shared/spec/fhir-r4/README.md)
R4_SCHEMA_SHA256 = "15b9548af6412c44faaa411456e0652542de286fd1c58ef882b09bdc8947909d"


@pytest.fixture(scope="module")
def schema() -> R4Schema:
    return R4Schema.bundled()


def test_shipped_schema_is_the_official_r4_file() -> None:
    data = resources.files("synthcohort.data")
    text = gzip.decompress(data.joinpath("fhir.schema.json.gz").read_bytes())
    assert hashlib.sha256(text).hexdigest() == R4_SCHEMA_SHA256
    assert len(text) == 3_365_955
    assert R4_SCHEMA_SHA256 in data.joinpath("README.md").read_text("utf-8")  # the note of source and license
    assert len(R4Schema.bundled().resource_types) == 146


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small cohort written in both formats (read these, copy before changing)."""
    root = tmp_path_factory.mktemp("fhir-export")
    (root / "in.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in SOURCE))
    with CohortStore.building(root / "store.duckdb") as store:
        read_fhir(root / "in.ndjson", store)
    with CohortStore.open(root / "store.duckdb") as store:
        for fmt in ("ndjson", "bundle"):
            write_fhir(store, root / fmt, fmt=fmt)
    return {fmt: root / fmt for fmt in ("ndjson", "bundle")}


def test_small_export_is_valid_and_complete(exports: dict[str, Path], schema: R4Schema) -> None:
    for fmt, folder in exports.items():
        result = validate_fhir(folder, schema=schema)
        assert result.ok, result.to_dict()["first_errors"]
        assert set(result.counts) == TYPES | {"Device", "Provenance"}, fmt
        shells = 2 if fmt == "bundle" else 0  # a Bundle is checked without its entries, which are checked one by one
        assert result.model_checked == result.schema_checked == sum(result.counts.values()) + shells


def _inject(export: Path, tmp_path: Path, rtype: str, change: Callable[[dict[str, Any]], None]) -> tuple[Path, str]:
    """A copy of ``export`` whose first ``rtype`` resource went through ``change``, and where it is."""
    out = tmp_path / export.name
    shutil.copytree(export, out)
    ndjson = out / f"{rtype}.ndjson"
    if ndjson.exists():
        lines = ndjson.read_bytes().splitlines()
        resource = orjson.loads(lines[0])
        change(resource)
        ndjson.write_bytes(b"\n".join([orjson.dumps(resource), *lines[1:]]) + b"\n")
        return out, f"{rtype}.ndjson:1"
    bundle_file = out / "bundles" / "bundle-0000001.json"
    bundle = orjson.loads(bundle_file.read_bytes())
    i = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == rtype)
    change(bundle["entry"][i]["resource"])
    bundle_file.write_bytes(orjson.dumps(bundle))
    return out, f"bundles/bundle-0000001.json entry {i}"


def _set(element: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        if value is None:
            del resource[element]
        else:
            resource[element] = value

    return change


def _dangle(resource: dict[str, Any]) -> None:
    prefix = "urn:uuid:" if resource["subject"]["reference"].startswith("urn:uuid:") else "Patient/"
    resource["subject"]["reference"] = prefix + "00000000-0000-0000-0000-000000000000"


# (fault, type, change, {rule: text each error of that rule shows}); a rule absent from the dict must stay silent
FAULTS = [
    (
        "wrong type",
        "Patient",
        _set("birthDate", 19700203),
        {"model": "Patient.birthDate:", "schema": "Patient.birthDate: breaks 'type'"},
    ),
    (
        "wrong type in an enum",
        "Patient",
        _set("gender", 5),
        {"model": "Patient.gender:", "schema": "Patient.gender: breaks 'enum'"},
    ),
    (
        "missing required element",
        "Condition",
        _set("subject", None),
        {"model": "Condition.subject: Field required", "schema": "required element subject is missing"},
    ),
    (
        "bad dateTime (month 13)",
        "Condition",
        _set("onsetDateTime", "2010-13-06T10:00:00+00:00"),
        {"model": "Condition.onsetDateTime:", "schema": "Condition.onsetDateTime: breaks 'pattern'"},
    ),
    (
        "bad dateTime (no zone)",
        "Observation",
        _set("effectiveDateTime", "2010-05-06T10:00:00"),
        {
            "model": "Observation.effectiveDateTime:",
            "schema": "Observation.effectiveDateTime: breaks 'pattern'",
            "zone": "Observation.effectiveDateTime has a time without a zone",
        },
    ),
    (
        "bad date (30 February, only the models know the calendar)",
        "Condition",
        _set("onsetDateTime", "2010-02-30"),
        {"model": "Condition.onsetDateTime:"},
    ),
    (
        "element not in the definition",
        "Procedure",
        _set("performedSomewhere", "x"),
        {"model": "Procedure.performedSomewhere:", "schema": "elements not in the definition: performedSomewhere"},
    ),
    (
        "dangling reference",
        "Condition",
        _dangle,
        {"reference": "Condition.subject.reference"},
    ),
]


@pytest.mark.parametrize("fmt", ["ndjson", "bundle"])
@pytest.mark.parametrize(("fault", "rtype", "change", "expected"), FAULTS, ids=[f[0] for f in FAULTS])
def test_injected_fault_is_reported_where_it_is(
    exports: dict[str, Path],
    schema: R4Schema,
    tmp_path: Path,
    fmt: str,
    fault: str,
    rtype: str,
    change: Callable[[dict[str, Any]], None],
    expected: dict[str, str],
) -> None:
    folder, where = _inject(exports[fmt], tmp_path, rtype, change)
    result = validate_fhir(folder, schema=schema)
    assert set(result.error_counts) == set(expected), (fault, result.errors)
    for rule, text in expected.items():
        located = [(w, m) for w, m in result.errors if m.startswith(f"{rule}: ")]
        assert located, (fault, rule)
        for w, message in located:
            assert w.startswith(where), (fault, w, where)
            assert text in f"{w} {message}", (fault, w, message)


def test_cli_checks_the_shipped_schema_and_fails(exports: dict[str, Path], tmp_path: Path) -> None:
    folder, where = _inject(exports["ndjson"], tmp_path, "Condition", _set("onsetDateTime", "2010-13-06T10:00:00Z"))
    runner = CliRunner()
    result = runner.invoke(cli, ["validate", "fhir", str(exports["ndjson"])])
    assert result.exit_code == 0, result.output
    assert "9 resources, 0 errors" in result.output and "Condition                            1" in result.output
    assert "fhir.resources models: 9; by the R4 JSON schema: 9" in result.output
    result = runner.invoke(cli, ["validate", "fhir", str(folder)])  # no --schema: the shipped one
    assert result.exit_code == 8, result.output
    assert f"{where}: schema: Condition.onsetDateTime: breaks 'pattern'" in result.output
    assert f"{where}: model: Condition.onsetDateTime:" in result.output
    assert "2010-13-06" not in result.output  # locations and rules, never the value


def test_cli_schema_option_overrides_the_shipped_one(exports: dict[str, Path], tmp_path: Path) -> None:
    """--schema FILE is what is checked: a copy of the schema without the pattern of Condition.onsetDateTime
    lets the bad date through the schema check (the model still sees it)."""
    folder, _ = _inject(exports["ndjson"], tmp_path, "Condition", _set("onsetDateTime", "2010-13-06T10:00:00Z"))
    definitions = copy.deepcopy(R4Schema.bundled().definitions)
    del definitions["Condition"]["properties"]["onsetDateTime"]["pattern"]
    loose_file = tmp_path / "loose.schema.json"
    loose_file.write_bytes(orjson.dumps({"id": R4_SCHEMA_ID, "oneOf": _one_of(), "definitions": definitions}))
    result = CliRunner().invoke(cli, ["validate", "fhir", str(folder), "--schema", str(loose_file), "--json"])
    assert result.exit_code == 8, result.output
    summary = json.loads(result.output[: result.output.rindex("}") + 1])
    assert summary["errors_by_rule"] == {"model": 1} and summary["schema_checked"] == 9


def _one_of() -> list[dict[str, str]]:
    return [{"$ref": f"#/definitions/{t}"} for t in sorted(R4Schema.bundled().resource_types)]


def test_pipeline_validate_stage_checks_every_resource_against_the_schema(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    """The stage samples the models (every 10th resource) but runs the schema on all: a schema fault in a
    resource the sampling skips still fails the run."""
    folder, _ = _inject(exports["ndjson"], tmp_path, "Condition", _set("onsetDateTime", "2010-13-06T10:00:00Z"))
    output = OutputConfig(kind="fhir", path=str(tmp_path / "published"))
    summary = stages.validate(output, output.path or "", exports["ndjson"], null_bars)
    assert summary["ok"] and summary["schema_checked"] == summary["resources"] == 9
    assert summary["models_checked"] == 0  # 9 resources, every 10th: the models saw none of them
    with pytest.raises(ValidationFailed, match=r"failed validation \(schema\)"):
        stages.validate(output, output.path or "", folder, null_bars)


def test_schema_file_forms_and_refusals(tmp_path: Path) -> None:
    packed = resources.files("synthcohort.data").joinpath("fhir.schema.json.gz").read_bytes()
    schema_file = tmp_path / "fhir.schema.json.gz"
    schema_file.write_bytes(packed)
    text = gzip.decompress(packed)
    (tmp_path / "fhir.schema.json").write_bytes(text)
    with zipfile.ZipFile(tmp_path / "fhir.schema.json.zip", "w") as archive:
        archive.writestr("fhir.schema.json", text)
    for path in (schema_file, tmp_path / "fhir.schema.json", tmp_path / "fhir.schema.json.zip"):
        assert "Observation" in R4Schema.load(path).resource_types
    other = json.loads(text)
    other["id"] = "http://hl7.org/fhir/json-schema/4.3"
    (tmp_path / "r4b.json").write_text(json.dumps(other))
    (tmp_path / "broken.json").write_text("{")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("readme.txt", "")
    for name, says in (
        ("r4b.json", "not the FHIR R4 JSON schema"),
        ("broken.json", "not valid JSON"),
        ("empty.zip", "no fhir"),
    ):
        with pytest.raises(InputError, match=says):
            R4Schema.load(tmp_path / name)
    with pytest.raises(InputError, match="cannot read"):
        R4Schema.load(tmp_path / "absent.json")
    assert R4Schema.load(schema_file).errors({"resourceType": "Nothing"}) == [
        "resourceType: not a resource type of the R4 schema"
    ]


def _leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    if path:
        yield path


def _mutants(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``resource`` with each element (leaf or not) deleted or replaced by values of every JSON kind."""
    yield resource
    yield {**resource, "notAnElement": 1}
    for path in sorted(set(_leaves(resource)), key=str):
        if path == ("resourceType",):
            continue
        for value in (KeyError, 12345, 1.5, True, "", "2010-13-45T25:00:00+00:00", "x y", [], {}, {"a": 1}, None, [1]):
            out = copy.deepcopy(resource)
            node = out
            for p in path[:-1]:
                node = node[p]
            if value is KeyError:
                del node[path[-1]]
            else:
                node[path[-1]] = value
            yield out


def test_compiled_schema_agrees_with_the_reference_implementation(exports: dict[str, Path]) -> None:
    """jsonschema-rs (what ``validate fhir`` runs) and the Python ``jsonschema`` package report the same
    (element, keyword) pairs for every exported resource and some two thousand mutants of them."""
    import jsonschema
    import jsonschema_rs

    definitions = R4Schema.bundled().definitions
    reference: dict[str, Any] = {}
    compiled: dict[str, Any] = {}
    checked = invalid = 0
    for resource in iter_output(exports["ndjson"]):
        rtype = resource["resourceType"]
        schema = {"$ref": f"#/definitions/{rtype}", "definitions": definitions}
        reference.setdefault(rtype, jsonschema.Draft6Validator(schema))
        compiled.setdefault(rtype, jsonschema_rs.Draft6Validator(schema))
        for mutant in _mutants(resource):
            expected = {(tuple(e.absolute_path), e.validator) for e in reference[rtype].iter_errors(mutant)}
            found = {(tuple(e.instance_path), e.schema_path[-1]) for e in compiled[rtype].iter_errors(mutant)}
            assert found == expected, mutant
            assert compiled[rtype].is_valid(mutant) == (not expected)
            checked += 1
            invalid += bool(expected)
    assert checked > 2000 and checked / 3 < invalid < checked
