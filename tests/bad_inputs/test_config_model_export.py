"""Bad inputs 29-32 (config, model, export): refused or failed cleanly, nothing under a final name.

Case -> test (where another module already covers it):
  29 ../../outside, absolute member path  -> tests/test_outputs.py::test_confined_refuses_escapes
  29 symlink leading outside              -> tests/test_outputs.py::test_symlinked_target_refused, and here
  29 existing non-empty folder            -> tests/test_outputs.py::test_non_empty_dir_refused_unless_overwrite,
                                             tests/test_extract_omop_csv.py::test_existing_output_refused
  29 read-only folder, disk full          -> here (store building) and test_outputs.py::test_disk_full_fails_cleanly
  31 n=0, n=10**9, NaN, seed as text      -> tests/test_pipeline_config.py::test_bad_values_refused_before_any_work
  neighbour: an unforeseen fault          -> here: exit 70, no traceback, no data in the message
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.connectors.omop.ingest import Ingest
from tests.bad_inputs.inputs import CANARY_NOTE, CANARY_PATIENT, leftovers


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
