"""Export targets staged under temporary names, all published together once every writer has finished."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from synthcohort.errors import TargetError
from synthcohort.outputs import atomic_output_dir, check_target_dir
from synthcohort.pipeline.config import OutputConfig
from synthcohort.pipeline.run_record import describe_outputs
from synthcohort.secrets import mask_url


def duckdb_file(output: OutputConfig) -> Path | None:
    """The file of a ``duckdb:///`` output URL (None for other targets)."""
    if not output.url:
        return None
    url = make_url(output.url)
    return Path(url.database) if url.get_backend_name() == "duckdb" and url.database else None


def describe_target(output: OutputConfig, outdir: Path) -> str:
    """How the run record names a target: a path relative to the record when inside it, a masked URL otherwise."""
    place = Path(output.path) if output.path else duckdb_file(output)
    if place is not None:
        return str(place.relative_to(outdir)) if place.is_relative_to(outdir) else str(place)
    schema = f" schema {output.schema}" if output.schema else ""
    return f"{mask_url(str(output.url))}{schema}"


def display_target(output: OutputConfig) -> str:
    """A target as a person should see it: the folder or file path, or the masked URL and schema."""
    place = Path(output.path) if output.path else duckdb_file(output)
    if place is not None:
        return str(place)
    return f"{mask_url(str(output.url))}{f' schema {output.schema}' if output.schema else ''}"


def precheck(output: OutputConfig, overwrite: bool) -> None:
    """Refuse a target that would be refused at export, before hours of work are spent."""
    if output.path:
        check_target_dir(Path(output.path), overwrite=overwrite)
    file = duckdb_file(output)
    if file is not None and file.exists() and not overwrite:
        raise TargetError(f"{file} already exists", "pass --overwrite (or set [run] overwrite = true) to replace it")


@dataclass
class Staged:
    """One output while the run exports: where its writer writes, and what the record will say of it."""

    output: OutputConfig
    target: str  # what the writer receives: a staging folder, a staging DuckDB URL, or the database URL
    staging: Path | None  # the staging folder or file, hashed for the record before publishing
    record: dict[str, Any] = field(default_factory=dict)

    def describe_files(self) -> None:
        if self.staging is None:
            return
        root = self.staging if self.staging.is_dir() else self.staging.parent
        files = describe_outputs([self.staging], root)
        if not self.staging.is_dir():
            name = duckdb_file(self.output)
            for entry in files:
                entry["path"] = name.name if name else entry["path"]
        self.record["files"] = files


@contextlib.contextmanager
def _staged_duckdb(final: Path, overwrite: bool) -> Iterator[Path]:
    if final.exists() and not overwrite:
        raise TargetError(f"{final} already exists", "pass --overwrite (or set [run] overwrite = true) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # DuckDB creates the file itself
    try:
        yield tmp
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            leftover.unlink(missing_ok=True)


def stage(stack: contextlib.ExitStack, output: OutputConfig, overwrite: bool) -> Staged:
    """Enter the output's staging context on ``stack``: it publishes on a clean exit and cleans up otherwise."""
    base = {"kind": output.kind, "format": output.format or ("ndjson" if output.kind == "fhir" else None)}
    if output.path:
        tmp = stack.enter_context(atomic_output_dir(output.path, overwrite=overwrite))
        return Staged(output, str(tmp), tmp, {**base, "format": output.format or _default_format(output)})
    file = duckdb_file(output)
    if file is not None:
        tmp = stack.enter_context(_staged_duckdb(file, overwrite))
        return Staged(output, f"duckdb:///{tmp}", tmp, {**base, "format": "duckdb"})
    return Staged(output, str(output.url), None, {**base, "format": make_url(str(output.url)).get_backend_name()})


def _default_format(output: OutputConfig) -> str:
    return "ndjson" if output.kind == "fhir" else "csv"
