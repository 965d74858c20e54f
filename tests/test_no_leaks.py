"""No secret and no patient value leaks: every command at debug level, with a canary password and canary patients.

The canaries sit where a careless tool would pick them up: the database password (environment), a hospital id in
person_source_value, free text in visit_source_value, a note and an address. Then every command runs with
``-vv --log-file``; its output, its exception, the log, and every file it wrote (stores, exports, reports,
manifests) are searched for them. Failing commands are part of the run: error paths leak most often.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from synthcohort.cli.main import COMMANDS, cli
from tests.bad_inputs.inputs import CANARY_NOTE, CANARY_PASSWORD, CANARY_PATIENT, fill_pg, write_omop_csv

CANARIES = (CANARY_PASSWORD, CANARY_PATIENT, CANARY_NOTE, "Canary-Dupont", "Canaryville", "+33 1 Canary")


def _fhir_input(folder: Path) -> Path:
    """FHIR NDJSON whose identifying elements and free text hold the canaries."""
    folder.mkdir()
    patient = {
        "resourceType": "Patient",
        "id": CANARY_PATIENT,
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": CANARY_PATIENT}],
        "name": [{"family": "Canary-Dupont", "given": ["Jeanne"], "text": CANARY_NOTE}],
        "telecom": [{"system": "phone", "value": "+33 1 Canary"}],
        "address": [{"line": [CANARY_NOTE], "city": "Canaryville"}],
        "gender": "female",
        "birthDate": "1961-04-05",
    }
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": f"Patient/{CANARY_PATIENT}"},
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": CANARY_NOTE}],
            "text": CANARY_NOTE,
        },
        "note": [{"text": CANARY_NOTE}],
        "onsetDateTime": "2012-03-04",
    }
    (folder / "Patient.ndjson").write_text(json.dumps(patient) + "\n")
    (folder / "Condition.ndjson").write_text(json.dumps(condition) + "\n")
    return folder


def _pipeline(work: Path, csv_in: Path, url: str, schema: str) -> Path:
    path = work / "pipeline.toml"
    path.write_text(
        f"""[run]
workdir = "run-work"
outdir = "run-out"

[source]
kind = "omop"
path = "{csv_in}"

[model]
seed = 2

[generate]
n = 50
seed = 3

[evaluate]
enabled = false

[[output]]
kind = "fhir"
path = "run-fhir"

[[output]]
kind = "omop"
url = "{url}"
schema = "{schema}_run"
password_env = "CANARY_PW_ENV"
""",
        encoding="utf-8",
    )
    return path


def _steps(url: str, schema: str, work: Path, csv_in: Path) -> list[tuple[list[str], int | tuple[int, ...]]]:
    """(argv, expected exit code) for every command on this data, successes and refusals."""
    store = str(work / "real.duckdb")
    varied = str(work / "real-csv.duckdb")
    bad_url = url.replace("@", ":inline-secret@")
    fhir_in = _fhir_input(work.parent / "fhir-in")
    return [
        (["extract", "omop", str(csv_in), "-o", varied], 0),
        (["extract", "fhir", str(fhir_in), "-o", str(work / "fhir.duckdb"), "--report", str(work / "fhir.json")], 0),
        (["fit", varied, "-o", str(work / "model"), "--seed", "1"], 0),
        (["fit", varied, "-o", str(work / "model"), "--seed", "1"], 5),
        (["generate", str(work / "model"), "-n", "60", "-o", str(work / "synth.duckdb"), "--seed", "2"], 0),
        (["export", str(work / "synth.duckdb"), "fhir", str(work / "synth-fhir")], 0),
        (["validate", "fhir", str(work / "synth-fhir")], 0),
        (["export", str(work / "synth.duckdb"), "omop", str(work / "synth-omop")], 0),
        (["run", str(_pipeline(work, csv_in, url, schema))], 0),
        *(
            [
                (
                    [
                        "evaluate",
                        varied,
                        str(work / "synth.duckdb"),
                        "--report",
                        str(work / "r.html"),
                        "--json",
                        str(work / "r.json"),
                    ],
                    (0, 7),
                )
            ]
            if "evaluate" in COMMANDS
            else []
        ),
        (["extract", "omop", url, "--schema", schema, "-o", store], 0),
        (["extract", "omop", url, "--schema", "no_such_schema", "-o", str(work / "x.duckdb")], 3),
        (["extract", "omop", bad_url, "--schema", schema, "-o", str(work / "y.duckdb")], 2),
        (["extract", "omop", url, "--schema", schema, "-o", store], 5),
        (["info", store], 0),
        (["validate", "omop", store], 0),
        (["export", store, "omop", str(work / "omop-csv")], 0),
        (["export", store, "omop", str(work / "omop-parquet"), "--format", "parquet"], 0),
        (["export", store, "omop", f"duckdb:///{work / 'omop.duckdb'}"], 0),
        (["export", store, "omop", url, "--schema", f"{schema}_out"], 0),
        (["validate", "omop", url, "--schema", f"{schema}_out"], 0),
        (["export", store, "omop", str(work / "omop-csv")], 5),
    ]


@pytest.fixture
def pg_out(pg_schema: tuple[str, str]) -> Iterator[tuple[str, str]]:
    url, schema = pg_schema
    fill_pg(url, schema)
    yield url, schema
    engine = sa.create_engine(url)
    with engine.begin() as con:
        con.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}_out" CASCADE'))
        con.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}_run" CASCADE'))
    engine.dispose()


def _pg_text(url: str, schema: str) -> str:
    """Every value of every table in ``schema``, as text."""
    engine = sa.create_engine(url)
    out = []
    with engine.connect() as con:
        tables = sa.inspect(con).get_table_names(schema=schema)
        for t in tables:
            out.append(str(con.execute(sa.text(f'SELECT * FROM "{schema}"."{t}"')).fetchall()))
    engine.dispose()
    return "\n".join(out)


@pytest.mark.postgres
def test_no_canary_anywhere(pg_out: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, schema = pg_out
    monkeypatch.setenv("SYNTHCOHORT_DB_PASSWORD", CANARY_PASSWORD)
    monkeypatch.setenv("PGPASSWORD", CANARY_PASSWORD)
    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "key" / "installation.key"))
    monkeypatch.setenv("CANARY_PW_ENV", CANARY_PASSWORD)
    csv_in = write_omop_csv(tmp_path / "input", persons=150)
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "debug.log"
    texts: dict[str, str] = {}
    for argv, expected in _steps(url, schema, work, csv_in):
        result = CliRunner().invoke(cli, ["-vv", "--log-file", str(log), *argv])
        name = " ".join(argv[:3])
        assert result.exit_code in (expected if isinstance(expected, tuple) else (expected,)), (
            f"{name}: {result.output}"
        )
        texts[f"output of {name}"] = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            texts[f"exception of {name}"] = repr(result.exception)
    assert "DEBUG" in log.read_text() or "INFO" in log.read_text()
    texts["log"] = log.read_text()
    for path in sorted(work.rglob("*")):
        if path.is_file():
            texts[str(path.relative_to(work))] = path.read_bytes().decode("latin-1")
    texts["exported PostgreSQL schema"] = _pg_text(url, f"{schema}_out")
    texts["pipeline's PostgreSQL schema"] = _pg_text(url, f"{schema}_run")
    assert "SYNTHETIC" in texts["pipeline's PostgreSQL schema"]
    assert len(texts) > 15
    for where, text in texts.items():
        for canary in CANARIES:
            assert canary.lower() not in text.lower(), f"{canary!r} leaked into {where}"
    assert "inline-secret" not in "\n".join(texts.values())
