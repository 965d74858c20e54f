"""Same cohort content, config and seed give the same model and the same synthetic store, whatever
order DuckDB returns rows in (a read without ORDER BY may come back in another order from run to run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from synthcohort import cdm
from synthcohort.cohort import STORE_TABLES, CohortStore

PERSONS = 120  # enough for a fit (50 to learn from, 20 held out), small enough to fit in seconds

FIT_AND_SAMPLE = """
import sys
from synthcohort.generator import engine_class, load_model
cohort, model, synthetic = sys.argv[1:4]
engine_class("native")(seed=5).fit(cohort).save(model)
load_model(model).sample(40, synthetic, seed=2)
"""


def _copy(source: Path, target: Path, order: str) -> None:
    """The first PERSONS persons of ``source`` and every vocabulary row, each table's rows written in ``order``."""
    with CohortStore.open(source) as src, CohortStore.building(target) as dst:
        keep = f"WHERE person_id IN (SELECT person_id FROM person ORDER BY person_id LIMIT {PERSONS})"
        for name in STORE_TABLES:
            where = keep if name in cdm.CLINICAL_TABLES else ""
            dst.append(name, src.query_arrow(f'SELECT * FROM "{name}" t {where} ORDER BY {order}'))
        for key, value in src.meta().items():
            dst.set_meta(key, value)


@pytest.fixture(scope="module")
def two_orders(tmp_path_factory: pytest.TempPathFactory, synthea_1k_store: Path) -> tuple[Path, Path]:
    """Two stores of the same content: rows in key order, and rows in a scrambled order."""
    folder = tmp_path_factory.mktemp("orders")
    _copy(synthea_1k_store, folder / "a" / "cohort.duckdb", "ALL")
    _copy(synthea_1k_store, folder / "b" / "cohort.duckdb", "hash(t) DESC")
    return folder / "a" / "cohort.duckdb", folder / "b" / "cohort.duckdb"


def _in_order(path: Path, table: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(f'SELECT * FROM "{table}"').df()
    finally:
        con.close()


def test_the_two_stores_hold_the_same_rows_in_other_orders(two_orders: tuple[Path, Path]) -> None:
    a, b = two_orders
    with CohortStore.open(a) as sa, CohortStore.open(b) as sb:
        assert sa.content_digest() == sb.content_digest()
        assert sa.person_count() == PERSONS
    for table in ("concept", "visit_occurrence", "measurement"):
        assert not _in_order(a, table).equals(_in_order(b, table)), table


def test_training_data_does_not_depend_on_the_order_of_rows(two_orders: tuple[Path, Path]) -> None:
    from synthcohort.generator.training import load_training

    data = []
    for path in two_orders:
        with CohortStore.open(path) as store:
            data.append(load_training(store, 11))
    a, b = data
    for name in ("persons", "periods", "deaths", "visits", "totals", "codes"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    for domain in a.events:
        pd.testing.assert_frame_equal(a.events[domain], b.events[domain], obj=domain)
    assert a.vocabulary.equals(b.vocabulary) and a.ancestors.equals(b.ancestors)


def test_fits_in_two_processes_give_the_same_model_and_synthetic_rows(two_orders: tuple[Path, Path]) -> None:
    """Each fit runs in a fresh process, on one of the two stores: the model files' checksums and the
    synthetic rows must be equal."""
    files, rows = [], []
    for cohort in two_orders:
        model, synthetic = cohort.parent / "model", cohort.parent / "s.duckdb"
        subprocess.run([sys.executable, "-c", FIT_AND_SAMPLE, str(cohort), str(model), str(synthetic)], check=True)
        files.append(json.loads((model / "model.json").read_text())["files"])
        con = duckdb.connect(str(synthetic), read_only=True)
        try:
            rows.append({t: con.sql(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in cdm.CLINICAL_TABLES})
        finally:
            con.close()
    assert files[0] == files[1]
    assert rows[0] == rows[1]
    assert len(rows[0]["person"]) == 40
