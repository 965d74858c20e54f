"""Read a folder of OMOP CDM CSV files (Athena style: comma or tab, any file-name case, .csv.gz)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import duckdb

from synthcohort import cdm
from synthcohort.cohort import STORE_TABLES, CohortStore
from synthcohort.errors import InputError

log = logging.getLogger(__name__)

_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")
BATCH_ROWS = 200_000


def find_table_files(folder: Path) -> dict[str, Path]:
    """Map each CDM table in scope to its file in ``folder`` (file-name case ignored)."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", "give the folder that holds PERSON.csv and the other tables")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        lower = path.name.lower()
        for suffix in _SUFFIXES:
            if lower.endswith(suffix) and lower[: -len(suffix)] in STORE_TABLES:
                found.setdefault(lower[: -len(suffix)], path)
    if "person" not in found:
        raise InputError(f"no PERSON file in {folder}", "an OMOP folder needs PERSON.csv (or person.csv.gz)")
    return found


def _cast(column: cdm.Column, source: str) -> str:
    quoted = '"' + source.replace('"', '""') + '"'
    value = f"NULLIF(TRIM({quoted}), '')"
    if column.type == "date":
        parsed = f"TRY_STRPTIME({value}, ['%Y%m%d', '%Y-%m-%-d', '%d/%m/%Y'])"
        return f"COALESCE(TRY_CAST({value} AS DATE), TRY_CAST({parsed} AS DATE))"
    if column.type == "datetime":
        return f"COALESCE(TRY_CAST({value} AS TIMESTAMP), TRY_STRPTIME({value}, ['%Y%m%d', '%Y-%m-%-d']))"
    return f"TRY_CAST({value} AS {column.duckdb_type})"


def read_csv_folder(
    folder: str | Path,
    store: CohortStore,
    *,
    person_filter: Callable[[str], str] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Load every CDM table found in ``folder`` into ``store``; only allow-listed columns are read."""
    files = find_table_files(Path(folder))
    reader = _reader(Path(folder))
    loaded: dict[str, int] = {}
    for name in STORE_TABLES:
        path = files.get(name)
        if path is None:
            continue
        spec = cdm.table(name)
        rel = reader.read_csv(str(path), header=True, all_varchar=True, sep=_delimiter(path))
        by_name = {c.strip().lower(): c for c in rel.columns}
        wanted = [c for c in spec.omop_readable_columns if c in by_name]
        if not wanted:
            log.warning("%s: no CDM column recognised in %s", name, path.name)
            continue
        selection = ", ".join(f'{_cast(spec.column(c), by_name[c])} AS "{c}"' for c in wanted)
        rows = 0
        for batch in rel.select(selection).to_arrow_reader(BATCH_ROWS):
            rows += store.append(name, batch)
            if progress:
                progress(name, batch.num_rows)
        loaded[name] = rows
        log.info("%s: %d rows from %s", name, rows, path.name)
    reader.close()
    return loaded


def _reader(folder: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may read files in ``folder`` only: no other file, no URL, no extension."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET allowed_directories = [?]", [str(folder.resolve()) + "/"])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _delimiter(path: Path) -> str:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return "\t" if header.count("\t") > header.count(",") else ","
