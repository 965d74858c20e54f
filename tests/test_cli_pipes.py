"""A reader that closes the pipe early (``synthcohort info STORE | head -1``) stops the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthcohort.cohort import CohortStore

ROOT = Path(__file__).resolve().parents[1]


def _closed_pipe_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with stdout a pipe whose reading end is closed before the command starts."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all, before the child exists: its first write meets a closed pipe
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "synthcohort", *args], stdout=write_end, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
    finally:
        os.close(write_end)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout=120), b"", err)


@pytest.mark.parametrize("args", [["info", "store.duckdb"], ["--help"], ["extract", "omop", "--help"]])
def test_closed_stdout_stops_quietly(tmp_path: Path, args: list[str]) -> None:
    with CohortStore.building(tmp_path / "store.duckdb") as store:
        store.set_meta("kind", "real")
    done = _closed_pipe_run(args, tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr == b"", done.stderr  # no traceback, no "Exception ignored", no internal-fault message


def test_open_stdout_still_prints(tmp_path: Path) -> None:
    with CohortStore.building(tmp_path / "store.duckdb") as store:
        store.set_meta("kind", "real")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "synthcohort", "info", "store.duckdb"], capture_output=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0 and done.stdout.startswith(b"cohort store store.duckdb\n"), done.stderr


def test_broken_pipe_elsewhere_is_a_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken pipe while stdout is still read (a socket, a FIFO) is reported, not silenced."""
    from click.testing import CliRunner

    from synthcohort.cli import info, main

    def broken(cohort: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(info.command, "callback", broken)
    monkeypatch.setattr(main, "_stdout_reader_gone", lambda: False)  # CliRunner's stdout is no pipe
    result = CliRunner().invoke(main.cli, ["info", "x.duckdb"])
    assert result.exit_code == 70 and "unexpected internal fault (BrokenPipeError)" in result.output


def test_stdout_reader_gone_tells_a_closed_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcohort.cli.main import _stdout_reader_gone

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as writer:
        monkeypatch.setattr(sys, "stdout", writer)
        assert not _stdout_reader_gone()
        os.close(read_end)
        assert _stdout_reader_gone()
