"""``synthcohort extract omop|fhir SOURCE -o COHORT.duckdb``: read a real cohort into a cohort store."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("extract")
def command() -> None:
    """Read a cohort from an OMOP CDM source or FHIR R4 data into a cohort store."""


@command.command("omop")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Cohort store to create.")
@click.option("--overwrite", is_flag=True, help="Replace an existing cohort store.")
def omop(source: str, output: str, overwrite: bool) -> None:
    """Extract from an OMOP CSV folder (SOURCE)."""
    from synthcohort import __version__
    from synthcohort.cli.progress import progress_bar
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.omop.csv_source import read_csv_folder

    with CohortStore.building(output, overwrite=overwrite) as store, progress_bar("extract") as bar:
        loaded = read_csv_folder(Path(source), store, progress=lambda table, n: bar.advance(n, table))
        store.set_meta("kind", "real")
        store.set_meta("source_kind", "omop-csv")
        store.set_meta("created_by", f"synthcohort {__version__}")
    click.echo(f"cohort store written: {output} ({loaded.get('person', 0):,} persons)")
