"""The cohort store: a DuckDB file holding OMOP CDM v5.4 tables, the hub every stage meets in."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from synthcohort import cdm
from synthcohort.errors import InputError, SourceError, TargetError

META_TABLE = "synthcohort_meta"
_STORE_HINT = "give the path of a .duckdb file made by 'synthcohort extract' or 'synthcohort generate'"
STORE_TABLES = cdm.CLINICAL_TABLES + cdm.METADATA_TABLES + cdm.VOCABULARY_TABLES

_SPACE_HINT = "check free space and write permission on the target folder"


# A connection keeps at most this much in DuckDB's buffer pool (the rest spills to the file or its
# .tmp folder). Left at DuckDB's default (80 % of RAM) it caches every block written or read, so
# the memory of a long write grows with the rows written (1,000,000 synthetic persons: GBs), and
# that of an export with the size of the store it reads (100,000 persons: +0.5 GB over 20,000).
MEMORY_LIMIT = "512MB"
# An export reads each block once, in person ranges: a store opened for it caches less. This still
# holds the sort of one range of persons (10,000 synthetic persons' measurements: 130 MB) without
# spilling, while a store read at 512 MB kept up to 512 MB of blocks already read.
EXPORT_MEMORY_LIMIT = "256MB"
WRITE_THREADS = 2


def hardened_config(read_only: bool, memory_limit: str | None = MEMORY_LIMIT) -> dict[str, Any]:
    """DuckDB settings for a database file that needs nothing beyond itself: no other file, URL or extension;
    memory is capped so that it stays flat however much a connection reads or writes, and a writing
    connection's threads too."""
    config: dict[str, Any] = {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "access_mode": "READ_ONLY" if read_only else "READ_WRITE",
        "lock_configuration": True,
    }
    if memory_limit:
        config["memory_limit"] = memory_limit
    if not read_only:
        config["threads"] = min(WRITE_THREADS, os.cpu_count() or 1)
    return config


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_FULL_WORDS = ("no space left", "disk quota", "read-only file system", "file too large")


def _target_full(exc: BaseException) -> bool:
    """A full disk or read-only target, as raised by the OS or by DuckDB."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    return isinstance(exc, duckdb.IOException) and any(w in str(exc).lower() for w in _FULL_WORDS)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return next((w for w in _FULL_WORDS if w in str(exc).lower()), "input/output error")


def held_by_another_process(exc: BaseException) -> bool:
    """DuckDB could not open a file because another process holds its lock (not any message that
    merely contains "lock": an out-of-memory error speaks of blocks)."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


class Exhausted(NamedTuple):
    """What to say when DuckDB ran out of memory (or of disk for what memory cannot hold), and what to do."""

    message: str
    hint: str


_SIZE = r"\d+(?:\.\d+)? (?:bytes|[KMGTP]?i?B)"
_CAP = re.compile(rf"/({_SIZE}) used\)")
# DuckDB's buffer pool: "could not allocate block / failed to allocate data / failed to pin block of size 256.0 KiB
# (783.9 KiB/976.5 KiB used)"; replaying a write-ahead log or checkpointing reports it as a failed transaction or
# a fatal error, not as its out-of-memory error.
_POOL_FULL = re.compile(rf"of size {_SIZE} \({_SIZE}/{_SIZE} used\)")


def out_of_memory(exc: BaseException) -> Exhausted | None:
    """DuckDB's out-of-memory error in ``exc`` or in an error it was raised from or while handling (the next
    statement of a transaction fails as aborted), in words; None for any other error. Of DuckDB's text only
    the cap is shown."""
    oom = next((e for e in _chain(exc) if _is_out_of_memory(e)), None)
    if oom is None:
        return None
    text = str(oom)
    if "max_temp_directory_size" in text:  # memory was full, and so was the disk that takes what memory cannot hold
        return Exhausted(
            "DuckDB ran out of disk space for the data it moves out of memory",
            "free disk space beside the DuckDB file read or written (the cohort store, an export's target), "
            "and in the current folder when reading CSV files",
        )
    cap = _CAP.search(text)
    return Exhausted(
        f"DuckDB ran out of memory: a step needed more than its cap{f' of {cap[1]}' if cap else ''}",
        "the cap is set by the tool and no option changes it: work on fewer persons, or run again with "
        "-vv --log-file and report it, with the rows per table ('synthcohort info' shows them)",
    )


def failure_reason(exc: BaseException) -> tuple[str, str | None]:
    """Why a DuckDB step failed, and what to do: out of memory or disk in words with its hint, any other
    error by its type only (its text may quote data)."""
    said = out_of_memory(exc)
    return (said.message, said.hint) if said else (type(exc).__name__, None)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, duckdb.OutOfMemoryException):
        return True
    # of these types only (an error that quotes a value, a failed conversion, says nothing of memory)
    wrapped = isinstance(exc, duckdb.TransactionException | duckdb.FatalException)
    return wrapped and _POOL_FULL.search(str(exc)) is not None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then the error it was raised from or while handling, and so on."""
    seen: set[int] = set()
    at: BaseException | None = exc
    while at is not None and id(at) not in seen:
        seen.add(id(at))
        yield at
        at = at.__cause__ or at.__context__


DUCKDB_MAGIC = (8, b"DUCK")  # where every DuckDB database file says what it is


def _is_duckdb_file(path: Path) -> bool:
    offset, magic = DUCKDB_MAGIC
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(len(magic)) == magic


def _connect(path: Path, read_only: bool, memory_limit: str = MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    if path.is_file() and path.stat().st_size and not _is_duckdb_file(path):
        raise InputError(f"{path.name} is not a DuckDB database, so not a cohort store", _STORE_HINT)
    try:
        con = duckdb.connect(str(path), config=hardened_config(read_only, memory_limit))
    except duckdb.IOException as exc:
        if held_by_another_process(exc):
            raise SourceError(
                f"the cohort store {path.name} is locked by another process",
                "close the other program using it, then run again",
            ) from None
        raise SourceError(f"cannot open the cohort store {path.name}: {exc}") from None
    return con


class CohortStore:
    """An open cohort store. Create with :meth:`create` or :meth:`building`, open with :meth:`open`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path

    # -- lifecycle -----------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, read_only: bool = True, memory_limit: str = MEMORY_LIMIT
    ) -> CohortStore:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"no cohort store at {p}", _STORE_HINT)
        store = cls(_connect(p, read_only, memory_limit), p)
        missing = [t for t in (*cdm.CLINICAL_TABLES, META_TABLE) if not store._has_table(t)]
        if missing:
            error = store._not_a_store(missing)
            store.close()
            raise error
        return store

    def _not_a_store(self, missing: list[str]) -> InputError:
        """Why this DuckDB file is refused, and what to do: an OMOP CDM database is read in with extract omop."""
        cdm_schema = self._schema_of("person")
        if META_TABLE not in missing or cdm_schema is None:
            return InputError(
                f"{self.path.name} is not a cohort store (missing tables: {', '.join(missing)})", _STORE_HINT
            )
        schema = f" --schema {cdm_schema}" if cdm_schema != "main" else ""
        return InputError(
            f"{self.path.name} is an OMOP CDM database, not a cohort store",
            f"read it into a store with 'synthcohort extract omop duckdb:///{self.path}{schema} -o cohort.duckdb', "
            "or pass a cohort store (the .duckdb file written by 'synthcohort extract' or 'synthcohort generate')",
        )

    def _schema_of(self, table: str) -> str | None:
        row = self.con.execute(
            "SELECT table_schema FROM information_schema.tables WHERE lower(table_name) = ?"
            " ORDER BY table_schema <> 'main', table_schema LIMIT 1",
            [table],
        ).fetchone()
        return str(row[0]) if row else None

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> CohortStore:
        """Create an empty store at ``path`` (which must not exist)."""
        p = Path(path)
        if p.exists():
            raise TargetError(f"{p} already exists", "choose another path or remove it")
        store = cls(_connect(p, read_only=False), p)
        store._create_schema()
        return store

    @classmethod
    @contextlib.contextmanager
    def building(cls, path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[CohortStore]:
        """Build a store under a temporary name; it appears under ``path`` only when complete."""
        final = Path(path)
        if final.exists() and not overwrite:
            raise TargetError(f"{final} already exists", "pass --overwrite to replace it, or choose another path")
        if final.is_symlink():
            raise TargetError(f"{final} is a symbolic link", "give a plain file path")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            tmp.unlink()
        except OSError as exc:
            raise TargetError(f"cannot write the cohort store {final}: {exc.strerror}", _SPACE_HINT) from None
        try:
            store = cls.create(tmp)
        except BaseException as exc:
            for leftover in (tmp, Path(f"{tmp}.wal")):
                leftover.unlink(missing_ok=True)
            if isinstance(exc, SourceError | OSError | duckdb.IOException):
                raise TargetError(f"cannot write the cohort store {final}", _SPACE_HINT) from None
            raise
        try:
            yield store
            store.con.execute("CHECKPOINT")
            store.close()
            os.chmod(tmp, 0o600)
            # A write-ahead log beside the file replaced is that file's: beside the new one, DuckDB would
            # refuse to open it ("WAL does not match database file").
            Path(f"{final}.wal").unlink(missing_ok=True)
            os.replace(tmp, final)
            store.path = final
        except BaseException as exc:
            store.close()
            for leftover in (tmp, Path(f"{tmp}.wal")):
                leftover.unlink(missing_ok=True)
            if _target_full(exc):
                raise TargetError(f"writing the cohort store {final} failed: {_reason(exc)}", _SPACE_HINT) from None
            raise

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    def __enter__(self) -> CohortStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --------------------------------------------------------------------
    def _create_schema(self) -> None:
        for name in STORE_TABLES:
            t = cdm.table(name)
            cols = ", ".join(f'"{c.name}" {c.duckdb_type}' for c in t.columns)
            pk = f', PRIMARY KEY ("{t.primary_key}")' if t.primary_key else ""
            self.con.execute(f'CREATE TABLE "{name}" ({cols}{pk})')
        self.con.execute(f'CREATE TABLE "{META_TABLE}" (key VARCHAR PRIMARY KEY, value VARCHAR)')

    def _has_table(self, name: str) -> bool:
        row = self.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()
        return bool(row and row[0])

    # -- metadata ------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self.con.execute(f'INSERT OR REPLACE INTO "{META_TABLE}" VALUES (?, ?)', [key, value])

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.con.execute(f'SELECT value FROM "{META_TABLE}" WHERE key = ?', [key]).fetchone()
        return row[0] if row else default

    def meta(self) -> dict[str, str]:
        return dict(self.con.execute(f'SELECT key, value FROM "{META_TABLE}" ORDER BY key').fetchall())

    # -- writing -------------------------------------------------------------------
    def append(self, table: str, data: pa.Table | pa.RecordBatch | duckdb.DuckDBPyRelation | Any) -> int:
        """Append rows (Arrow, pandas, or a query of this store's connection, read as it is inserted) to a CDM
        table; columns the store may not hold are dropped. Returns the rows appended."""
        spec = cdm.table(table)
        if isinstance(data, duckdb.DuckDBPyRelation):
            rows, present = data, set(data.columns)
        else:
            rows = (
                data
                if isinstance(data, pa.Table | pa.RecordBatch)
                else pa.Table.from_pandas(data, preserve_index=False)
            )
            present = set(rows.schema.names)
        allowed = [c for c in spec.stored_columns if c in present]
        if not allowed:
            return 0
        select = ", ".join(f'CAST("{c}" AS {spec.column(c).duckdb_type}) AS "{c}"' for c in allowed)
        col_list = ", ".join(f'"{c}"' for c in allowed)
        self.con.register("_incoming", rows)
        try:
            inserted = self.con.execute(f'INSERT INTO "{table}" ({col_list}) SELECT {select} FROM _incoming').fetchone()
        except duckdb.Error:
            # A failed INSERT (out of memory, say) aborts the transaction, and unregistering would then
            # fail too: the INSERT's own error is the one to raise.
            with contextlib.suppress(duckdb.Error):
                self.con.unregister("_incoming")
            raise
        self.con.unregister("_incoming")
        return int(inserted[0]) if inserted else 0

    # -- reading -------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in STORE_TABLES:
            row = self.con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
            out[name] = int(row[0]) if row else 0
        return out

    def person_count(self) -> int:
        row = self.con.execute("SELECT count(*) FROM person").fetchone()
        return int(row[0]) if row else 0

    def date_range(self) -> tuple[Any, Any]:
        parts = [
            f'SELECT min("{start}") AS lo, max(coalesce("{end}", "{start}")) AS hi FROM "{t}"'
            if end
            else f'SELECT min("{start}") AS lo, max("{start}") AS hi FROM "{t}"'
            for t, (_, start, end) in cdm.EVENT_TABLES.items()
        ]
        row = self.con.execute(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})").fetchone()
        return (row[0], row[1]) if row else (None, None)

    def content_digest(self) -> str:
        """A digest of every table's content (order-independent), for fingerprints; never the rows."""
        import hashlib

        parts = []
        for name in STORE_TABLES:
            row = self.con.execute(f'SELECT count(*), coalesce(sum(hash("{name}")), 0) FROM "{name}"').fetchone()
            parts.append(f"{name}:{row[0] if row else 0}:{row[1] if row else 0}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def person_ids(self) -> list[int]:
        return [r[0] for r in self.con.execute("SELECT person_id FROM person ORDER BY person_id").fetchall()]

    def query_arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        # A cursor of its own: a pending execute() result on the connection would refuse a relation.
        cur = self.con.cursor()
        try:
            return cur.sql(sql, params=params or None).to_arrow_table()
        finally:
            cur.close()

    def person_ranges(self, chunk_size: int = 10_000) -> list[tuple[int, int, int]]:
        """(lowest, highest person_id, persons) of each run of ``chunk_size`` persons in id order; the ids
        stay in DuckDB."""
        rows = self.con.execute(
            "SELECT min(person_id), max(person_id), count(*) FROM "
            "(SELECT person_id, (row_number() OVER (ORDER BY person_id) - 1) // ? AS part FROM person) "
            "GROUP BY part ORDER BY part",
            [chunk_size],
        ).fetchall()
        return [(int(lo), int(hi), int(n)) for lo, hi, n in rows]

    def iter_person_batches(
        self, chunk_size: int = 10_000, tables: Iterable[str] = cdm.CLINICAL_TABLES, batch_rows: int = 100_000
    ) -> Iterator[tuple[str, pa.RecordBatch, bool]]:
        """Every clinical table's rows, a range of ``chunk_size`` persons at a time (tables in the given
        order inside a range, rows in key order), as (table, batch, last) with at most ``batch_rows`` rows
        a batch and ``last`` on the final batch of a table's rows in a range. A range's table is streamed
        out of DuckDB, never held whole: memory depends neither on the number of persons nor on the range
        size."""
        wanted = list(tables)
        for lo, hi, _ in self.person_ranges(chunk_size):
            for name in wanted:
                cur = self.con.cursor()
                try:
                    rel = cur.sql(f'SELECT * FROM "{name}" WHERE person_id BETWEEN ? AND ? ORDER BY 1', params=[lo, hi])
                    held: pa.RecordBatch | None = None
                    for batch in rel.to_arrow_reader(batch_rows):
                        if batch.num_rows:
                            if held is not None:
                                yield name, held, False
                            held = batch
                    if held is not None:
                        yield name, held, True
                finally:
                    cur.close()
