"""The file a DuckDB target is written in: a sibling that replaces the target only once the write succeeded.

A new target starts as an empty sibling. An existing one (--overwrite, --append) is copied into the
sibling first, under a read lock on the target that keeps every other writer out until the sibling has
replaced it: the write can then commit batch by batch under a memory cap, and the target still changes
all at once or not at all (one DuckDB transaction over a whole export cannot spill its key indexes)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from synthcohort.cohort import (
    EXPORT_MEMORY_LIMIT,
    failure_reason,
    hardened_config,
    held_by_another_process,
    out_of_memory,
)
from synthcohort.errors import TargetError

_SPACE_HINT = "an existing DuckDB target is rewritten as a copy beside it: check free space for twice its size"


def connect_target(path: Path, shown: str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A capped connection to ``path``; a refusal names the target as ``shown`` and says whether it is locked."""
    try:
        return duckdb.connect(str(path), config=hardened_config(read_only, memory_limit=EXPORT_MEMORY_LIMIT))
    except duckdb.Error as exc:
        if held_by_another_process(exc):
            raise TargetError(
                f"the DuckDB target {shown} is locked by another process",
                "close the program holding it, then run again",
            ) from None
        if said := out_of_memory(exc):
            raise TargetError(f"the DuckDB target {shown} cannot be opened ({said.message})", said.hint) from None
        raise TargetError(
            f"the DuckDB target {shown} cannot be opened as a DuckDB database ({type(exc).__name__})",
            "name a DuckDB file, or a path where none exists yet",
        ) from None


@contextlib.contextmanager
def staged_target(
    target: Path, examine: Callable[[duckdb.DuckDBPyConnection], None] = lambda con: None
) -> Iterator[Path]:
    """Yield the path to write instead of ``target``; it replaces ``target`` when the block succeeds (the
    caller has closed its connection by then) and is removed otherwise. An existing target is copied into it
    after ``examine`` has seen it (read-only), which may refuse it before anything is copied."""
    if target.exists():
        target = target.resolve()  # a symbolic link keeps pointing at the file it names
    sibling = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    with contextlib.ExitStack() as held:
        try:
            if target.exists():
                examine(held.enter_context(_read_locked(target)))
                _copy(target, sibling)
            yield sibling
            sibling.replace(target)
        finally:
            for leftover in (sibling, Path(f"{sibling}.wal")):
                leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def _read_locked(target: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Hold a read-only connection to ``target``: DuckDB then lets no process open it for writing. Changes
    still in its write-ahead log are first checkpointed into the file, so that the file alone is the database."""
    wal = Path(f"{target}.wal")
    if wal.exists():
        con = connect_target(target, target.name)
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            reason, hint = failure_reason(exc)
            raise TargetError(f"checkpointing the DuckDB target {target.name} failed ({reason})", hint) from None
        finally:
            con.close()
    con = connect_target(target, target.name, read_only=True)
    try:
        if wal.exists():
            raise TargetError(f"the DuckDB target {target.name} is being changed by another process", "run again")
        yield con
    finally:
        con.close()


def _copy(target: Path, sibling: Path) -> None:
    try:
        shutil.copyfile(target, sibling)
        shutil.copymode(target, sibling)
    except OSError as exc:
        raise TargetError(f"copying {target.name} before writing failed: {exc.strerror}", _SPACE_HINT) from None
