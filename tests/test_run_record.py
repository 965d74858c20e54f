"""The run record lists outputs with sha256 and never holds a secret; keyed digests need the key."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synthcohort.keys import installation_key, keyed_digest, verify
from synthcohort.pipeline import run_record
from synthcohort.pipeline.run_record import MANIFEST_NAME, RunRecord, describe_outputs, sha256_file


def test_manifest_lists_every_output_file(tmp_path: Path) -> None:
    out = tmp_path / "fhir"
    out.mkdir()
    (out / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient"}\n')
    record = RunRecord(config={"source": {"url": "postgresql://u:***@h/db"}}, seeds={"model": 1, "generate": 2})
    record.outputs = describe_outputs([out], tmp_path)
    path = record.write(tmp_path, "succeeded")
    data = json.loads(path.read_text())
    assert path.name == MANIFEST_NAME
    assert data["status"] == "succeeded"
    assert data["outputs"] == [
        {
            "path": "fhir/Patient.ndjson",
            "bytes": 27,
            "sha256": hashlib.sha256(b'{"resourceType":"Patient"}\n').hexdigest(),
        }
    ]
    assert data["versions"]["synthcohort"]


def test_keyed_digest_depends_on_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "k" / "installation.key"))
    key = installation_key()
    assert installation_key() == key
    assert (tmp_path / "k" / "installation.key").stat().st_mode & 0o777 == 0o600
    sig = keyed_digest(b"model bytes")
    assert verify(b"model bytes", sig)
    assert not verify(b"model bytes", keyed_digest(b"model bytes", key=b"another installation"))


def _folder_of_bundles(root: Path, count: int) -> Path:
    out = root / "fhir"
    (out / "bundles").mkdir(parents=True)
    for i in range(count):
        (out / "bundles" / f"bundle-{i:07d}.json").write_bytes(b'{"resourceType":"Bundle","n":%d}' % i)
    (out / "provenance.json").write_bytes(b'{"resourceType":"Provenance"}\n')
    (out / "bundles-index.txt").write_bytes(b"sorts before bundles/ by bytes, after it by path parts\n")
    return out


def _recipe_digest(folder: Path) -> str:
    """The folder digest as the run record's docstring tells anyone to compute it."""
    paths = sorted((p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()), key=str.encode)
    lines = "".join(f"{hashlib.sha256((folder / p).read_bytes()).hexdigest()}  {p}\n" for p in paths)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_a_folder_of_many_files_is_one_entry_with_a_digest_anyone_can_recompute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_record, "MANY_FILES", 5)
    out = _folder_of_bundles(tmp_path, 6)
    sizes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    [entry] = describe_outputs([out], tmp_path)
    assert entry == {"path": "fhir", "file_count": 8, "bytes": sizes, "sha256": _recipe_digest(out)}
    if shutil.which("sha256sum") and sys.platform.startswith("linux"):
        command = "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
        shell = subprocess.run(command, shell=True, cwd=out, capture_output=True, text=True, check=True)
        assert shell.stdout.split()[0] == entry["sha256"]

    bundle = out / "bundles" / "bundle-0000003.json"
    bundle.write_bytes(bundle.read_bytes().replace(b"3", b"4"))
    [changed] = describe_outputs([out], tmp_path)
    assert changed["bytes"] == sizes and changed["sha256"] != entry["sha256"]
    assert changed["sha256"] == _recipe_digest(out)


def test_a_folder_at_the_threshold_keeps_its_list_of_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_record, "MANY_FILES", 8)
    out = _folder_of_bundles(tmp_path, 6)
    entries = describe_outputs([out], tmp_path)
    members = sorted(p for p in out.rglob("*") if p.is_file())
    assert entries == [
        {"path": str(p.relative_to(tmp_path)), "bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in members
    ]
