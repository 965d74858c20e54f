"""Atomic, confined, owner-only outputs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from synthcohort.errors import TargetError
from synthcohort.outputs import atomic_file, atomic_output_dir, confined


def test_atomic_dir_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), atomic_output_dir(target) as tmp:
        (tmp / "a.ndjson").write_text("{}\n")
        raise KeyboardInterrupt
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(target) as tmp:
        (tmp / "a.ndjson").write_text("{}\n")
    assert (target / "a.ndjson").read_text() == "{}\n"
    assert target.stat().st_mode & 0o077 == 0
    assert (target / "a.ndjson").stat().st_mode & 0o077 == 0


def test_non_empty_dir_refused_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(TargetError, match="not empty"), atomic_output_dir(target):
        pass
    assert (target / "keep").exists()
    with atomic_output_dir(target, overwrite=True) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new"]


def test_symlinked_target_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(TargetError, match="symbolic link"), atomic_output_dir(tmp_path / "link"):
        pass


def test_confined_refuses_escapes(tmp_path: Path) -> None:
    assert confined(tmp_path, "a/b.ndjson") == tmp_path.resolve() / "a" / "b.ndjson"
    for bad in ("../../outside", "/etc/passwd", "a/../../x"):
        with pytest.raises(TargetError):
            confined(tmp_path, bad)
    os.symlink("/tmp", tmp_path / "escape")
    with pytest.raises(TargetError, match="symbolic link"):
        confined(tmp_path, "escape/file")


def test_atomic_file_owner_only_and_clean_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"partial")
        raise RuntimeError
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_file(target) as fh:
        fh.write(b"{}")
    assert target.read_bytes() == b"{}"
    assert target.stat().st_mode & 0o777 == 0o600


def test_disk_full_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = tmp_path / "out"
    with pytest.raises(TargetError, match="No space left"), atomic_output_dir(target) as tmp:
        (tmp / "a").write_text("x")
        monkeypatch.setattr(os, "replace", full)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
