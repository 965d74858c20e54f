"""Write a cohort store into a database: DuckDB through Arrow, PostgreSQL through COPY. An existing target
changes all at once or not at all: a DuckDB file is written as a sibling file (a copy of the target) renamed
over it at the end, a PostgreSQL schema in one transaction (the server spills what it does not hold)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from synthcohort import cdm
from synthcohort.cohort import CohortStore, failure_reason
from synthcohort.connectors.omop.duckdb_target import connect_target, staged_target
from synthcohort.connectors.omop.writer import VOCABULARY_ORDER, WRITE_ORDER, Progress, WriteResult, iter_tables
from synthcohort.errors import ConfigError, DependencyMissing, TargetError
from synthcohort.secrets import display_url, parse_url, resolve_password

log = logging.getLogger(__name__)

_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PG_TYPES = {"integer": "INTEGER", "float": "NUMERIC", "date": "DATE", "datetime": "TIMESTAMP"}
# Foreign keys among the vocabulary tables form a cycle (concept <-> vocabulary); DuckDB cannot add
# constraints after loading, so there they are checked by `validate` instead of declared.
_VOCAB_SET = set(VOCABULARY_ORDER)
# A DuckDB target is committed every this many rows (about 5 batches): fewer commits write the key
# indexes fewer times, more rows a transaction hold more of them in memory.
COMMIT_ROWS = 500_000
# --append into PostgreSQL: a foreign key checks each new row on its own (a trigger and a look-up per row
# and key), about 18 times the time per row that checking a whole table at once takes (20,000 persons,
# 5 million rows: 127 s against 8 s for the same rows). A clinical table holding at most this many times
# the rows appended has its foreign keys dropped, the rows loaded and the keys added back, checking the
# whole table in one pass; a larger table keeps its keys and the checks per row.
RECHECK_UP_TO = 8


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_type(col: cdm.Column, dialect: str) -> str:
    if col.type.startswith("varchar"):
        size = col.type[len("varchar(") : -1]
        return "TEXT" if size == "max" or dialect == "duckdb" else f"VARCHAR({size})"
    return _PG_TYPES[col.type] if dialect != "duckdb" else col.duckdb_type.replace("BIGINT", "INTEGER")


def foreign_keys(name: str, dialect: str) -> list[tuple[str, str, str]]:
    """(column, referenced table, referenced column) declared on a written table."""
    out = []
    for col in cdm.table(name).columns:
        if col.references is None or col.references[0] not in WRITE_ORDER:
            continue
        if dialect == "duckdb" and name in _VOCAB_SET and col.references[0] in _VOCAB_SET:
            continue
        out.append((col.name, col.references[0], col.references[1]))
    return out


def create_table_sql(name: str, dialect: str, prefix: str, inline_fks: bool) -> str:
    spec = cdm.table(name)
    parts = [f"{_q(c.name)} {column_type(c, dialect)}{' NOT NULL' if c.required else ''}" for c in spec.columns]
    if spec.primary_key:
        parts.append(f"PRIMARY KEY ({_q(spec.primary_key)})")
    if inline_fks:
        parts += [
            f"FOREIGN KEY ({_q(c)}) REFERENCES {prefix}{_q(t)} ({_q(rc)})" for c, t, rc in foreign_keys(name, dialect)
        ]
    return f"CREATE TABLE {prefix}{_q(name)} ({', '.join(parts)})"


class _Offsets:
    """Id offsets for --append: the store's ids are shifted past the target's highest ids."""

    def __init__(self, maxima: dict[str, int]) -> None:
        self.maxima = maxima

    def apply(self, name: str, rows: pa.Table) -> pa.Table:
        if not any(self.maxima.values()):
            return rows
        shifts = {"person_id": self.maxima.get("person", 0)}
        if name != "visit_occurrence":
            shifts["visit_occurrence_id"] = self.maxima.get("visit_occurrence", 0)
        pk = cdm.table(name).primary_key
        if pk and name not in _VOCAB_SET:
            shifts[pk] = self.maxima.get(name, 0)
        for col, shift in shifts.items():
            if shift and col in rows.column_names:
                i = rows.column_names.index(col)
                rows = rows.set_column(i, col, pc.add(rows[col], pa.scalar(shift, rows.schema.field(col).type)))
        return rows


def _existing(con: Any, dialect: str, schema: str) -> dict[str, int]:
    """Tables of ours already in the target schema -> their row counts."""
    rows = con.execute(
        sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
    ).fetchall()
    present = {r[0].lower(): r[0] for r in rows}
    out = {}
    for name in WRITE_ORDER:
        if name in present:
            out[name] = int(con.execute(sa.text(f"SELECT count(*) FROM {_q(schema)}.{_q(present[name])}")).scalar())
    return out


def _maxima(con: Any, schema: str, existing: dict[str, int]) -> dict[str, int]:
    out = {}
    for name in WRITE_ORDER:
        pk = cdm.table(name).primary_key
        if name in existing and pk and name not in _VOCAB_SET:
            out[name] = int(
                con.execute(sa.text(f"SELECT coalesce(max({_q(pk)}), 0) FROM {_q(schema)}.{_q(name)}")).scalar()
            )
    return out


def write_database(
    store: CohortStore,
    url: str,
    *,
    schema: str | None = None,
    overwrite: bool = False,
    append: bool = False,
    progress: Progress | None = None,
) -> WriteResult:
    """Create (or append to) the CDM tables in ``schema`` and bulk-load the store, in one transaction."""
    parsed = resolve_password(parse_url(url))
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        return _write_duckdb(store, parsed.database or "", schema or "main", overwrite, append, progress)
    if backend != "postgresql":
        raise ConfigError(f"unsupported target database {display_url(parsed)}", "use a duckdb:/// or postgresql:// URL")
    try:
        import psycopg
    except ImportError:
        raise DependencyMissing(
            "the PostgreSQL driver is not installed", "pip install 'synthcohort[postgres]'"
        ) from None
    schema = schema or "public"
    if not _PLAIN_NAME.match(schema):
        raise ConfigError("the target schema name must be lower-case letters, digits and _", "e.g. --schema cdm_synth")
    engine = sa.create_engine(parsed.set(drivername="postgresql+psycopg"), hide_parameters=True)
    result = WriteResult(display_url(parsed))
    try:
        with engine.begin() as con:
            con.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}"))
            existing = _prepare(con, "postgresql", schema, overwrite, append)
            offsets = _Offsets(_maxima(con, schema, existing) if append else {})
            raw: Any = con.connection.driver_connection
            for name in WRITE_ORDER:
                if name not in existing:
                    con.execute(sa.text(create_table_sql(name, "postgresql", f"{_q(schema)}.", inline_fks=False)))
            lifted = _lift_foreign_keys(con, raw, schema, existing, store.counts()) if append else []
            for name, rows, _ in iter_tables(store):
                rows = offsets.apply(name, rows)
                if append and name in _VOCAB_SET:
                    _pg_copy_new(raw, schema, name, rows)
                else:
                    _pg_copy(raw, schema, name, rows)
                result.rows[name] = result.rows.get(name, 0) + rows.num_rows
                if progress:
                    progress(name, rows.num_rows)
            for table, key, definition in lifted:  # checks every row of the table, as when it was declared
                raw.execute(f"ALTER TABLE {_q(schema)}.{_q(table)} ADD CONSTRAINT {_q(key)} {definition}")
            if not existing:
                for name in WRITE_ORDER:
                    for i, (col, ref, rcol) in enumerate(foreign_keys(name, "postgresql")):
                        con.execute(
                            sa.text(
                                f"ALTER TABLE {_q(schema)}.{_q(name)} ADD CONSTRAINT {_q(f'fk_{name}_{i}')} "
                                f"FOREIGN KEY ({_q(col)}) REFERENCES {_q(schema)}.{_q(ref)} ({_q(rcol)})"
                            )
                        )
    except (sa.exc.DBAPIError, psycopg.Error) as exc:  # COPY goes through the driver's own connection
        cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        raise TargetError(
            f"writing to {display_url(parsed)} failed ({type(cause).__name__}); nothing was written",
            "check the database, the schema and the role's rights",
        ) from None
    finally:
        engine.dispose()
    return result


def _lift_foreign_keys(
    con: Any, raw: Any, schema: str, existing: dict[str, int], adding: dict[str, int]
) -> list[tuple[str, str, str]]:
    """Drop the validated foreign keys of the clinical tables that hold at most RECHECK_UP_TO times the rows
    appended to them, when the role owns the table; return (table, key, definition) to add them back with.

    Dropped and added back in the load's transaction: a failure or a violating row leaves every key as it
    was. Until the commit the tables and those they reference (concept, person) are locked against readers.
    Keys declared NOT VALID are kept: added back so, they would not check the new rows. The statements go
    through the driver's connection (``raw``), which reads no parameters in a key's definition."""
    tables = [n for n in cdm.LOAD_ORDER if n in existing and existing[n] <= RECHECK_UP_TO * adding.get(n, 0)]
    if not tables:
        return []
    rows = con.execute(
        sa.text(
            "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = :s AND t.relname = ANY(:t) AND c.contype = 'f' AND c.convalidated "
            "AND pg_has_role(t.relowner, 'USAGE') AND has_table_privilege(c.confrelid, 'REFERENCES') "
            "ORDER BY t.relname, c.conname"
        ),
        {"s": schema, "t": tables},
    ).fetchall()
    for table, key, _ in rows:
        raw.execute(f"ALTER TABLE {_q(schema)}.{_q(table)} DROP CONSTRAINT {_q(key)}")
    return [(str(t), str(k), str(d)) for t, k, d in rows]


def _refuse_filled(existing: dict[str, int], overwrite: bool, append: bool) -> None:
    if any(existing.values()) and not (overwrite or append):
        raise TargetError(
            "the target schema already holds OMOP rows", "pass --overwrite to replace them or --append to add to them"
        )


def _prepare(con: Any, dialect: str, schema: str, overwrite: bool, append: bool) -> dict[str, int]:
    existing = _existing(con, dialect, schema)
    _refuse_filled(existing, overwrite, append)
    if overwrite or (existing and not append):
        for name in reversed(WRITE_ORDER):
            if name in existing:
                cascade = " CASCADE" if dialect == "postgresql" else ""
                con.execute(sa.text(f"DROP TABLE {_q(schema)}.{_q(name)}{cascade}"))
        return {}
    return existing


def _csv_bytes(rows: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(rows, buf, pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _pg_copy(raw: Any, schema: str, name: str, rows: pa.Table) -> None:
    from psycopg import sql

    cols = sql.SQL(", ").join(sql.Identifier(c) for c in rows.column_names)
    stmt = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT csv)").format(sql.Identifier(schema), sql.Identifier(name), cols)
    with raw.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(_csv_bytes(rows))


def _pg_copy_new(raw: Any, schema: str, name: str, rows: pa.Table) -> None:
    """Vocabulary rows in --append: COPY to a temporary table, keep the rows the target lacks."""
    from psycopg import sql

    key = cdm.table(name).primary_key
    tmp = sql.Identifier(f"_synthcohort_{name}")
    with raw.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}.{}) ON COMMIT DROP").format(
                tmp, sql.Identifier(schema), sql.Identifier(name)
            )
        )
        cur.execute(sql.SQL("TRUNCATE {}").format(tmp))
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in rows.column_names)
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(tmp, cols)) as copy:
            copy.write(_csv_bytes(rows))
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        if key:
            cond = sql.SQL("WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE t.{} = s.{})").format(
                target, sql.Identifier(key), sql.Identifier(key)
            )
        else:
            cond = sql.SQL("EXCEPT SELECT {} FROM {}").format(cols, target)
        cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s ").format(target, cols, cols, tmp) + cond)


def _write_duckdb(
    store: CohortStore, path: str, schema: str, overwrite: bool, append: bool, progress: Progress | None
) -> WriteResult:
    import duckdb

    if not path or path == ":memory:":
        raise ConfigError("a DuckDB target needs a file path", "write duckdb:///path/to/target.duckdb")
    target = Path(path)
    if target.resolve() == store.path.resolve():
        raise TargetError("the target is the cohort store itself", "give another DuckDB file")
    if not _PLAIN_NAME.match(schema):
        raise ConfigError("the target schema name must be lower-case letters, digits and _")
    result = WriteResult(str(target))

    # Written in a sibling file (empty, or a copy of an existing target) under the export cap, committed
    # every COMMIT_ROWS rows and renamed over the target at the end. A commit writes the batch's rows and
    # key indexes to the file, whose blocks DuckDB may then evict: memory stays flat. One transaction over
    # the whole export held its key indexes in memory (100,000 persons into an existing file: 5.5 GiB) and,
    # capped, failed at commit.
    def refuse_filled(current: Any) -> None:  # before an existing target is copied
        _refuse_filled(_existing(_DuckAdapter(current), "duckdb", schema), overwrite, append)

    with staged_target(target, refuse_filled) as sibling:
        con = connect_target(sibling, target.name)
        try:
            _load_duckdb(con, store, schema, overwrite, append, progress, result)
            con.execute("CHECKPOINT")  # the sibling file alone then holds every row it is renamed with
        except duckdb.Error as exc:
            reason, hint = failure_reason(exc)
            raise TargetError(f"writing {target.name} failed ({reason}); nothing was written", hint) from None
        finally:
            with contextlib.suppress(duckdb.Error):
                con.close()
    return result


def _load_duckdb(
    con: Any,
    store: CohortStore,
    schema: str,
    overwrite: bool,
    append: bool,
    progress: Progress | None,
    result: WriteResult,
) -> None:
    con.begin()
    sa_like = _DuckAdapter(con)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
    existing = _prepare(sa_like, "duckdb", schema, overwrite, append)
    offsets = _Offsets(_maxima(sa_like, schema, existing) if append else {})
    for name in WRITE_ORDER:
        if name not in existing:
            con.execute(create_table_sql(name, "duckdb", f"{_q(schema)}.", inline_fks=True))
    pending = 0
    for name, rows, _ in iter_tables(store):
        rows = offsets.apply(name, rows)
        cols = ", ".join(_q(c) for c in rows.column_names)
        con.register("_rows", rows)
        key = cdm.table(name).primary_key
        keep = (
            f" WHERE {_q(key)} NOT IN (SELECT {_q(key)} FROM {_q(schema)}.{_q(name)})"
            if append and name in _VOCAB_SET and key
            else ""
        )
        con.execute(f"INSERT INTO {_q(schema)}.{_q(name)} ({cols}) SELECT {cols} FROM _rows{keep}")
        con.unregister("_rows")
        pending += rows.num_rows
        if pending >= COMMIT_ROWS:  # parents come before their children: a commit keeps keys whole
            con.commit()
            con.begin()
            pending = 0
        result.rows[name] = result.rows.get(name, 0) + rows.num_rows
        if progress:
            progress(name, rows.num_rows)
    con.commit()


class _DuckAdapter:
    """Just enough of a SQLAlchemy connection for the shared helpers above (text() with :named params)."""

    def __init__(self, con: Any) -> None:
        self.con = con

    def execute(self, clause: Any, params: dict[str, Any] | None = None) -> Any:
        text = str(clause)
        args: list[Any] = []
        for key, value in (params or {}).items():
            text = text.replace(f":{key}", "?")
            args.append(value)
        cur = self.con.execute(text, args)
        return _Result(cur)


class _Result:
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def fetchall(self) -> list[Any]:
        return list(self.cur.fetchall())

    def scalar(self) -> Any:
        rows = self.cur.fetchall()
        return rows[0][0] if rows else None
