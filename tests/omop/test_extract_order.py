"""The same OMOP source with its rows in another order gives the same cohort store: ids follow the content.

A database (or a multi-threaded scan) may hand rows over in any order and cut them into batches anywhere; the
store's ids, the row kept among duplicate deaths and the type of merged observation periods must not depend on it.
"""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import pytest

from synthcohort import cdm
from synthcohort.cohort import META_TABLE, STORE_TABLES, CohortStore
from synthcohort.connectors.omop.csv_source import folder_engine
from synthcohort.connectors.omop.sql_source import BATCH_ROWS, extract
from tests.bad_inputs.inputs import write_omop_csv

# Rows that tie on person and date, and differ in what is kept: two deaths of person 1 on one day, and
# three overlapping observation periods of person 3 starting on one day with two period types.
_DEATHS = [
    ["person_id", "death_date", "death_type_concept_id", "cause_concept_id"],
    ["1", "2021-03-01", "32817", "4306655"],
    ["1", "2021-03-01", "32815", "0"],
    ["2", "2021-05-01", "32817", "0"],
]
_EXTRA_PERIODS = [["1000", "3", "2010-01-01", "2012-01-01", "44814724"], ["1001", "3", "2010-01-01", "2015-12-31", "0"]]


def _read(path: Path) -> list[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _small_source(folder: Path) -> Path:
    write_omop_csv(folder, persons=40)
    _write(folder / "death.csv", _DEATHS)
    period = folder / "observation_period.csv"
    _write(period, _read(period) + _EXTRA_PERIODS)
    return folder


def _shuffled_copy(source: Path, target: Path, seed: int) -> Path:
    """Every file of ``source`` with its data rows in a random order (header first), uncompressed."""
    target.mkdir()
    rng = random.Random(seed)
    for path in sorted(source.iterdir()):
        if path.suffix not in (".csv", ".gz"):
            continue
        header, *rows = _read(path)
        rng.shuffle(rows)
        _write(target / path.name.removesuffix(".gz"), [header, *rows])
    return target


def _tables(folder: Path, out: Path, batch_rows: int) -> dict[str, list[tuple[object, ...]]]:
    """Every table of the store extracted from ``folder``, rows as stored."""
    engine = folder_engine(folder)
    try:
        with CohortStore.building(out) as store:
            extract(engine, store, where="the CSV folder", batch_rows=batch_rows)
    finally:
        engine.dispose()
    with CohortStore.open(out) as store:
        return {t: store.con.execute(f'SELECT * FROM "{t}"').fetchall() for t in (*STORE_TABLES, META_TABLE)}


def _assert_same_store(source: Path, tmp_path: Path, batch_rows: int) -> None:
    first = _tables(source, tmp_path / "first.duckdb", batch_rows)
    for seed in (1, 2):
        shuffled = _shuffled_copy(source, tmp_path / f"shuffled-{seed}", seed)
        again = _tables(shuffled, tmp_path / f"shuffled-{seed}.duckdb", batch_rows)
        for table, rows in first.items():
            assert again[table] == rows, f"{table} differs when the source rows come in another order (seed {seed})"


def test_row_order_of_a_small_source_changes_nothing(tmp_path: Path) -> None:
    source = _small_source(tmp_path / "source")
    # batches of a few rows: rows of one person, and duplicates, land in different batches in each order
    _assert_same_store(source, tmp_path, batch_rows=7)
    with CohortStore.open(tmp_path / "first.duckdb") as store:
        assert store.con.execute("SELECT count(*) FROM death").fetchall() == [(2,)]
        for table in ("observation_period", "visit_occurrence", "condition_occurrence"):
            pk = cdm.table(table).primary_key
            n, lowest, highest = store.con.execute(f"SELECT count(*), min({pk}), max({pk}) FROM {table}").fetchall()[0]
            assert n >= 40 and (lowest, highest) == (1, n), f"{table} ids are not 1..{n}"
        by_person_and_start = store.con.execute(
            "SELECT list(visit_occurrence_id ORDER BY person_id, visit_start_date, visit_occurrence_id) "
            "= list(visit_occurrence_id ORDER BY visit_occurrence_id) FROM visit_occurrence"
        ).fetchall()
        assert by_person_and_start == [(True,)]


def test_row_order_of_synthea_1k_changes_nothing(synthea_1k: Path, tmp_path: Path) -> None:
    # its measurement table (95,230 rows) comes in two batches
    _assert_same_store(synthea_1k, tmp_path, batch_rows=BATCH_ROWS)


@pytest.mark.parametrize("batch_rows", [5, 1_000])
def test_batch_size_changes_nothing(batch_rows: int, tmp_path: Path) -> None:
    source = _small_source(tmp_path / "source")
    assert _tables(source, tmp_path / "a.duckdb", batch_rows) == _tables(source, tmp_path / "b.duckdb", BATCH_ROWS)
