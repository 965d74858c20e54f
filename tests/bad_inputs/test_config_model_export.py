"""Bad inputs 29-32 (config, model, export): refused or failed cleanly, nothing under a final name.

Case -> test (where another module already covers it):
  29 ../../outside, absolute member path  -> tests/test_outputs.py::test_confined_refuses_escapes
  29 symlink leading outside              -> tests/test_outputs.py::test_symlinked_target_refused, and here
  29 existing non-empty folder            -> tests/test_outputs.py::test_non_empty_dir_refused_unless_overwrite,
                                             tests/test_extract_omop_csv.py::test_existing_output_refused
  29 read-only folder, disk full          -> here (store building) and test_outputs.py::test_disk_full_fails_cleanly
  30 another tool/format/CDM version      -> test_generator.py::test_model_of_another_version_or_altered_is_refused
  30 tampered with checksums rewritten    -> here: test_tampered_model_with_rewritten_checksums_refused (pickle in an
                                             array, NaN, negative, out-of-range, unknown engine, ../ file entry)
  30 pickled (SDV) model unsigned/altered -> tests/test_signing.py
  31 n=0, n=10**9, NaN, seed as text      -> tests/test_pipeline_config.py::test_bad_values_refused_before_any_work,
                                             tests/test_generator.py::test_cli_generate_refuses_bad_input_before_reading
  32 SIGINT during fit/generate/export    -> tests/bad_inputs/test_interrupts.py; same seed, same bytes:
                                             tests/bad_inputs/test_determinism.py
  neighbour: an unforeseen fault          -> here: exit 70, no traceback, no data in the message
  neighbour: DuckDB out of memory         -> here: exit 4, the cap named, no internal fault; a command that
                                             opens a DuckDB file keeps its own error and exit code but says so
                                             (export: tests/omop/test_writer.py)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from synthcohort import cohort
from synthcohort.cli.main import cli
from synthcohort.connectors.omop.ingest import Ingest
from synthcohort.errors import SourceError
from tests.bad_inputs.inputs import CANARY_NOTE, CANARY_PATIENT, leave_unsaved_log, leftovers


def _extract(src: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["extract", "omop", str(src), "-o", str(out), *extra])
    return result.exit_code, result.output


def test_symlink_as_store_target_refused(omop_csv: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.duckdb"
    outside.write_bytes(b"keep")
    link = tmp_path / "out" / "cohort.duckdb"
    link.parent.mkdir()
    os.symlink(outside, link)
    code, output = _extract(omop_csv, link, "--overwrite")
    assert code == 5 and "symbolic link" in output
    assert outside.read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("where", "exc"),
    [
        ("append", duckdb.IOException('Could not write file "x.duckdb": No space left on device')),
        ("append", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
        ("replace", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
        ("replace", OSError(errno.EROFS, os.strerror(errno.EROFS))),
        ("mkstemp", OSError(errno.EROFS, os.strerror(errno.EROFS))),
    ],
)
def test_full_or_read_only_target_fails_cleanly(
    omop_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, exc: BaseException
) -> None:
    # Tests run as root, so permissions cannot make a folder read-only: the OS errors are injected.
    def fail(*_: object, **__: object) -> None:
        raise exc

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if where == "append":
        monkeypatch.setattr(Ingest, "add", fail)
    elif where == "replace":
        monkeypatch.setattr("synthcohort.cohort.os.replace", fail)
    else:
        monkeypatch.setattr("synthcohort.cohort.tempfile.mkstemp", fail)
    code, output = _extract(omop_csv, out_dir / "cohort.duckdb")
    monkeypatch.undo()
    assert code == 5, output
    assert "cohort store" in output and "free space" in output
    assert "Traceback" not in output
    assert list(out_dir.iterdir()) == [] and leftovers(tmp_path) == []


def test_unforeseen_fault_shows_no_data(omop_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise ValueError(f"could not convert {CANARY_PATIENT} / {CANARY_NOTE}")

    monkeypatch.setattr(Ingest, "add", boom)
    log = tmp_path / "debug.log"
    result = CliRunner().invoke(
        cli, ["-vv", "--log-file", str(log), "extract", "omop", str(omop_csv), "-o", str(tmp_path / "c.duckdb")]
    )
    assert result.exit_code == 70
    assert "unexpected internal fault (ValueError)" in result.output
    for text in (result.output, log.read_text()):
        assert CANARY_PATIENT not in text and CANARY_NOTE not in text and "Traceback" not in result.output
    assert "test_config_model_export.py" in log.read_text()  # the code location is recorded for a report
    assert not (tmp_path / "c.duckdb").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "could not allocate block of size 256.0 KiB (511.8 MiB/512.0 MiB used)",
            "error: DuckDB ran out of memory: a step needed more than its cap of 512.0 MiB",
        ),
        (
            "failed to offload data block of size 256.0 KiB (9.0 GiB/9.0 GiB used).\n"
            "This limit was set by the 'max_temp_directory_size' setting.",
            "error: DuckDB ran out of disk space for the data it moves out of memory",
        ),
    ],
    ids=["memory", "disk"],
)
def test_duckdb_out_of_memory_is_a_user_error(
    omop_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, said: str
) -> None:
    def oom(*_: object, **__: object) -> None:
        raise duckdb.OutOfMemoryException(f"Out of Memory Error: {text}")

    monkeypatch.setattr(Ingest, "add", oom)
    code, output = _extract(omop_csv, tmp_path / "c.duckdb")
    assert code == SourceError.exit_code, output
    assert said in output and "what to do:" in output
    assert "internal fault" not in output and "Traceback" not in output and "SET memory_limit" not in output
    assert not (tmp_path / "c.duckdb").exists() and leftovers(tmp_path) == []


# 1MB: an INSERT fails with DuckDB's own error; 2MB: the statement after it fails as an aborted transaction.
@pytest.mark.parametrize(("limit", "cap"), [("1MB", "976.5 KiB"), ("2MB", "1.9 MiB")])
def test_store_out_of_its_memory_cap(
    omop_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, cap: str
) -> None:
    hardened = cohort.hardened_config
    monkeypatch.setattr(cohort, "hardened_config", lambda read_only, memory_limit=None: hardened(read_only, limit))
    code, output = _extract(omop_csv, tmp_path / "c.duckdb")
    assert code == SourceError.exit_code, output
    assert f"error: DuckDB ran out of memory: a step needed more than its cap of {cap}" in output
    assert not (tmp_path / "c.duckdb").exists() and leftovers(tmp_path) == []


def test_store_append_raises_the_out_of_memory_error_itself(
    omop_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library caller sees DuckDB's out-of-memory error, not the aborted transaction that follows it."""
    from synthcohort.connectors.omop.csv_source import read_csv_folder

    hardened = cohort.hardened_config
    monkeypatch.setattr(cohort, "hardened_config", lambda read_only, memory_limit=None: hardened(read_only, "2MB"))
    with pytest.raises(duckdb.OutOfMemoryException), cohort.CohortStore.building(tmp_path / "c.duckdb") as store:
        read_csv_folder(omop_csv, store)
    assert not (tmp_path / "c.duckdb").exists()


CAP_1MB = "(DuckDB ran out of memory: a step needed more than its cap of 976.5 KiB)"


# Opening a DuckDB file left with a write-ahead log replays it in memory; under a 1 MB cap DuckDB reports the block
# it could not allocate as a failed transaction (not as its out-of-memory error), with the path of the log.
@pytest.mark.parametrize(
    ("argv", "capped", "code", "said"),
    [
        (["validate", "omop", "{file}"], "connectors.omop.validate", 3, f"error: f.duckdb cannot be opened {CAP_1MB}"),
        (["extract", "omop", "duckdb:///{file}", "-o", "{out}"], "connectors.omop.database", 4, f"failed {CAP_1MB}"),
        (
            ["extract", "fhir", "{fhir}", "--vocab", "{file}", "-o", "{out}"],
            "mappings.vocabulary",
            3,
            f"error: cannot open the vocabulary database f.duckdb {CAP_1MB}",
        ),
        (["info", "{file}"], "cohort", 4, f"error: {CAP_1MB[1:-1]}"),
    ],
    ids=["validate", "source", "vocabulary", "store"],
)
def test_duckdb_file_whose_log_exceeds_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], capped: str, code: int, said: str
) -> None:
    file, out, fhir = tmp_path / "f.duckdb", tmp_path / "c.duckdb", tmp_path / "Patient.ndjson"
    leave_unsaved_log(file)
    fhir.write_text('{"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}\n')
    hardened = cohort.hardened_config
    monkeypatch.setattr(
        f"synthcohort.{capped}.hardened_config", lambda read_only, memory_limit=None: hardened(read_only, "1MB")
    )
    args = [a.format(file=file, out=out, fhir=fhir) for a in argv]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert said in result.output and "what to do: the cap is set by the tool" in result.output
    assert "WAL" not in result.output and "Possible solutions" not in result.output  # none of DuckDB's own text
    assert not out.exists()


# -- 30: model folders from elsewhere ------------------------------------------------------------------------------
# The generator's suite covers another tool/format/CDM version and an altered file with its checksum left as it
# was (tests/test_generator.py::test_model_of_another_version_or_altered_is_refused). Checksums in model.json are
# not secret, so here the tampering also rewrites them: the value checks behind them must still refuse the model.


def _rehash(model: Path) -> None:
    import hashlib
    import json

    manifest = json.loads((model / "model.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((model / name).read_bytes()).hexdigest()
    (model / "model.json").write_text(json.dumps(manifest))


def _tamper_npz(model: Path, key: str, value: object) -> None:
    import numpy as np

    with np.load(model / "native.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays[key] = value  # type: ignore[assignment]
    with (model / "native.npz").open("wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def _tamper_json(model: Path, name: str, edit: object) -> None:
    import json

    data = json.loads((model / name).read_text())
    edit(data)  # type: ignore[operator]
    (model / name).write_text(json.dumps(data))


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/synthcohort-model-pwned",))


TAMPERINGS = {
    "pickled object array": lambda m: _tamper_npz(m, "quota", __import__("numpy").array([_Boom()], dtype=object)),
    "negative quota": lambda m: _tamper_npz(m, "quota", -__import__("numpy").ones((2, 19))),
    "NaN statistics": lambda m: _tamper_npz(m, "s_gap_q", __import__("numpy").full((1, 101), float("nan"))),
    "unknown variable kind": lambda m: _tamper_json(m, "layout.json", lambda d: d["variables"][0].update(kind="code")),
    "variable given out of range": lambda m: _tamper_json(
        m, "layout.json", lambda d: d["variables"][0].update(given=10_000)
    ),
    "unknown engine": lambda m: _tamper_json(m, "model.json", lambda d: d.update(engine="os.system")),
    "file outside the folder": lambda m: _tamper_json(m, "model.json", lambda d: d["files"].update({"../x": "0"})),
    "params out of range": lambda m: _tamper_json(m, "model.json", lambda d: d["params"].update(k=-1)),
    "missing ref_day": lambda m: _tamper_json(m, "model.json", lambda d: d["record"].pop("ref_day")),
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_tampered_model_with_rewritten_checksums_refused(
    small_model: tuple[Path, Path], tmp_path: Path, how: str
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(small_model[1], model)
    TAMPERINGS[how](model)
    if how != "file outside the folder":
        _rehash(model)
    out = tmp_path / "synth.duckdb"
    result = CliRunner().invoke(cli, ["generate", str(model), "-n", "10", "-o", str(out)])
    assert result.exit_code == 6, result.output
    assert "model" in result.output and "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path) == []
    assert not Path("/tmp/synthcohort-model-pwned").exists()


def test_missing_or_non_model_folder_refused(tmp_path: Path) -> None:
    for model in (tmp_path / "absent", tmp_path):
        result = CliRunner().invoke(cli, ["generate", str(model), "-n", "10", "-o", str(tmp_path / "s.duckdb")])
        assert result.exit_code == 6 and "model" in result.output
    assert not (tmp_path / "s.duckdb").exists()
