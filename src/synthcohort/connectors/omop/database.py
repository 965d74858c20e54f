"""Database connections for OMOP sources: engines that hide values, errors mapped, names from the catalogue."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from synthcohort.cohort import hardened_config, held_by_another_process, out_of_memory
from synthcohort.errors import (
    DependencyMissing,
    InputError,
    PermissionDeniedError,
    SourceError,
    TransientSourceError,
)
from synthcohort.secrets import display_url, parse_url, resolve_password

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = 3
RETRY_PAUSE_S = 0.5


def make_engine(raw_url: str | URL, *, read_only: bool = True) -> Engine:
    """An engine whose logs and errors never carry bound values; the password comes from secrets."""
    url = raw_url if isinstance(raw_url, URL) else parse_url(raw_url)
    url = resolve_password(url)
    kwargs: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": True}
    if url.get_backend_name() == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise DependencyMissing(
                "the PostgreSQL driver is not installed", "pip install 'synthcohort[postgres]'"
            ) from None
        if url.get_driver_name() in ("", "psycopg2"):
            url = url.set(drivername="postgresql+psycopg")
        kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "synthcohort"}
    elif url.get_backend_name() == "duckdb":
        if read_only:
            _check_duckdb_file(url)
        kwargs.pop("pool_pre_ping")
        # A source DuckDB file may hold views that read other files or URLs: none of that is followed.
        kwargs["connect_args"] = {"read_only": read_only, "config": hardened_config(read_only)}
    try:
        return sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise SourceError(f"unsupported database URL {display_url(url)}: {type(exc).__name__}") from None


def _check_duckdb_file(url: URL) -> None:
    """A DuckDB source must be an existing file: DuckDB's own error is vague, and nothing is created."""
    database = url.database or ""
    if database in ("", ":memory:") or Path(database).is_file():
        return
    raise SourceError(
        f"{database} is a folder, not a DuckDB database file"
        if Path(database).is_dir()
        else f"there is no DuckDB database file at {database}",
        "check the path in the URL: duckdb:///relative/path.duckdb or duckdb:////absolute/path.duckdb",
    )


_UNREACHABLE = ("connection refused", "could not connect", "could not translate host", "timeout expired", "timed out")
_DROPPED = (
    "server closed the connection",
    "terminating connection",
    "connection reset",
    "connection is closed",
    "ssl syscall error",
    "broken pipe",
    "consuming input failed",
)


def classify(exc: BaseException, where: str) -> Exception:
    """Turn a driver error into the tool's error tree, without values, passwords or tracebacks."""
    if said := out_of_memory(exc):  # a DuckDB source read under the store's cap
        return SourceError(f"reading {where} failed ({said.message})", said.hint)
    text = str(getattr(exc, "orig", exc) or "").lower()
    code = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
    if code == "42501" or "permission denied" in text:
        return PermissionDeniedError(
            f"permission denied while reading {where}",
            "grant the database role SELECT on the CDM and vocabulary schemas, or pick another role",
        )
    if "disabled by configuration" in text:
        return SourceError(
            f"{where} is a view that reads files or URLs outside the database; the tool does not follow those",
            "turn the view into a table in the source database",
        )
    if held_by_another_process(getattr(exc, "orig", None) or exc):
        return SourceError(f"{where} is locked by another process", "close the program holding it, then run again")
    if (code and code.startswith("22")) or isinstance(exc, sa.exc.DataError):
        return InputError(
            f"{where} holds a value the tool cannot read (for example an 'infinity' date)",
            "fix or exclude those rows in the source",
        )
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return TransientSourceError(f"the connection dropped while reading {where}")
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        if any(s in text for s in _UNREACHABLE):
            return TransientSourceError(f"cannot reach the database for {where}")
        if any(s in text for s in _DROPPED):
            return TransientSourceError(f"the connection dropped while reading {where}")
        return SourceError(f"the database refused a query on {where}", "check the schema and the role's rights")
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return SourceError(f"reading {where} failed ({type(exc).__name__})", "run with -vv for details")
    return exc if isinstance(exc, Exception) else SourceError(str(exc))


def with_retries(action: Callable[[], T], where: str, *, retries: int = RETRIES, pause: float = RETRY_PAUSE_S) -> T:
    """Run ``action``; transient faults (connection lost) are retried a bounded number of times."""
    for attempt in range(1, retries + 1):
        try:
            return action()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            err = classify(exc, where)
            if not isinstance(err, TransientSourceError):
                raise err from None
            if attempt == retries:
                raise SourceError(
                    f"{err.message}; gave up after {retries} attempts",
                    "check that the database is up and reachable, then run again",
                ) from None
            log.warning("%s (attempt %d of %d); retrying", err.message, attempt, retries)
            time.sleep(pause * attempt)
    raise AssertionError("unreachable")


@dataclass
class Catalogue:
    """What the database says exists: schemas, tables, columns. Every identifier we use comes from here."""

    engine: Engine
    schemas: list[str]
    default_schema: str
    _tables: dict[str, dict[str, str]] = field(default_factory=dict)
    _columns: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, engine: Engine, where: str) -> Catalogue:
        def read() -> Catalogue:
            if engine.dialect.name == "duckdb":
                rows = _rows(engine, _DUCK_SCHEMAS, {})
                return cls(engine, [r[0] for r in rows], "main")
            insp = sa.inspect(engine)
            return cls(engine, list(insp.get_schema_names()), insp.default_schema_name or "")

        return with_retries(read, where)

    @property
    def _duck(self) -> bool:
        return self.engine.dialect.name == "duckdb"

    def schema(self, name: str | None) -> str:
        """The catalogue's own spelling of a schema the user named; anything else is refused."""
        if name is None:
            return self.default_schema
        if name in self.schemas:
            return name
        folded = [s for s in self.schemas if s.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        raise InputError(
            "the schema named with --schema/--vocab-schema does not exist in the database",
            "give the name of an existing schema exactly as the database lists it",
        )

    def tables(self, schema: str) -> dict[str, str]:
        """Lower-case table name -> the catalogue's spelling."""
        if schema not in self._tables:
            if self._duck:
                names = [r[0] for r in with_retries(lambda: _rows(self.engine, _DUCK_TABLES, {"s": schema}), schema)]
            else:
                insp = sa.inspect(self.engine)
                names = with_retries(
                    lambda: insp.get_table_names(schema=schema) + insp.get_view_names(schema=schema), schema
                )
            self._tables[schema] = {n.lower(): n for n in names}
        return self._tables[schema]

    def table(self, schema: str, name: str) -> str | None:
        return self.tables(schema).get(name.lower())

    def columns(self, schema: str, table: str) -> dict[str, str]:
        """Lower-case column name -> the catalogue's spelling, for a table found in the catalogue."""
        key = (schema, table)
        if key not in self._columns:
            if self._duck:
                params = {"s": schema, "t": table}
                names = [r[0] for r in with_retries(lambda: _rows(self.engine, _DUCK_COLUMNS, params), table)]
            else:
                insp = sa.inspect(self.engine)
                names = [c["name"] for c in with_retries(lambda: insp.get_columns(table, schema=schema), table)]
            self._columns[key] = {n.lower(): n for n in names}
        return self._columns[key]


# duckdb-engine's reflection does not work on every DuckDB release; information_schema does.
_DUCK_SCHEMAS = "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = current_database() ORDER BY 1"
_DUCK_TABLES = (
    "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
    "AND table_schema = :s ORDER BY 1"
)
_DUCK_COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
    "AND table_schema = :s AND table_name = :t ORDER BY ordinal_position"
)


def _rows(engine: Engine, sql: str, params: dict[str, str]) -> list[Any]:
    with engine.connect() as con:
        return list(con.execute(sa.text(sql), params).fetchall())


@contextmanager
def connect(engine: Engine, where: str) -> Iterator[sa.Connection]:
    """A connection, with connection faults turned into the tool's errors."""
    con = with_retries(engine.connect, where)
    try:
        yield con
    finally:
        con.close()
