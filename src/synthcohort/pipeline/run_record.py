r"""The run record: a manifest written beside a run's outputs (config masked, versions, fingerprints, hashes).

Each output lists its files, each with its path, size and sha256. An output folder holding more than
``MANY_FILES`` files (one FHIR Bundle per patient, say) is recorded as one entry instead::

    {"path": "<the folder>", "file_count": N, "bytes": <total size>, "sha256": <digest>}

The digest is the sha256 of the folder's ``sha256sum`` lines: for every file under the folder, the line
``<sha256 of the file>  <path>\n`` (hex digest, two spaces, the path relative to the folder with ``/``
between its parts, UTF-8), the lines sorted by path (byte order) and joined. From the folder::

    find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from synthcohort import __version__
from synthcohort.outputs import atomic_file

MANIFEST_NAME = "run-manifest.json"
MANY_FILES = 1_000  # an output folder with more files than this is recorded as one entry
_VERSIONED = ("duckdb", "numpy", "pandas", "pyarrow", "scikit-learn", "sqlalchemy", "fhir.resources", "sdv")


def versions() -> dict[str, str]:
    found = {"synthcohort": __version__, "python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_outputs(paths: list[Path], root: Path) -> list[dict[str, Any]]:
    """Every file under the given outputs, with its size and sha256, relative to ``root``.

    A folder of more than ``MANY_FILES`` files is one entry: its file count, total size and folder digest.
    """
    files: list[dict[str, Any]] = []
    for path in paths:
        if path.is_dir() and _has_more_files_than(path, MANY_FILES):
            files.append({"path": str(path.relative_to(root)), **describe_folder(path)})
            continue
        members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for member in members:
            files.append(
                {"path": str(member.relative_to(root)), "bytes": member.stat().st_size, "sha256": sha256_file(member)}
            )
    return files


def describe_folder(folder: Path) -> dict[str, Any]:
    """The file count, total size and folder digest (see the module docstring) of every file under ``folder``."""
    digest = hashlib.sha256()
    count = size = 0
    for relative in files_in_path_order(folder):
        member = folder / relative
        digest.update(f"{sha256_file(member)}  {relative}\n".encode())
        count += 1
        size += member.stat().st_size
    return {"file_count": count, "bytes": size, "sha256": digest.hexdigest()}


def files_in_path_order(folder: Path, prefix: str = "") -> Iterator[str]:
    """The files under ``folder`` as relative ``/`` paths, in the byte order of those paths (as ``LC_ALL=C sort``).

    One folder's names are held at a time: a sub-folder sorts as its name followed by ``/``.
    """
    with os.scandir(folder) as scan:
        entries = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in scan]
    for key, entry in sorted(entries, key=lambda pair: pair[0].encode()):
        if key.endswith("/"):
            yield from files_in_path_order(Path(entry.path), prefix + key)
        elif entry.is_file():
            yield prefix + entry.name


def _has_more_files_than(folder: Path, limit: int) -> bool:
    count = 0
    for _, _, names in os.walk(folder):
        count += len(names)
        if count > limit:
            return True
    return False


@dataclass
class RunRecord:
    config: dict[str, Any]
    seeds: dict[str, int]
    run_id: str | None = None
    error: str | None = None
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    finished: str | None = None
    status: str = "running"
    input_fingerprint: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "synthcohort",
            "versions": versions(),
            "status": self.status,
            "run_id": self.run_id,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
            "config": self.config,
            "seeds": self.seeds,
            "input_fingerprint": self.input_fingerprint,
            "stages": self.stages,
            "gates": self.gates,
            "metrics": self.metrics,
            "outputs": self.outputs,
        }

    def write(self, folder: Path, status: str) -> Path:
        self.status = status
        self.finished = datetime.now(UTC).isoformat(timespec="seconds")
        target = folder / MANIFEST_NAME
        with atomic_file(target) as fh:
            fh.write(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        return target
