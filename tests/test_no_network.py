"""No network: the tool connects to nothing but the database it is given, and looks up no other name.

Commands run in a subprocess under an audit hook that records every ``socket.connect`` and name lookup made from
Python (tests/netguard.py). The file-only path also runs in a network namespace with no interface at all
(``unshare -n``), which also catches connections made by native code (DuckDB extensions, libpq).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_inputs.inputs import fill_pg, write_omop_csv

GUARD = Path(__file__).with_name("netguard.py")
ROOT = Path(__file__).resolve().parents[1]


def _guarded(argvs: list[list[str]], allowed: str, tmp_path: Path, prefix: list[str] | None = None) -> dict:
    report = tmp_path / f"net-{len(list(tmp_path.glob('net-*')))}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    env["SYNTHCOHORT_KEY_FILE"] = str(tmp_path / "key" / "installation.key")
    cmd = [*(prefix or []), sys.executable, str(GUARD), str(report), allowed, "--", json.dumps(argvs)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(report.read_text())


def _file_steps(tmp_path: Path) -> list[list[str]]:
    src = write_omop_csv(tmp_path / "input", persons=150)
    store = str(tmp_path / "real.duckdb")
    synth = str(tmp_path / "synth.duckdb")
    return [
        ["extract", "omop", str(src), "-o", store],
        ["info", store],
        ["fit", store, "-o", str(tmp_path / "model"), "--seed", "1"],
        ["generate", str(tmp_path / "model"), "-n", "50", "-o", synth, "--seed", "2"],
        ["export", synth, "omop", str(tmp_path / "out-csv")],
        ["export", synth, "omop", str(tmp_path / "out-parquet"), "--format", "parquet"],
        ["export", synth, "omop", f"duckdb:///{tmp_path / 'out.duckdb'}"],
        ["export", synth, "fhir", str(tmp_path / "out-fhir")],
        ["validate", "omop", str(tmp_path / "out-csv")],
        ["validate", "fhir", str(tmp_path / "out-fhir")],
        ["extract", "fhir", str(tmp_path / "out-fhir"), "-o", str(tmp_path / "back.duckdb")],
    ]


def _no_network_prefix() -> list[str]:
    """``unshare -n`` when this system allows a private network namespace (then not even native code gets out)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def test_file_pipeline_opens_no_socket(tmp_path: Path) -> None:
    steps = _file_steps(tmp_path)
    report = _guarded(steps, "", tmp_path, prefix=_no_network_prefix())
    assert report["codes"] == [0] * len(steps)
    assert report["seen"] == []


@pytest.mark.postgres
def test_database_pipeline_talks_to_the_database_only(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_schema
    fill_pg(url, schema)
    store = str(tmp_path / "real.duckdb")
    steps = [
        ["extract", "omop", url, "--schema", schema, "-o", store],
        ["export", store, "omop", str(tmp_path / "out-csv")],
        ["validate", "omop", str(tmp_path / "out-csv")],
    ]
    report = _guarded(steps, "127.0.0.1:5432", tmp_path)
    assert report["codes"] == [0] * len(steps)
    assert [s for s in report["seen"] if not s["allowed"]] == []
