"""Read a folder of OMOP CDM CSV files (Athena style: comma or tab, any file-name case, .csv.gz)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import duckdb
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from synthcohort import cdm
from synthcohort.cohort import STORE_TABLES, CohortStore
from synthcohort.connectors.omop.ingest import IngestReport
from synthcohort.connectors.omop.selection import Selection
from synthcohort.connectors.omop.sql_source import extract
from synthcohort.errors import InputError

log = logging.getLogger(__name__)

_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")


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


def folder_engine(folder: str | Path) -> Engine:
    """An in-memory DuckDB engine whose views expose the folder's CDM tables (allow-listed columns only)."""
    root = Path(folder)
    files = find_table_files(root)
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    engine = sa.create_engine(
        "duckdb:///:memory:", poolclass=sa.pool.StaticPool, hide_parameters=True, connect_args={"config": config}
    )
    with engine.begin() as con:
        # The views read files of this folder only: no other file, no URL, no extension, no reconfiguration.
        con.exec_driver_sql(f"SET allowed_directories = [{_literal(str(root.resolve()) + '/')}]")
        con.exec_driver_sql("SET enable_external_access = false")
        for name, path in files.items():
            spec = cdm.table(name)
            by_name = {c.strip().lower(): c for c in header(path)}
            allowed = spec.column_names if name in cdm.VOCABULARY_TABLES else spec.omop_readable_columns
            wanted = [c for c in allowed if c in by_name]
            if not wanted:
                log.warning("%s: no CDM column recognised in %s", name, path.name)
                continue
            selection = ", ".join(f'{_cast(spec.column(c), by_name[c])} AS "{c}"' for c in wanted)
            con.exec_driver_sql(
                f'CREATE VIEW "{name}" AS SELECT {selection} FROM read_csv({_literal(path)}, header = true, '
                f"all_varchar = true, sep = {_literal(_delimiter(path))})"
            )
        cohort = _cohort_file(Path(folder))
        if cohort is not None:
            con.exec_driver_sql(
                'CREATE VIEW "cohort" AS SELECT TRY_CAST(cohort_definition_id AS BIGINT) AS cohort_definition_id, '
                f"TRY_CAST(subject_id AS BIGINT) AS subject_id FROM read_csv({_literal(cohort)}, header = true, "
                f"all_varchar = true, sep = {_literal(_delimiter(cohort))})"
            )
        con.exec_driver_sql("SET lock_configuration = true")
    return engine


def extract_csv_folder(
    folder: str | Path,
    store: CohortStore,
    *,
    selection: Selection | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> IngestReport:
    """Load the selected cohort from an OMOP CSV folder into ``store`` (fresh ids, quarantine, vocabulary)."""
    engine = folder_engine(folder)
    try:
        report = extract(engine, store, selection=selection, progress=progress, where="the CSV folder")
    finally:
        engine.dispose()
    store.set_meta("source_kind", "omop-csv")
    return report


def read_csv_folder(
    folder: str | Path,
    store: CohortStore,
    *,
    selection: Selection | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Load an OMOP CSV folder into ``store``; returns the rows kept per table."""
    report = extract_csv_folder(folder, store, selection=selection, progress=progress)
    return dict(report.loaded)


def _reader(folder: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may read files in ``folder`` only: no other file, no URL, no extension."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET allowed_directories = [?]", [str(folder.resolve()) + "/"])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _literal(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _cohort_file(folder: Path) -> Path | None:
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if path.is_file() and not path.is_symlink() and any(lower == "cohort" + s for s in _SUFFIXES):
            return path
    return None


def header(path: Path) -> list[str]:
    """The column names of a CSV file (first line), read without a database."""
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline()
    return next(csv.reader([first], delimiter=_delimiter(path)), [])


def _delimiter(path: Path) -> str:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return "\t" if header.count("\t") > header.count(",") else ","
