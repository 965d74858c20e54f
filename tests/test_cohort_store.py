"""The cohort store: atomic creation, counts, chunked iteration, hardening, locking."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.errors import InputError, TargetError


def _persons(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": range(1, n + 1),
            "gender_concept_id": [8507, 8532] * (n // 2) + [8507] * (n % 2),
            "year_of_birth": [1950 + i % 40 for i in range(n)],
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
            "person_source_value": "MRN-123",
        }
    )


def test_building_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "c.duckdb"
    with pytest.raises(RuntimeError), CohortStore.building(target) as store:
        store.append("person", _persons(3))
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with CohortStore.building(target) as store:
        store.append("person", _persons(3))
    assert target.exists()
    assert target.stat().st_mode & 0o077 == 0
    with pytest.raises(TargetError), CohortStore.building(target):
        pass


def test_identifier_columns_never_stored(tmp_path: Path) -> None:
    with CohortStore.building(tmp_path / "c.duckdb") as store:
        store.append("person", _persons(4))
    with CohortStore.open(tmp_path / "c.duckdb") as store:
        row = store.con.execute("SELECT count(person_source_value) FROM person").fetchone()
        assert row == (0,)


def test_chunks_cover_every_person_once(tmp_path: Path) -> None:
    with CohortStore.building(tmp_path / "c.duckdb") as store:
        store.append("person", _persons(25))
        store.append(
            "condition_occurrence",
            pd.DataFrame(
                {
                    "condition_occurrence_id": range(50),
                    "person_id": [i % 25 + 1 for i in range(50)],
                    "condition_concept_id": 201826,
                    "condition_start_date": pd.Timestamp("2020-01-01"),
                    "condition_type_concept_id": 32817,
                }
            ),
        )
    with CohortStore.open(tmp_path / "c.duckdb") as store:
        assert store.counts()["condition_occurrence"] == 50
        assert str(store.date_range()[0]) == "2020-01-01"
        assert store.person_ranges(10) == [(1, 10, 10), (11, 20, 10), (21, 25, 5)]
        # The same rows in the same order, streamed in bounded batches; `last` closes each table of a range.
        tables = ["person", "condition_occurrence"]
        batches = list(store.iter_person_batches(chunk_size=10, tables=tables, batch_rows=7))
        assert all(0 < b.num_rows <= 7 for _, b, _ in batches)
        parts: list[tuple[str, pa.Table]] = []
        rows: list[pa.RecordBatch] = []
        for name, batch, last in batches:
            rows.append(batch)
            if last:
                parts.append((name, pa.Table.from_batches(rows)))
                rows = []
        assert not rows
        assert sum(p.num_rows for n, p in parts if n == "person") == 25
        assert sum(p.num_rows for n, p in parts if n == "condition_occurrence") == 50
        by_range = 'SELECT * FROM "{}" WHERE person_id BETWEEN ? AND ? ORDER BY 1'
        whole = [
            (n, store.query_arrow(by_range.format(n), [lo, hi]))
            for lo, hi, _ in store.person_ranges(10)
            for n in tables
        ]
        assert [n for n, _ in parts] == [n for n, _ in whole]
        assert all(p.equals(w) for (_, p), (_, w) in zip(parts, whole, strict=True))


def test_store_cannot_read_outside_files(tmp_path: Path) -> None:
    with CohortStore.building(tmp_path / "c.duckdb") as store:
        store.append("person", _persons(2))
    with CohortStore.open(tmp_path / "c.duckdb") as store, pytest.raises(duckdb.Error):
        store.con.execute("SELECT * FROM read_csv('/etc/hostname')")


def test_open_refuses_non_store(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        CohortStore.open(tmp_path / "missing.duckdb")
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(InputError, match="not a cohort store"):
        CohortStore.open(other)


def test_only_a_held_lock_reads_as_locked() -> None:
    """An out-of-memory error speaks of blocks; it must not be reported as a file held by another process."""
    import duckdb

    from synthcohort.cohort import held_by_another_process

    held = duckdb.IOException('Could not set lock on file "s.duckdb": Conflicting lock is held in python (PID 7)')
    assert held_by_another_process(held)
    oom = duckdb.OutOfMemoryException("failed to allocate block of size 256.0 KiB (0 bytes/256.0 KiB used)")
    assert not held_by_another_process(oom)


def _raised_while_handling(first: Exception, then: Exception) -> Exception:
    try:
        try:
            raise first
        except duckdb.Error:
            raise then  # noqa: B904 -- as DuckDB's next statement fails in the aborted transaction
    except duckdb.Error as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "cap"),
    [
        (
            duckdb.OutOfMemoryException("could not allocate block of size 256.0 KiB (511.8 MiB/512.0 MiB used)"),
            "512.0 MiB",
        ),
        (duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data"), ""),
        (
            _raised_while_handling(
                duckdb.OutOfMemoryException("failed to pin block of size 256.0 KiB (1.7 MiB/1.9 MiB used)"),
                duckdb.TransactionException("Current transaction is aborted (please ROLLBACK)"),
            ),
            "1.9 MiB",
        ),
        (
            duckdb.TransactionException(
                'Failure while replaying WAL file "/data/c.duckdb.wal": Failed to commit: could not allocate block '
                "of size 256.0 KiB (783.9 KiB/976.5 KiB used)"
            ),
            "976.5 KiB",
        ),
        (
            duckdb.FatalException(
                "FATAL Error: Failed to create checkpoint because of error: failed to allocate data of size 3.0 MiB "
                "(265.9 KiB/1.9 MiB used)"
            ),
            "1.9 MiB",
        ),
    ],
    ids=["typed", "typed-without-sizes", "in-the-chain", "replaying-a-log", "checkpointing"],
)
def test_out_of_memory_is_recognised_and_names_only_the_cap(exc: Exception, cap: str) -> None:
    from synthcohort.cohort import out_of_memory

    said = out_of_memory(exc)
    assert said is not None
    assert said.message == f"DuckDB ran out of memory: a step needed more than its cap{f' of {cap}' if cap else ''}"
    assert said.hint.startswith("the cap is set by the tool")


def test_other_duckdb_errors_are_not_out_of_memory() -> None:
    from synthcohort.cohort import out_of_memory

    for exc in (
        duckdb.ConversionException("Could not convert string 'of size 1 KiB (1 KiB/2 KiB used)' to INT64"),
        duckdb.IOException("Could not write file: No space left on device"),
        duckdb.TransactionException("Current transaction is aborted (please ROLLBACK)"),
        ValueError("block of size 256.0 KiB (1.0 MiB/1.0 MiB used)"),
    ):
        assert out_of_memory(exc) is None, exc


def test_an_omop_database_given_as_a_store_says_how_to_read_it_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthea_1k_store: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    exported = runner.invoke(cli, ["export", str(synthea_1k_store), "omop", "duckdb:///omop.duckdb"])
    assert exported.exit_code == 0, exported.output
    result = runner.invoke(cli, ["info", "omop.duckdb"])
    assert result.exit_code == InputError.exit_code, result.output
    assert "omop.duckdb is an OMOP CDM database, not a cohort store" in result.output
    command = "synthcohort extract omop duckdb:///omop.duckdb -o cohort.duckdb"
    assert command in result.output and "'synthcohort generate'" in result.output, result.output
    extracted = runner.invoke(cli, command.split()[1:])  # the hinted command works as written
    assert extracted.exit_code == 0, extracted.output
    assert runner.invoke(cli, ["info", "cohort.duckdb"]).exit_code == 0


def test_an_omop_database_in_another_schema_is_hinted_with_its_schema(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA cdm; CREATE TABLE cdm.person (person_id BIGINT); CREATE TABLE main.notes (x INT)")
    with pytest.raises(InputError, match="is an OMOP CDM database") as caught:
        CohortStore.open(warehouse)
    assert caught.value.hint and f"duckdb:///{warehouse} --schema cdm -o" in caught.value.hint


def test_another_duckdb_file_gets_the_generic_hint(tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE measurements (x INT)")
    with pytest.raises(InputError, match=r"other\.duckdb is not a cohort store \(missing tables: ") as caught:
        CohortStore.open(other)
    assert (
        caught.value.hint == "give the path of a .duckdb file made by 'synthcohort extract' or 'synthcohort generate'"
    )


@pytest.mark.parametrize("content", [b"person_id,year_of_birth\n1,1970\n", b"SQLite format 3\x00" + bytes(100)])
def test_a_file_that_is_not_duckdb_is_named_as_such(tmp_path: Path, content: bytes) -> None:
    other = tmp_path / "cohort.duckdb"
    other.write_bytes(content)
    with pytest.raises(InputError, match=r"cohort\.duckdb is not a DuckDB database") as caught:
        CohortStore.open(other)
    assert caught.value.hint and "synthcohort extract" in caught.value.hint
    assert other.read_bytes() == content  # left as it was
