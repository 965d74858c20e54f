"""``synthcohort extract omop SOURCE -o COHORT.duckdb``: a cohort from an OMOP database URL or CSV folder."""

from __future__ import annotations

import datetime as dt

import click

from synthcohort.text import plural


@click.command("omop")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Cohort store to create.")
@click.option("--schema", help="CDM schema in the source database (default: the database's default schema).")
@click.option("--vocab-schema", help="Schema holding CONCEPT and CONCEPT_ANCESTOR, when not the CDM schema.")
@click.option("--cohort-schema", help="Schema holding the OHDSI COHORT table (default: the CDM schema).")
@click.option("--cohort-id", type=int, help="Persons of this cohort_definition_id in the OHDSI COHORT table.")
@click.option(
    "--person-ids", type=click.Path(exists=True, dir_okay=False), help="File of person_id values, one a line."
)
@click.option("--concepts", help="Persons with any of these concept ids (and descendants), e.g. 201826,4329847.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="Keep events from this date (YYYY-MM-DD).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Keep events up to this date (YYYY-MM-DD).")
@click.option("--overwrite", is_flag=True, help="Replace an existing cohort store.")
def command(
    source: str,
    output: str,
    schema: str | None,
    vocab_schema: str | None,
    cohort_schema: str | None,
    cohort_id: int | None,
    person_ids: str | None,
    concepts: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    overwrite: bool,
) -> None:
    """Extract a cohort from SOURCE: a database URL (duckdb:///cdm.duckdb, postgresql://user@host/db) or a folder
    of OMOP CSV files. Source ids are replaced by fresh ones; identifiers and free text are never read."""
    from pathlib import Path

    from synthcohort import __version__
    from synthcohort.cli.progress import progress_bar
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.omop.selection import Selection, parse_concepts, read_person_ids

    selection = Selection(
        person_ids=read_person_ids(person_ids) if person_ids else None,
        cohort_id=cohort_id,
        concepts=parse_concepts(concepts) if concepts else None,
        start=start.date() if start else None,
        end=end.date() if end else None,
    )
    is_url = "://" in source
    if not is_url and (schema or vocab_schema or cohort_schema):
        raise click.UsageError("--schema, --vocab-schema and --cohort-schema apply to database sources")
    with CohortStore.building(output, overwrite=overwrite) as store, progress_bar("extract") as bar:
        advance = lambda table, n: bar.advance(n, table)  # noqa: E731
        if is_url:
            from synthcohort.connectors.omop.sql_source import read_database

            report = read_database(
                source,
                store,
                schema=schema,
                vocab_schema=vocab_schema,
                cohort_schema=cohort_schema,
                selection=selection,
                progress=advance,
            )
        else:
            from synthcohort.connectors.omop.csv_source import extract_csv_folder

            report = extract_csv_folder(Path(source), store, selection=selection, progress=advance)
        store.set_meta("kind", "real")
        store.set_meta("created_by", f"synthcohort {__version__}")
        store.set_meta("created_at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    click.echo(f"cohort store written: {output} ({plural(report.loaded['person'], 'person')}; {selection.describe()})")
    for table, reasons in sorted(report.quarantined.items()):
        for reason, n in sorted(reasons.items()):
            click.echo(f"  quarantined {plural(n, f'{table} row')}: {reason}")
    for table, notes in sorted(report.notes.items()):
        for what, n in sorted(notes.items()):
            click.echo(f"  note: {table}: {n:,} {what.replace('_', ' ')}")
    if report.quarantined:
        click.echo(f"  {plural(report.quarantined_total, 'row')} quarantined in all; counts kept in the store meta")
