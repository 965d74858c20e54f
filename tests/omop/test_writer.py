"""OMOP writers: folders appear atomically, databases in one transaction, non-empty targets refused, CDM_SOURCE."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import EXPORT_MEMORY_LIMIT, CohortStore
from synthcohort.connectors.omop import duckdb_target, sql_writer, writer
from synthcohort.connectors.omop.folder_writer import RowGroups
from synthcohort.connectors.omop.validate import validate_omop
from synthcohort.connectors.omop.writer import write_omop
from synthcohort.errors import TargetError
from tests.bad_inputs.inputs import leave_unsaved_log


def export(store: Path, target: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["export", str(store), "omop", target, *extra])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory, eunomia_store: Path) -> Path:
    """A copy of the Eunomia store labelled synthetic (the writer only reads the label)."""
    path = tmp_path_factory.mktemp("syn") / "synthetic.duckdb"
    shutil.copy(eunomia_store, path)
    with CohortStore.open(path, read_only=False) as store:
        store.set_meta("kind", "synthetic")
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_folder_written_and_valid(fmt: str, synthetic_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "omop"
    code, output = export(synthetic_store, str(out), "--format", fmt)
    assert code == 0, output
    with CohortStore.open(synthetic_store) as store:
        counts = store.counts()
    files = {p.stem: p for p in out.iterdir()}
    assert set(files) == set(writer.WRITE_ORDER)
    con = duckdb.connect()
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    for name, path in files.items():
        n = con.execute(f"SELECT count(*) FROM {reader}(?)", [str(path)]).fetchall()[0][0]
        assert n == (1 if name == "cdm_source" else counts[name]), name
    source = con.execute(
        f"SELECT cdm_source_name, source_description, cdm_etl_reference FROM {reader}(?)", [str(files["cdm_source"])]
    ).fetchall()[0]
    assert "synthetic" in source[0] and source[1].startswith("SYNTHETIC DATA") and "fingerprint sha256:" in source[2]
    result = validate_omop(str(out))
    for rule in ("primary_key_unique", "required_not_null", "foreign_key_resolves", "cdm_source_filled"):
        assert result.by_rule()[rule] == 0, rule
    code, output = export(synthetic_store, str(out), "--format", fmt)
    assert code == 5 and "not empty" in output
    code, output = export(synthetic_store, str(out), "--format", fmt, "--overwrite")
    assert code == 0, output


@pytest.mark.parametrize("target", ["folder", "duckdb"])
def test_progress_adds_up_to_rows_to_write(target: str, synthetic_store: Path, tmp_path: Path) -> None:
    # A generated store holds a CDM_SOURCE row of its own, which the writer replaces with its own row.
    store_path = tmp_path / "store.duckdb"
    shutil.copy(synthetic_store, store_path)
    with CohortStore.open(store_path, read_only=False) as store:
        store.con.execute("INSERT INTO cdm_source (cdm_source_name, cdm_holder) VALUES ('generated', 'synthcohort')")
    reported: list[int] = []
    url = str(tmp_path / "omop") if target == "folder" else f"duckdb:///{tmp_path / 'out.duckdb'}"
    with CohortStore.open(store_path) as store:
        assert store.counts()["cdm_source"] == 1
        result = write_omop(store, url, progress=lambda table, n: reported.append(n))
        assert sum(reported) == writer.rows_to_write(store) == sum(result.rows.values())


def test_row_groups_do_not_depend_on_batching(tmp_path: Path) -> None:
    """Parquet bytes are those of writing each part whole, however the part arrives in batches."""
    parts = [pa.table({"id": range(a, b), "v": [str(i) for i in range(a, b)]}) for a, b in [(0, 25), (25, 31)]]

    def write(path: Path, tables: Iterator[pa.Table]) -> bytes:
        with pq.ParquetWriter(str(path), parts[0].schema) as out:
            for table in tables:
                out.write_table(table, row_group_size=10)
        return path.read_bytes()

    whole = write(tmp_path / "whole.parquet", iter(parts))
    for size in (1, 3, 10, 40):
        groups = RowGroups(10)
        batched = (
            group
            for part in parts
            for start in range(0, part.num_rows, size)
            for group in groups.add(part.slice(start, size), start + size >= part.num_rows)
        )
        assert write(tmp_path / f"batched-{size}.parquet", batched) == whole, size
    assert [g.num_rows for g in RowGroups(10).add(parts[0], True)] == [10, 10, 5]


def _failing_after(n: int) -> object:
    real = writer.iter_tables

    def iter_tables(store: CohortStore, chunk_persons: int = 10_000) -> Iterator[tuple[str, pa.Table, bool]]:
        for i, item in enumerate(real(store, chunk_persons)):
            if i == n:
                raise OSError(28, "No space left on device")
            yield item

    return iter_tables


def test_failed_folder_write_leaves_nothing(
    synthetic_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("synthcohort.connectors.omop.folder_writer.iter_tables", _failing_after(5))
    with CohortStore.open(synthetic_store) as store, pytest.raises(TargetError):
        write_omop(store, str(tmp_path / "omop"), fmt="parquet")
    assert list(tmp_path.iterdir()) == []


def test_failed_duckdb_write_leaves_nothing(
    synthetic_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("synthcohort.connectors.omop.sql_writer.iter_tables", _failing_after(5))
    with CohortStore.open(synthetic_store) as store, pytest.raises(OSError):
        write_omop(store, f"duckdb:///{tmp_path / 'out.duckdb'}")
    assert list(tmp_path.iterdir()) == []


def test_duckdb_target_refuse_overwrite_append(synthetic_store: Path, tmp_path: Path) -> None:
    target = f"duckdb:///{tmp_path / 'out.duckdb'}"
    assert export(synthetic_store, target)[0] == 0
    code, output = export(synthetic_store, target)
    assert code == 5 and "--overwrite" in output
    assert export(synthetic_store, target, "--overwrite")[0] == 0
    assert export(synthetic_store, target, "--append")[0] == 0
    with CohortStore.open(synthetic_store) as store:
        counts = store.counts()
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT person_id), max(person_id) FROM person").fetchall() == [
        (2 * counts["person"],) * 3
    ]
    assert con.execute("SELECT count(*) FROM concept").fetchall() == [(counts["concept"],)]
    assert con.execute("SELECT count(*) FROM cdm_source").fetchall() == [(2,)]
    con.close()
    result = validate_omop(str(tmp_path / "out.duckdb"))
    for rule in ("primary_key_unique", "required_not_null", "foreign_key_resolves"):
        assert result.by_rule()[rule] == 0, rule


def test_target_that_is_not_a_duckdb_file_is_named_as_such(synthetic_store: Path, tmp_path: Path) -> None:
    """A file DuckDB cannot read is not "locked by another process": the hint says what to give instead."""
    path = tmp_path / "notes.duckdb"
    path.write_text("a text file, not a database\n" * 200)
    code, output = export(synthetic_store, f"duckdb:///{path}", "--overwrite")
    assert code != 0
    assert "cannot be opened as a DuckDB database" in output and "locked" not in output
    assert path.read_text().startswith("a text file")  # left as it was


@pytest.mark.parametrize("flag", ["overwrite", "append"])
def test_failed_write_into_existing_duckdb_leaves_it_as_it_was(
    flag: str, synthetic_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committing after every batch, as the writer does under its memory cap, still changes nothing on failure."""
    url = f"duckdb:///{tmp_path / 'out.duckdb'}"
    with CohortStore.open(synthetic_store) as store:
        write_omop(store, url)
    before = (tmp_path / "out.duckdb").read_bytes()
    monkeypatch.setattr("synthcohort.connectors.omop.sql_writer.COMMIT_ROWS", 1)
    monkeypatch.setattr("synthcohort.connectors.omop.sql_writer.iter_tables", _failing_after(8))
    with CohortStore.open(synthetic_store) as store, pytest.raises(OSError):
        write_omop(store, url, **{flag: True})
    assert (tmp_path / "out.duckdb").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.duckdb"]


def test_existing_duckdb_target_written_under_the_export_cap(
    synthetic_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"duckdb:///{tmp_path / 'out.duckdb'}"
    with CohortStore.open(synthetic_store) as store:
        write_omop(store, url)
    capped = duckdb.connect(config={"memory_limit": EXPORT_MEMORY_LIMIT})
    cap = capped.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    capped.close()
    real_connect = duckdb.connect
    writing: list[tuple[str, str]] = []
    settings = "SELECT current_setting('access_mode'), current_setting('memory_limit')"

    def connect(database: str, *args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        con = real_connect(database, *args, **kwargs)
        [(mode, limit)] = con.execute(settings).fetchall()
        if mode.lower() != "read_only" and Path(database).parent == tmp_path:
            writing.append((Path(database).name, limit))
        return con

    monkeypatch.setattr(duckdb, "connect", connect)
    with CohortStore.open(synthetic_store) as store:
        write_omop(store, url, overwrite=True)
        write_omop(store, url, append=True)
    # the two files written (copies of the target); the target itself was opened read-only
    assert len(writing) == 2 and all(limit == cap for _, limit in writing), writing


def test_duckdb_target_keeps_its_other_tables_and_unsaved_log(synthetic_store: Path, tmp_path: Path) -> None:
    """A target left with a write-ahead log (its writer was killed) is checkpointed before it is copied."""
    target = tmp_path / "out.duckdb"
    with CohortStore.open(synthetic_store) as store:
        write_omop(store, f"duckdb:///{target}")
    killed = (
        f"import duckdb, os; c = duckdb.connect({str(target)!r}); "
        "c.execute(\"CREATE TABLE notes AS SELECT 'kept' AS t\"); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", killed], check=True)
    assert Path(f"{target}.wal").exists()
    with CohortStore.open(synthetic_store) as store:
        persons = store.counts()["person"]
        write_omop(store, f"duckdb:///{target}", append=True)
    assert not Path(f"{target}.wal").exists()
    con = duckdb.connect(str(target), read_only=True)
    assert con.execute("SELECT t FROM notes").fetchall() == [("kept",)]
    assert con.execute("SELECT count(*) FROM person").fetchall() == [(2 * persons,)]
    con.close()


OUT_OF_MEMORY = "DuckDB ran out of memory: a step needed more than its cap of"
CAP_HINT = "what to do: the cap is set by the tool and no option changes it"


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block (488.2 MiB/488.2 MiB used)"),
            f"error: writing out.duckdb failed ({OUT_OF_MEMORY} 488.2 MiB); nothing was written\n  {CAP_HINT}",
        ),
        (
            duckdb.OutOfMemoryException(
                "Out of Memory Error: failed to offload data block of size 256.0 KiB (9.0 GiB/9.0 GiB used).\n"
                "This limit was set by the 'max_temp_directory_size' setting."
            ),
            "error: writing out.duckdb failed (DuckDB ran out of disk space for the data it moves out of memory); "
            "nothing was written\n  what to do: free disk space beside the DuckDB file read or written",
        ),
        (  # any other DuckDB error: its type only, as before
            duckdb.ConversionException("Could not convert string 'Jeanne Canary' to INT64"),
            "error: writing out.duckdb failed (ConversionException); nothing was written\n",
        ),
    ],
    ids=["memory", "disk", "other"],
)
def test_duckdb_export_that_runs_out_of_memory_says_so(
    synthetic_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: duckdb.Error, said: str
) -> None:
    real = writer.iter_tables

    def iter_tables(store: CohortStore, chunk_persons: int = 10_000) -> Iterator[tuple[str, pa.Table, bool]]:
        for i, item in enumerate(real(store, chunk_persons)):
            if i == 5:
                raise raised
            yield item

    monkeypatch.setattr(sql_writer, "iter_tables", iter_tables)
    code, output = export(synthetic_store, f"duckdb:///{tmp_path / 'out.duckdb'}")
    assert code == TargetError.exit_code, output
    assert said in output and "Canary" not in output
    assert ("what to do" in output) == ("what to do" in said)  # no hint for another error, as before
    assert list(tmp_path.iterdir()) == []


def test_duckdb_export_under_a_tiny_cap_says_it_ran_out_of_memory(
    synthetic_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a new target or appending to one under a 2 MB cap fails in DuckDB: nothing is written."""
    target = tmp_path / "out.duckdb"
    said = f"error: writing out.duckdb failed ({OUT_OF_MEMORY} 1.9 MiB); nothing was written\n  {CAP_HINT}"
    monkeypatch.setattr(duckdb_target, "EXPORT_MEMORY_LIMIT", "2MB")
    code, output = export(synthetic_store, f"duckdb:///{target}")
    assert code == TargetError.exit_code and said in output, output
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert export(synthetic_store, f"duckdb:///{target}")[0] == 0
    before = target.read_bytes()
    monkeypatch.setattr(duckdb_target, "EXPORT_MEMORY_LIMIT", "2MB")
    code, output = export(synthetic_store, f"duckdb:///{target}", "--append")
    assert code == TargetError.exit_code and said in output, output
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.duckdb"]


@pytest.mark.parametrize(
    ("limit", "said"),
    [
        ("1MB", f"error: the DuckDB target out.duckdb cannot be opened ({OUT_OF_MEMORY} 976.5 KiB)"),
        ("2MB", f"error: checkpointing the DuckDB target out.duckdb failed ({OUT_OF_MEMORY} 1.9 MiB)"),
    ],
    ids=["replaying-its-log", "checkpointing"],
)
def test_duckdb_target_whose_unsaved_log_exceeds_the_cap(
    synthetic_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, said: str
) -> None:
    """DuckDB reports these as a failed transaction or a fatal error, not as its out-of-memory error."""
    target = tmp_path / "out.duckdb"
    assert export(synthetic_store, f"duckdb:///{target}")[0] == 0
    leave_unsaved_log(target)
    monkeypatch.setattr(duckdb_target, "EXPORT_MEMORY_LIMIT", limit)
    code, output = export(synthetic_store, f"duckdb:///{target}", "--append")
    assert code == TargetError.exit_code, output
    assert f"{said}\n  {CAP_HINT}" in output and "WAL" not in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.duckdb", "out.duckdb.wal"]
    con = duckdb.connect(str(target), read_only=True)
    assert con.execute("SELECT count(*) FROM notes").fetchall() == [(150_000,)]
    con.close()


@pytest.mark.postgres
def test_failed_postgres_write_rolls_back(
    synthetic_store: Path, pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = pg_schema
    monkeypatch.setattr("synthcohort.connectors.omop.sql_writer.iter_tables", _failing_after(8))
    with CohortStore.open(synthetic_store) as store, pytest.raises(OSError):
        write_omop(store, url, schema=schema)
    engine = sa.create_engine(url)
    with engine.connect() as con:
        tables = con.execute(
            sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
        ).scalar()
    engine.dispose()
    assert tables == 0


def _pg_state(url: str, schema: str) -> tuple[list[tuple[object, ...]], dict[str, int]]:
    """The schema's constraints (table, name, definition, validated) and each table's row count."""
    engine = sa.create_engine(url)
    with engine.connect() as con:
        constraints = con.execute(
            sa.text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated "
                "FROM pg_constraint WHERE connamespace = CAST(:s AS regnamespace) ORDER BY 1, 2"
            ),
            {"s": schema},
        ).fetchall()
        tables = con.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
        ).scalars()
        counts = {t: con.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{t}"')).scalar_one() for t in tables}
    engine.dispose()
    return [tuple(c) for c in constraints], counts


@pytest.mark.postgres
def test_postgres_append_and_validate(synthetic_store: Path, pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    assert export(synthetic_store, url, "--schema", schema)[0] == 0
    constraints, counts = _pg_state(url, schema)
    assert sum(1 for c in constraints if "FOREIGN KEY" in str(c[2])) > 50
    assert export(synthetic_store, url, "--schema", schema, "--append")[0] == 0
    after, appended = _pg_state(url, schema)
    assert after == constraints  # the foreign keys dropped for the load are back, validated, as they were
    assert appended["measurement"] == 2 * counts["measurement"]
    result = CliRunner().invoke(cli, ["validate", "omop", url, "--schema", schema])
    for rule in ("primary_key_unique", "required_not_null", "foreign_key_resolves", "cdm_source_filled"):
        assert f"ok   {rule}" in result.output, result.output


@pytest.mark.postgres
@pytest.mark.parametrize("recheck_up_to", [0, 8], ids=["keys-checked-per-row", "keys-dropped-and-added-back"])
def test_postgres_append_with_a_violation_leaves_the_target_as_it_was(
    synthetic_store: Path, pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch, recheck_up_to: int
) -> None:
    """Rows whose person is not written break PERSON_ID's foreign keys: checked per row as they are copied,
    or when the dropped keys are added back, the append fails and the schema keeps its rows and keys."""
    url, schema = pg_schema
    assert export(synthetic_store, url, "--schema", schema)[0] == 0
    before = _pg_state(url, schema)
    real_iter, real_lift = writer.iter_tables, sql_writer._lift_foreign_keys
    lifted: list[list[object]] = []

    def without_persons(store: CohortStore) -> Iterator[tuple[str, pa.Table, bool]]:
        return (item for item in real_iter(store) if item[0] != "person")

    def lift(*args: object) -> list[object]:
        lifted.append(real_lift(*args))  # type: ignore[arg-type]
        return lifted[-1]

    monkeypatch.setattr(sql_writer, "RECHECK_UP_TO", recheck_up_to)
    monkeypatch.setattr(sql_writer, "iter_tables", without_persons)
    monkeypatch.setattr(sql_writer, "_lift_foreign_keys", lift)
    with CohortStore.open(synthetic_store) as store, pytest.raises(TargetError, match="nothing was written"):
        write_omop(store, url, schema=schema, append=True)
    assert bool(lifted[0]) == bool(recheck_up_to)
    assert _pg_state(url, schema) == before
