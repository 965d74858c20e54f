"""The run record lists outputs with sha256 and never holds a secret; keyed digests need the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from synthcohort.keys import installation_key, keyed_digest, verify
from synthcohort.pipeline.run_record import MANIFEST_NAME, RunRecord, describe_outputs


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
