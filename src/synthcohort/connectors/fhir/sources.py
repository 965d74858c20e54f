"""Find the FHIR inputs under a path (files, folders, Bulk exports, zip/tar archives) and open them safely."""

from __future__ import annotations

import gzip
import io
import logging
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import orjson

from synthcohort.errors import InputError

log = logging.getLogger(__name__)

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
# Bulk export files are read in this order so references to patients, encounters and
# medications mostly point backwards (the reader also copes when they do not).
TYPE_ORDER = ("Patient", "Encounter", "Medication")


@dataclass(frozen=True)
class Limits:
    """Caps that keep memory flat whatever the input: one line, one JSON file, one decompressed file."""

    line_bytes: int = 64 * 1024 * 1024
    json_file_bytes: int = 512 * 1024 * 1024
    decompressed_bytes: int = 64 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # ndjson | json
    role: str  # data | deleted | error
    opener: Callable[[], IO[bytes]]


class CappedReader(io.RawIOBase):
    """A stream that fails once more than ``cap`` bytes have been read (decompression bombs)."""

    def __init__(self, inner: IO[bytes], cap: int, also_close: tuple[Any, ...] = ()) -> None:
        self.inner = inner
        self.cap = cap
        self.total = 0
        self.also_close = also_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.total += len(data)
        if self.total > self.cap:
            raise DecompressionCapExceeded
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        for other in self.also_close:
            other.close()
        super().close()


class DecompressionCapExceeded(Exception):
    """More decompressed bytes than the cap allows."""


def _kind(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(NDJSON_SUFFIXES):
        return "ndjson"
    if lower.endswith(JSON_SUFFIXES):
        return "json"
    return None


Opened = tuple[IO[bytes], tuple[Any, ...]]  # a stream, and what to close with it


def _decoded(raw: Callable[[], Opened], name: str, limits: Limits) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        base, owners = raw()
        if name.lower().endswith(".gz"):
            unzipped: IO[bytes] = gzip.GzipFile(fileobj=base, mode="rb")  # type: ignore[assignment]
            return io.BufferedReader(CappedReader(unzipped, limits.decompressed_bytes, (base, *owners)), 1 << 20)
        return io.BufferedReader(CappedReader(base, limits.decompressed_bytes, owners), 1 << 20)

    return opener


def _role(parts: tuple[str, ...]) -> str:
    lowered = [p.lower() for p in parts[:-1]]
    if "deleted" in lowered:
        return "deleted"
    if "error" in lowered or "errors" in lowered or parts[-1].lower().startswith("operationoutcome"):
        return "error"
    return "data"


def _order_key(source: Source) -> tuple[int, int, str]:
    role_rank = {"deleted": 0, "error": 1, "data": 2}[source.role]
    base = PurePosixPath(source.name).name.split(".")[0]
    type_rank = TYPE_ORDER.index(base) if base in TYPE_ORDER else len(TYPE_ORDER)
    return role_rank, type_rank, source.name


def _check_member(name: str, is_link: bool, archive: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if is_link or path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
        raise InputError(
            f"archive {archive} refused: a member has an unsafe path or is a link",
            "unpack the archive yourself after checking it, or give a clean archive",
        )


def _unreadable(path: Path) -> InputError:
    return InputError(f"archive {path.name} cannot be read: it is damaged or not an archive", "check the file")


def _zip_sources(path: Path, limits: Limits) -> list[Source]:
    out = []
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
        raise _unreadable(path) from None
    for info in infos:
        _check_member(info.filename, stat.S_ISLNK(info.external_attr >> 16), path.name)
    for info in infos:
        kind = _kind(info.filename)
        if info.is_dir() or kind is None:
            continue

        def raw(i: zipfile.ZipInfo = info) -> Opened:
            zf = zipfile.ZipFile(path)
            return zf.open(i), (zf,)

        role = _role(PurePosixPath(info.filename).parts)
        out.append(Source(f"{path.name}!{info.filename}", kind, role, _decoded(raw, info.filename, limits)))
    return out


def _tar_sources(path: Path, limits: Limits) -> list[Source]:
    out = []
    try:
        with tarfile.open(path) as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        raise _unreadable(path) from None
    for member in members:
        _check_member(member.name, member.issym() or member.islnk() or member.isdev(), path.name)
    for member in members:
        kind = _kind(member.name)
        if not member.isfile() or kind is None:
            continue

        def raw(name: str = member.name) -> Opened:
            tf = tarfile.open(path)  # noqa: SIM115 - closed with the member's stream
            f = tf.extractfile(name)
            assert f is not None
            return f, (tf,)

        role = _role(PurePosixPath(member.name).parts)
        out.append(Source(f"{path.name}!{member.name}", kind, role, _decoded(raw, member.name, limits)))
    return out


def _manifest_files(folder: Path, manifest: Path) -> dict[str, str] | None:
    """File name -> role from a Bulk export manifest (``output``, ``deleted``, ``error``), or None."""
    try:
        data = orjson.loads(manifest.read_bytes())
    except (orjson.JSONDecodeError, OSError):
        return None
    if not isinstance(data, dict) or "output" not in data:
        return None
    roles: dict[str, str] = {}
    for key, role in (("output", "data"), ("deleted", "deleted"), ("error", "error")):
        for item in data.get(key) or []:
            url = item.get("url") if isinstance(item, dict) else None
            if isinstance(url, str):
                roles[url.rstrip("/").rsplit("/", 1)[-1]] = role
    return roles


def discover(path: str | Path, limits: Limits | None = None) -> list[Source]:
    """Every FHIR input under ``path``, deletions and errors first, then data (patients first).

    A path holding no FHIR file is refused: a wrong folder must not read as an empty cohort.
    """
    limits = limits or Limits()
    root = Path(path)
    if root.is_symlink() and not root.exists():
        raise InputError(f"{root} is a broken link")
    if not root.exists():
        raise InputError(f"{root} does not exist", "give a FHIR file or folder")
    sources = _file_sources(root, root.name, limits) if root.is_file() else _folder_sources(root, limits)
    found = sorted(sources, key=_order_key)
    if not found:
        raise InputError(
            f"no FHIR file under {path}",
            "FHIR is read from .json, .ndjson and .jsonl files (also gzipped) and from .zip or .tar "
            "archives of them; point to the file or folder that holds them",
        )
    return found


def _folder_sources(root: Path, limits: Limits) -> Iterator[Source]:
    manifest = root / "manifest.json"
    roles = _manifest_files(root, manifest) if manifest.is_file() else None
    for file in sorted(root.rglob("*")):
        if file.is_symlink():
            log.warning("skipping symbolic link %s", file.relative_to(root))
            continue
        if not file.is_file() or file == manifest:
            continue
        rel = file.relative_to(root)
        if file.name.lower().startswith("log.ndjson"):
            continue  # a Bulk export's event log, not FHIR
        for source in _file_sources(file, str(rel), limits):
            if roles is not None and file.name in roles:
                source = Source(source.name, source.kind, roles[file.name], source.opener)
            yield source


def _file_sources(file: Path, name: str, limits: Limits) -> Iterator[Source]:
    lower = file.name.lower()
    if lower.endswith(".zip"):
        yield from _zip_sources(file, limits)
    elif lower.endswith((".tar", ".tar.gz", ".tgz")):
        yield from _tar_sources(file, limits)
    else:
        kind = _kind(lower)
        if kind is not None:
            raw = lambda: (open(file, "rb"), ())  # noqa: E731, SIM115 - the reader closes it
            yield Source(name, kind, _role(Path(name).parts), _decoded(raw, lower, limits))


def iter_lines(stream: IO[bytes], cap: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) pairs; a line longer than ``cap`` yields None and ends the file."""
    number = 0
    while True:
        line = stream.readline(cap + 1)
        if not line:
            return
        number += 1
        if len(line) > cap and not line.endswith(b"\n"):
            yield number, None
            return
        yield number, line


def read_capped(stream: IO[bytes], cap: int) -> bytes | None:
    """The whole stream, or None when it is longer than ``cap`` (read in blocks: no cap-sized buffer)."""
    parts: list[bytes] = []
    total = 0
    while True:
        block = stream.read(1 << 20)
        if not block:
            return b"".join(parts)
        total += len(block)
        if total > cap:
            return None
        parts.append(block)
