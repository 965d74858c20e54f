"""The model directory: a version-stamped manifest, plain-data files with checksums, atomic saving."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from synthcohort import __version__
from synthcohort.errors import ModelError
from synthcohort.outputs import atomic_output_dir

MANIFEST = "model.json"
FORMAT_VERSION = 11  # bump whenever a file of the model changes layout or meaning
CDM_VERSION = "5.4"


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def stamp() -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "tool_version": __version__, "cdm_version": CDM_VERSION}


@contextlib.contextmanager
def writing(directory: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder that replaces ``directory`` only once everything in it is written."""
    with atomic_output_dir(directory, overwrite=overwrite) as tmp:
        yield tmp


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    files = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {**stamp(), **manifest, "files": {name: sha256_file(directory / name) for name in files}}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a model folder, after checking its version stamp and every file's checksum."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelError(f"no model at {directory} ({MANIFEST} is missing)", "give a folder made by 'synthcohort fit'")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelError(f"{path} is not a readable model manifest", "fit the model again") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path} is not a model manifest", "fit the model again")
    expected = stamp()
    for key, want in expected.items():
        if manifest.get(key) != want:
            raise ModelError(
                f"the model in {directory} was written with {key} {manifest.get(key)!r}; "
                f"this synthcohort reads {want!r}",
                "fit the model again with this version of synthcohort",
            )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ModelError(f"{path} lists no files", "fit the model again")
    for name, digest in files.items():
        file = Path(directory) / str(name)
        if "/" in str(name) or not file.is_file() or sha256_file(file) != digest:
            raise ModelError(f"model file {name} is missing or altered", "fit the model again")
    return manifest


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise ValueError(f"array {key} holds Python objects; only plain numbers are saved")
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"model file {path.name} cannot be read: {exc}", "fit the model again") from None
