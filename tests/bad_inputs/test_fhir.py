"""FHIR bad inputs: the neighbours of cases 4, 5 and 13 that the FHIR suite does not already throw.

Case -> test (tests/test_fhir_bad_inputs.py covers 1-16 as listed in the bad-input document):
  4  line-length cap                     -> test_fhir_bad_inputs.py::test_line_over_the_cap_stops_the_file
  4  gzip bomb (.ndjson.gz)              -> test_fhir_bad_inputs.py::test_decompression_cap_stops_a_gzip_bomb
     neighbour: a bomb inside a zip member or a tar.gz member -> test_archive_member_bomb_stops_at_the_cap
  5  ../, absolute, symlink (zip, tar)   -> test_fhir_bad_inputs.py::test_unsafe_archives_are_refused
     neighbours: hard link, device node, Windows drive path, backslash ../ -> test_more_unsafe_members_refused
     neighbour: a symlink inside an input folder pointing outside -> test_symlink_in_folder_not_followed
     neighbour: a corrupt zip / gzip / tar -> test_corrupt_archives_fail_cleanly
  13 a JSON file over the size cap       -> test_json_file_over_the_cap_is_not_read
     neighbour: a folder or file with no FHIR file in it -> test_no_fhir_file_is_refused,
                test_validate_refuses_a_folder_with_no_fhir_file
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.reader import read_fhir
from synthcohort.connectors.fhir.report import RunReport
from synthcohort.connectors.fhir.sources import Limits
from synthcohort.errors import InputError
from tests.bad_inputs.inputs import leftovers

PATIENT = orjson.dumps({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-02-03"}) + b"\n"


def _read(tmp_path: Path, source: Path, limits: Limits | None = None) -> tuple[RunReport, int]:
    out = tmp_path / "store.duckdb"
    out.unlink(missing_ok=True)
    with CohortStore.building(out) as store:
        report = read_fhir(source, store, limits=limits)
        persons = store.person_count()
    return report, persons


def _tar_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_member_bomb_stops_at_the_cap(tmp_path: Path, kind: str) -> None:
    bomb = PATIENT + b"\n" * 5_000_000  # 5 MB of blank lines, a few kB compressed
    archive = tmp_path / f"in.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("Patient.ndjson", bomb)
    else:
        with tarfile.open(archive, "w:gz") as tf:
            _tar_member(tf, "Patient.ndjson", bomb)
    assert archive.stat().st_size < 100_000
    report, persons = _read(tmp_path, archive, Limits(decompressed_bytes=1_500_000))
    assert report.skipped["(unparsed)"] == {"decompression_cap": 1}
    assert persons == 1
    assert any("decompression cap" in w for w in report.warnings)


def _unsafe_tar(path: Path, how: str) -> Path:
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("data/Patient.ndjson")
        if how == "hardlink":
            _tar_member(tf, "a.ndjson", PATIENT)
            info.type, info.linkname = tarfile.LNKTYPE, "a.ndjson"
        elif how == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif how == "fifo":
            info.type = tarfile.FIFOTYPE
        tf.addfile(info)
    return path


def _unsafe_zip(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, PATIENT)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _unsafe_tar(p / "a.tar", "hardlink"),
        lambda p: _unsafe_tar(p / "a.tar", "device"),
        lambda p: _unsafe_tar(p / "a.tar", "fifo"),
        lambda p: _unsafe_zip(p / "a.zip", "C:/Windows/evil.ndjson"),
        lambda p: _unsafe_zip(p / "a.zip", "..\\..\\evil.ndjson"),
        lambda p: _unsafe_zip(p / "a.zip", "ok/../../evil.ndjson"),
    ],
    ids=["tar-hardlink", "tar-device", "tar-fifo", "zip-drive", "zip-backslash-dotdot", "zip-inner-dotdot"],
)
def test_more_unsafe_members_refused(tmp_path: Path, make: Any) -> None:
    archive = make(tmp_path)
    out = tmp_path / "out" / "c.duckdb"
    result = CliRunner().invoke(cli, ["extract", "fhir", str(archive), "-o", str(out)])
    assert result.exit_code == InputError.exit_code, result.output
    assert "refused" in result.output and "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path) == []


def test_symlink_in_folder_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Patient.ndjson").write_bytes(PATIENT.replace(b'"p1"', b'"p2"'))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes(PATIENT)
    os.symlink(outside / "Patient.ndjson", folder / "More.ndjson")
    os.symlink(outside, folder / "sub")
    report, persons = _read(tmp_path, folder)
    assert persons == 1  # only the real file: neither the linked file nor the linked folder was read


@pytest.mark.parametrize("kind", ["zip", "ndjson.gz", "tar.gz"])
def test_corrupt_archives_fail_cleanly(tmp_path: Path, kind: str) -> None:
    good = gzip.compress(PATIENT * 2000)
    path = tmp_path / f"in.{kind}"
    if kind == "zip":
        path.write_bytes(b"PK\x03\x04" + os.urandom(200))
    elif kind == "ndjson.gz":
        path.write_bytes(good[:30] + os.urandom(200) + good[230:])
    else:
        path.write_bytes(good[:20] + b"\x00" * 50)
    out = tmp_path / "c.duckdb"
    result = CliRunner().invoke(cli, ["extract", "fhir", str(path), "-o", str(out)])
    assert result.exit_code in (3, 4), result.output  # refused or counted as unreadable, never a crash
    assert "unexpected" not in result.output and "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path) == []


def test_json_file_over_the_cap_is_not_read(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": orjson.loads(PATIENT)}, {"resource": {"resourceType": "Basic", "id": "x" * 20_000}}],
    }
    src = tmp_path / "bundle.json"
    src.write_bytes(orjson.dumps(bundle))
    report, persons = _read(tmp_path, src, Limits(json_file_bytes=10_000))
    assert report.skipped["(unparsed)"] == {"file_too_large": 1}
    assert persons == 0


@pytest.mark.parametrize("what", ["empty folder", "folder of other files", "file of another kind"])
def test_no_fhir_file_is_refused(tmp_path: Path, what: str) -> None:
    """A wrong path must not give an empty cohort store and exit 0."""
    folder = tmp_path / "in"
    folder.mkdir()
    source = folder
    if what != "empty folder":
        (folder / "notes.txt").write_text("not FHIR")
        (folder / "data.csv").write_text("a,b\n1,2\n")
    if what == "file of another kind":
        source = folder / "data.csv"
    out = tmp_path / "out" / "c.duckdb"
    result = CliRunner().invoke(cli, ["extract", "fhir", str(source), "-o", str(out)])
    assert result.exit_code == InputError.exit_code, result.output
    assert "no FHIR file" in result.output and ".ndjson" in result.output and "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path) == []


def test_validate_refuses_a_folder_with_no_fhir_file(tmp_path: Path) -> None:
    """Validation shares the discovery: an empty folder is a wrong path, not a failed validation."""
    (tmp_path / "notes.txt").write_text("not FHIR")
    result = CliRunner().invoke(cli, ["validate", "fhir", str(tmp_path)])
    assert result.exit_code == InputError.exit_code, result.output
    assert "no FHIR file" in result.output and "Provenance" not in result.output
