"""Safe outputs: paths confined under a chosen folder, owner-only files, atomic appearance."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from synthcohort.errors import TargetError

FILE_MODE = 0o600
DIR_MODE = 0o700


def confined(base: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path:
    """``base / relative``, refused when it would leave ``base`` (``..``, absolute, or a symlink)."""
    root = Path(base).resolve()
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise TargetError(f"output path {rel} leaves the output folder", "give a plain relative name")
    candidate = root / rel
    for parent in (candidate, *candidate.parents):
        if parent == root:
            break
        if parent.is_symlink():
            raise TargetError(
                f"output path {rel} goes through a symbolic link", "remove the link or choose another folder"
            )
    if not candidate.resolve().is_relative_to(root):
        raise TargetError(f"output path {rel} leaves the output folder", "give a plain relative name")
    return candidate


def check_target_dir(path: Path, *, overwrite: bool) -> None:
    """Refuse a symlinked target, or a non-empty one unless ``overwrite``."""
    if path.is_symlink():
        raise TargetError(f"{path} is a symbolic link", "give a real folder path")
    if path.exists() and not path.is_dir():
        raise TargetError(f"{path} exists and is not a folder", "choose another output path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise TargetError(f"{path} is not empty", "pass --overwrite to replace it, or choose an empty folder")


def _owner_only(folder: Path) -> None:
    """Whatever library wrote the files, the published tree is readable by its owner only."""
    for path in folder.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only when the block succeeds.

    On any failure (an error, a full disk, Ctrl-C) the temporary folder is removed and nothing
    appears under the final name.
    """
    final = Path(path)
    check_target_dir(final, overwrite=overwrite)
    parent = final.parent if str(final.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise TargetError(f"cannot create the output folder {final}: {exc.strerror}") from None
    os.chmod(tmp, DIR_MODE)
    try:
        yield tmp
        _owner_only(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise TargetError(f"writing {final} failed: {exc.strerror}", "check free space and permissions") from None
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb", *, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` (owner-only); it is renamed to ``path`` on success."""
    final = Path(path)
    if final.is_symlink():
        raise TargetError(f"{final} is a symbolic link", "give a plain file path")
    if final.exists() and not overwrite:
        raise TargetError(f"{final} already exists", "pass --overwrite to replace it")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    except OSError as exc:
        raise TargetError(f"cannot write {final}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    os.chmod(tmp, FILE_MODE)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise TargetError(f"writing {final} failed: {exc.strerror}", "check free space and permissions") from None
        raise
