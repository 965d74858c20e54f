"""The run record: a manifest written beside a run's outputs (config masked, versions, fingerprints, hashes)."""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from synthcohort import __version__
from synthcohort.outputs import atomic_file

MANIFEST_NAME = "run-manifest.json"
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
    """Every file under the given outputs, with its size and sha256, relative to ``root``."""
    files: list[dict[str, Any]] = []
    for path in paths:
        members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for member in members:
            files.append(
                {"path": str(member.relative_to(root)), "bytes": member.stat().st_size, "sha256": sha256_file(member)}
            )
    return files


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
