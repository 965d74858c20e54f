"""Write a cohort store as a folder of OMOP CSV or Parquet files, one per table; the folder appears atomically."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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
ROW_GROUP_ROWS = 1024 * 1024  # pyarrow's default: a part of more rows is cut into row groups of this many


class RowGroups:
    """Regroups a table's batches into the row groups that writing each part whole would make: a part
    (the batches up to one marked last) is cut every ``size`` rows and at its end. Holds at most one
    row group's rows, so a Parquet file's bytes do not depend on how the rows were batched."""

    def __init__(self, size: int = ROW_GROUP_ROWS) -> None:
        self.size = size
        self.held: list[pa.Table] = []
        self.rows = 0

    def add(self, rows: pa.Table, last: bool) -> Iterator[pa.Table]:
        """The row groups complete once ``rows`` (ending a part when ``last``) are added."""
        self.held.append(rows)
        self.rows += rows.num_rows
        while self.rows >= self.size or (last and self.rows):
            table = pa.concat_tables(self.held)
            group, rest = table.slice(0, self.size), table.slice(self.size)
            self.held, self.rows = ([rest] if rest.num_rows else []), rest.num_rows
            yield group


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
    groups: dict[str, RowGroups] = {}
    with atomic_output_dir(target, overwrite=overwrite) as tmp, contextlib.ExitStack() as stack:

        def writer(name: str, schema: pa.Schema) -> Any:
            if name not in writers:
                path = confined(tmp, f"{name}.{fmt}")
                if fmt == "csv":
                    writers[name] = stack.enter_context(pacsv.CSVWriter(str(path), schema))
                else:
                    writers[name] = stack.enter_context(pq.ParquetWriter(str(path), schema, compression="zstd"))
            return writers[name]

        for name, rows, last in iter_tables(store):
            out = writer(name, rows.schema)
            if fmt == "csv":  # rows are text lines: batches need not be regrouped
                out.write_table(rows)
            else:
                for group in groups.setdefault(name, RowGroups()).add(rows, last):
                    out.write_table(group, row_group_size=ROW_GROUP_ROWS)
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
