"""Write a cohort store as a folder of OMOP CSV or Parquet files, one per table; the folder appears atomically."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from synthcohort.cohort import CohortStore
from synthcohort.connectors.omop.writer import WRITE_ORDER, Progress, WriteResult, iter_tables
from synthcohort.errors import ConfigError
from synthcohort.outputs import atomic_output_dir, confined

log = logging.getLogger(__name__)
FORMATS = ("csv", "parquet")


def write_folder(
    store: CohortStore,
    target: str | Path,
    *,
    fmt: str = "csv",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> WriteResult:
    """One file per CDM table (every table written, empty ones with their header/schema)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", "use --format csv or --format parquet")
    result = WriteResult(str(target))
    writers: dict[str, Any] = {}
    with atomic_output_dir(target, overwrite=overwrite) as tmp, contextlib.ExitStack() as stack:

        def writer(name: str, schema: pa.Schema) -> Any:
            if name not in writers:
                path = confined(tmp, f"{name}.{fmt}")
                if fmt == "csv":
                    writers[name] = stack.enter_context(pacsv.CSVWriter(str(path), schema))
                else:
                    writers[name] = stack.enter_context(pq.ParquetWriter(str(path), schema, compression="zstd"))
            return writers[name]

        for name, rows in iter_tables(store):
            writer(name, rows.schema).write_table(rows)
            result.rows[name] = result.rows.get(name, 0) + rows.num_rows
            if progress:
                progress(name, rows.num_rows)
        for name in WRITE_ORDER:
            if name not in writers:
                empty = store.con.sql(f'SELECT * FROM "{name}" LIMIT 0').to_arrow_table()
                writer(name, empty.schema).write_table(empty)
                result.rows[name] = 0
        stack.close()
    log.info("wrote %d tables to %s", len(result.rows), target)
    return result
