"""Bad FHIR inputs 1-16 of ../shared/docs/bad-inputs.md: each skipped and counted, refused, or accepted."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.reader import check_tolerance, read_fhir
from synthcohort.connectors.fhir.report import RunReport
from synthcohort.connectors.fhir.sources import Limits
from synthcohort.connectors.fhir.validate import validate_fhir
from synthcohort.connectors.fhir.writer import write_fhir
from synthcohort.errors import InputError, SkipToleranceExceeded

DATA = Path(__file__).parent / "data" / "fhir"


def patient(pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-02-03", **extra}


def condition(cid: str = "c1", subject: str = "Patient/p1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": subject},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "onsetDateTime": "2010-05-06T10:00:00+02:00",
        **extra,
    }


def ndjson(path: Path, *records: Any) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def extract(tmp_path: Path, source: Path, limits: Limits | None = None) -> tuple[RunReport, dict[str, int]]:
    out = tmp_path / "store.duckdb"
    if out.exists():
        out.unlink()
    with CohortStore.building(out) as store:
        report = read_fhir(source, store, limits=limits)
        counts = store.counts()
    assert report.balanced(), report.to_dict()
    return report, counts


def dump(tmp_path: Path) -> str:
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        return json.dumps(
            {
                t: store.con.execute(f'SELECT * FROM "{t}"').fetchall()
                for t in ("person", "condition_occurrence", "concept")
            },
            default=str,
        )


# 1 ------------------------------------------------------------------------------------------
def test_a_file_with_nothing_readable_says_no_rows_were_mapped(tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_bytes(orjson.dumps(condition())[:40])
    result = CliRunner().invoke(cli, ["extract", "fhir", str(src), "-o", str(tmp_path / "c.duckdb")])
    assert result.exit_code == SkipToleranceExceeded.exit_code, result.output
    assert "rows per OMOP table: none\n" in result.output


def test_cut_last_line_is_counted_and_fails_the_run(tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_bytes(orjson.dumps(patient()) + b"\n" + orjson.dumps(condition())[:40])
    report, counts = extract(tmp_path, src)
    assert report.skipped["(unparsed)"] == {"json_decode": 1}
    assert counts["person"] == 1
    with pytest.raises(SkipToleranceExceeded):
        check_tolerance(report, 0)
    check_tolerance(report, 1)
    out = tmp_path / "cli.duckdb"
    result = CliRunner().invoke(cli, ["extract", "fhir", str(src), "-o", str(out)])
    assert result.exit_code == SkipToleranceExceeded.exit_code, result.output
    assert "1 record was skipped (json_decode: 1), more than the tolerance of 0" in result.output and not out.exists()
    result = CliRunner().invoke(cli, ["extract", "fhir", str(src), "-o", str(out), "--allow-skips"])
    assert result.exit_code == 0, result.output
    assert "from 1 file: " in result.output and "(1 fault)" in result.output and "(1 person)" in result.output


# 2 ------------------------------------------------------------------------------------------
def test_bom_crlf_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_bytes(
        b"\xef\xbb\xbf" + orjson.dumps(patient()) + b"\r\n\r\n   \r\n" + orjson.dumps(condition()) + b"\r\n"
    )
    report, counts = extract(tmp_path, src)
    assert report.faults == 0 and report.mapped["Condition"] == 1
    assert counts["condition_occurrence"] == 1


# 3 ------------------------------------------------------------------------------------------
def test_array_string_and_number_lines_are_not_objects(tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_bytes(orjson.dumps(patient()) + b'\n[1, 2]\n"text"\n42\nnull\n{"no": "type"}\n')
    report, _ = extract(tmp_path, src)
    assert report.skipped["(unparsed)"] == {"not_object": 4, "not_resource": 1}
    assert report.faults == 4


# 4 ------------------------------------------------------------------------------------------
def test_line_over_the_cap_stops_the_file(tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    with open(src, "wb") as fh:
        fh.write(orjson.dumps(patient()) + b"\n")
        fh.write(b'{"resourceType": "Observation", "valueString": "' + b"x" * 3_000_000)  # no newline, ever
    report, counts = extract(tmp_path, src, Limits(line_bytes=64 * 1024))
    assert report.skipped["(unparsed)"] == {"line_too_long": 1}
    assert counts["person"] == 1
    assert any("line longer than" in w for w in report.warnings)


def test_decompression_cap_stops_a_gzip_bomb(tmp_path: Path) -> None:
    import gzip

    src = tmp_path / "bomb.ndjson.gz"
    src.write_bytes(gzip.compress((orjson.dumps(patient()) + b"\n") + b"\n" * 5_000_000))
    report, counts = extract(tmp_path, src, Limits(decompressed_bytes=1_500_000))
    assert report.skipped["(unparsed)"] == {"decompression_cap": 1}
    assert counts["person"] == 1


# 5 ------------------------------------------------------------------------------------------
def _zip(path: Path, name: str, *, symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        zf.writestr(info, orjson.dumps(patient()) + b"\n")
    return path


def _tar(path: Path, name: str, *, symlink: bool = False) -> Path:
    with tarfile.open(path, "w") as tf:
        data = orjson.dumps(patient()) + b"\n"
        info = tarfile.TarInfo(name)
        if symlink:
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
        else:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _zip(p / "a.zip", "../evil.ndjson"),
        lambda p: _zip(p / "a.zip", "/abs/evil.ndjson"),
        lambda p: _zip(p / "a.zip", "link.ndjson", symlink=True),
        lambda p: _tar(p / "a.tar", "x/../../evil.ndjson"),
        lambda p: _tar(p / "a.tar", "/abs/evil.ndjson"),
        lambda p: _tar(p / "a.tar", "link.ndjson", symlink=True),
    ],
    ids=["zip-dotdot", "zip-absolute", "zip-symlink", "tar-dotdot", "tar-absolute", "tar-symlink"],
)
def test_unsafe_archives_are_refused(tmp_path: Path, make: Any) -> None:
    archive = make(tmp_path)
    with pytest.raises(InputError, match="refused"), CohortStore.building(tmp_path / "s.duckdb") as store:
        read_fhir(archive, store)
    assert not (tmp_path / "s.duckdb").exists()
    result = CliRunner().invoke(cli, ["extract", "fhir", str(archive), "-o", str(tmp_path / "c.duckdb")])
    assert result.exit_code == InputError.exit_code and "Traceback" not in result.output


def test_clean_archives_are_read(tmp_path: Path) -> None:
    report, counts = extract(tmp_path, _zip(tmp_path / "ok.zip", "data/Patient.ndjson"))
    assert counts["person"] == 1
    report, counts = extract(tmp_path, _tar(tmp_path / "ok.tar", "data/Patient.ndjson"))
    assert counts["person"] == 1


# 6 ------------------------------------------------------------------------------------------
def test_searchset_with_next_link_warns(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": "https://example.org/fhir/Patient?page=2"}],
        "entry": [
            {"fullUrl": "https://example.org/fhir/Patient/p1", "resource": patient(), "search": {"mode": "match"}}
        ],
    }
    (tmp_path / "page.json").write_bytes(orjson.dumps(bundle))
    report, counts = extract(tmp_path, tmp_path / "page.json")
    assert report.notes["incomplete_searchset"] == 1
    assert any("incomplete" in w for w in report.warnings)
    assert counts["person"] == 1


# 7 ------------------------------------------------------------------------------------------
def test_orphans_counted_and_contained_resolved(tmp_path: Path) -> None:
    med = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "310965"}]},
            }
        ],
        "medicationReference": {"reference": "#med"},
        "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
        "authoredOn": "2015-01-01",
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": med,
                "request": {"method": "POST", "url": "MedicationRequest"},
            },
            {"resource": condition("c1", "urn:uuid:99999999-9999-4999-8999-999999999999")},
            {"resource": condition("c2", "Patient?identifier=http://hospital|123")},
            {"resource": condition("c3", "Patient/absent")},
            {"resource": condition("c4", "urn:uuid:11111111-1111-4111-8111-111111111111")},
        ],
    }
    (tmp_path / "b.json").write_bytes(orjson.dumps(bundle))
    report, counts = extract(tmp_path, tmp_path / "b.json")
    assert report.skipped["Condition"] == {"orphan": 3}
    assert report.mapped == {"Patient": 1, "MedicationRequest": 1, "Condition": 1}
    assert counts["drug_exposure"] == 1 and counts["condition_occurrence"] == 1
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        row = store.con.execute("SELECT drug_source_value FROM drug_exposure").fetchall()
    assert row == [("310965",)]


# 8 ------------------------------------------------------------------------------------------
def test_unknown_element_warns_and_unknown_modifier_skips(tmp_path: Path) -> None:
    typo = condition("c1", onsetDateTme="2010-01-01")
    modifier = condition("c2", modifierExtension=[{"url": "https://example.org/negated", "valueBoolean": True}])
    report, counts = extract(tmp_path, ndjson(tmp_path / "in.ndjson", patient(), typo, modifier))
    assert report.mapped["Condition"] == 1
    assert report.skipped["Condition"] == {"unknown_modifier": 1}
    assert report.notes["unknown_element"] == 1
    assert any("onsetDateTme" in w for w in report.warnings)


# 9 ------------------------------------------------------------------------------------------
def test_empty_values_are_absent_and_counted(tmp_path: Path) -> None:
    empty = condition("c1", abatementDateTime="", encounter=None, category=[], note=[])
    report, counts = extract(tmp_path, ndjson(tmp_path / "in.ndjson", patient(), empty))
    assert report.mapped["Condition"] == 1
    assert report.notes["empty_value"] >= 2
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        assert store.con.execute(
            "SELECT condition_end_date, visit_occurrence_id FROM condition_occurrence"
        ).fetchall() == [(None, None)]


def test_empty_or_list_values_under_two_step_paths_do_not_stop_the_run(tmp_path: Path) -> None:
    # "onsetPeriod.start" and "abatementPeriod.end" are two-element paths: an empty leaf is absent
    # (the next path of the rule is read), an array on the way is walked like any other
    cond = condition(
        "c1", onsetPeriod={"start": ""}, recordedDate="2010-05-06", abatementPeriod=[{"end": "2011-01-02"}]
    )
    del cond["onsetDateTime"]
    report, _ = extract(tmp_path, ndjson(tmp_path / "in.ndjson", patient(), cond))
    assert report.mapped["Condition"] == 1
    assert report.notes["empty_value"] == 1
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        dates = store.con.execute("SELECT condition_start_date, condition_end_date FROM condition_occurrence")
        assert [tuple(str(d) for d in row) for row in dates.fetchall()] == [("2010-05-06", "2011-01-02")]


# 10 -----------------------------------------------------------------------------------------
def test_impossible_patients_are_quarantined(tmp_path: Path) -> None:
    dead_first = patient("p1", deceasedDateTime="1960-01-01T00:00:00Z")
    unborn = patient("p2", birthDate="2999-01-01")
    ok = patient("p3")
    records = [dead_first, unborn, ok, condition("c1", "Patient/p1"), condition("c2", "Patient/p3")]
    report, counts = extract(tmp_path, ndjson(tmp_path / "in.ndjson", *records))
    assert report.skipped["Patient"] == {"quarantined": 2}
    assert report.skipped["Condition"] == {"quarantined_person": 1}
    assert counts["person"] == 1 and counts["death"] == 0 and counts["condition_occurrence"] == 1


# 11 -----------------------------------------------------------------------------------------
def test_odd_ids_are_linked_but_never_written(tmp_path: Path) -> None:
    long_id = "a" * 200
    records = [patient(long_id), condition("x/y", f"Patient/{long_id}")]
    report, counts = extract(tmp_path, ndjson(tmp_path / "in.ndjson", *records))
    assert counts["condition_occurrence"] == 1 and report.faults == 0
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        write_fhir(store, tmp_path / "out")
    text = b"".join(p.read_bytes() for p in (tmp_path / "out").iterdir())
    assert long_id.encode() not in text and b"x/y" not in text
    assert validate_fhir(tmp_path / "out").ok


# 12 -----------------------------------------------------------------------------------------
def test_codings_without_system_or_with_free_text_are_not_modelled(tmp_path: Path) -> None:
    no_system = condition("c1", code={"coding": [{"code": "44054006"}]})
    free_text = condition(
        "c2", code={"coding": [{"system": "https://hospital.example/codes", "code": "pain in the left knee"}]}
    )
    named = condition(
        "c3",
        code={"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Jane Doe, 12 Main St"}]},
    )
    local = condition("c4", code={"coding": [{"system": "https://hospital.example/codes", "code": "K-17"}]})
    report, counts = extract(tmp_path, ndjson(tmp_path / "in.ndjson", patient(), no_system, free_text, named, local))
    assert report.skipped["Condition"] == {"no_code": 2}
    assert report.notes["coding_without_system"] == 1 and report.notes["code_not_modelled"] == 1
    assert "Jane Doe" not in dump(tmp_path) and "left knee" not in dump(tmp_path)
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        write_fhir(store, tmp_path / "out")
    out = (tmp_path / "out" / "Condition.ndjson").read_text()
    assert "Jane Doe" not in out
    assert '"system":"https://hospital.example/codes","code":"K-17"' in out


# 13 -----------------------------------------------------------------------------------------
def test_attachments_and_notes_never_loaded(tmp_path: Path) -> None:
    import base64

    doc = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [
            {"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"secret note " * 200_000).decode()}}
        ],
    }
    noted = condition("c1", note=[{"text": "patient said a secret thing"}])
    src = ndjson(tmp_path / "in.ndjson", patient(), noted, doc)
    report, _ = extract(tmp_path, src)
    assert report.skipped["DocumentReference"] == {"unsupported_type": 1}
    assert "secret" not in dump(tmp_path)
    report, _ = extract(tmp_path, src, Limits(line_bytes=1024 * 1024))
    assert report.skipped["(unparsed)"] == {"line_too_long": 1}


# 14 -----------------------------------------------------------------------------------------
def test_identifying_patient_elements_reach_nothing(tmp_path: Path) -> None:
    rich = patient(
        "p1",
        identifier=[{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1850775123456"}],
        name=[{"family": "Dupont", "given": ["Marie"]}],
        telecom=[{"system": "phone", "value": "+33 6 12 34 56 78"}],
        address=[{"line": ["12 rue de la Paix"], "city": "Lyon"}],
        photo=[{"contentType": "image/png", "data": "iVBORw0KGgo="}],
    )
    extract(tmp_path, ndjson(tmp_path / "in.ndjson", rich, condition()))
    stored = dump(tmp_path)
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        write_fhir(store, tmp_path / "out")
    written = "".join(p.read_text() for p in (tmp_path / "out").iterdir())
    for secret in ("1850775123456", "Dupont", "Marie", "34 56 78", "rue de la Paix", "Lyon", "iVBORw0KGgo", '"p1"'):
        assert secret not in stored and secret not in written, secret


# 15 -----------------------------------------------------------------------------------------
def test_bulk_export_with_deletions_and_errors(tmp_path: Path) -> None:
    export = tmp_path / "export"
    (export / "deleted").mkdir(parents=True)
    (export / "error").mkdir()
    ndjson(export / "Patient.000.ndjson", patient("p1"), patient("p2"))
    ndjson(export / "Condition.000.ndjson", condition("c1"), condition("c2"))
    deletion = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": "Condition/c2"}},
            {"request": {"method": "DELETE", "url": "Patient/p2"}},
        ],
    }
    ndjson(export / "deleted" / "del.ndjson", deletion)
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}
    ndjson(export / "error" / "OperationOutcome.ndjson", outcome)
    manifest = {
        "transactionTime": "2024-01-01T00:00:00Z",
        "output": [
            {"type": "Patient", "url": "https://example.org/Patient.000.ndjson"},
            {"type": "Condition", "url": "https://example.org/Condition.000.ndjson"},
        ],
        "deleted": [{"type": "Bundle", "url": "https://example.org/del.ndjson"}],
        "error": [{"type": "OperationOutcome", "url": "https://example.org/OperationOutcome.ndjson"}],
    }
    (export / "manifest.json").write_bytes(orjson.dumps(manifest))
    report, counts = extract(tmp_path, export)
    assert report.skipped["Condition"] == {"deleted": 1} and report.skipped["Patient"] == {"deleted": 1}
    assert report.server_errors == {"error:processing": 1}
    assert counts["person"] == 1 and counts["condition_occurrence"] == 1
    assert report.faults == 0


# 16 -----------------------------------------------------------------------------------------
def test_other_fhir_versions_are_skipped(tmp_path: Path) -> None:
    stu3 = {**condition("c1"), "clinicalStatus": "active", "verificationStatus": "confirmed"}
    r5 = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "completed",
        "class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}]}],
        "subject": {"reference": "Patient/p1"},
        "actualPeriod": {"start": "2020-01-01T10:00:00Z"},
    }
    report, counts = extract(tmp_path, ndjson(tmp_path / "in.ndjson", patient(), stu3, r5, condition("c2")))
    assert report.skipped["Condition"] == {"fhir_version": 1}
    assert report.skipped["Encounter"] == {"fhir_version": 1}
    assert counts["condition_occurrence"] == 1 and report.faults == 2


def test_rules_cannot_name_identifying_elements() -> None:
    from synthcohort.mappings.rules import RuleError, _check_path

    for path in ("name.family", "identifier.value", "telecom", "address.city", "note.text", "content.attachment"):
        with pytest.raises(RuleError):
            _check_path(path, "test")


def test_fractional_seconds_and_offsets_export_with_a_zone(tmp_path: Path) -> None:
    precise = condition("c1", onsetDateTime="2010-05-06T23:30:00.123456-05:00")
    extract(tmp_path, ndjson(tmp_path / "in.ndjson", patient(), precise))
    with CohortStore.open(tmp_path / "store.duckdb") as store:
        stored = store.con.execute(
            "SELECT condition_start_date, condition_start_datetime FROM condition_occurrence"
        ).fetchall()
        write_fhir(store, tmp_path / "out")
    assert str(stored[0][0]) == "2010-05-07"  # the UTC date of the instant
    line = orjson.loads((tmp_path / "out" / "Condition.ndjson").read_bytes())
    assert line["onsetDateTime"] == "2010-05-07T04:30:00+00:00"
    assert validate_fhir(tmp_path / "out").ok


def test_coverage_line_says_when_no_vocabulary_was_given(tmp_path: Path) -> None:
    """Without --vocab, '0.0 % mapped' alone reads like a failure: the line says why."""
    src = tmp_path / "in.ndjson"
    src.write_bytes(orjson.dumps(patient()) + b"\n" + orjson.dumps(condition()) + b"\n")
    result = CliRunner().invoke(cli, ["extract", "fhir", str(src), "-o", str(tmp_path / "c.duckdb")])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "codes mapped to standard concepts" in x)
    assert "Condition 0.0% of 1" in line and "no --vocab given" in line
