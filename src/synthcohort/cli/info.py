"""``synthcohort info COHORT.duckdb``: counts per table, persons, date range, provenance."""

from __future__ import annotations

import click


@click.command("info")
@click.argument("cohort", type=click.Path(dir_okay=False))
def command(cohort: str) -> None:
    """Show counts per table, persons and date range of a cohort store."""
    from synthcohort.cohort import CohortStore

    with CohortStore.open(cohort) as store:
        counts = store.counts()
        lo, hi = store.date_range()
        meta = store.meta()
    click.echo(f"cohort store {cohort}")
    for key in ("kind", "source_kind", "created_by"):
        if key in meta:
            click.echo(f"  {key}: {meta[key]}")
    click.echo(f"  persons: {counts['person']:,}")
    click.echo(f"  date range: {lo or '-'} .. {hi or '-'}")
    click.echo("  rows per table:")
    for name, n in counts.items():
        click.echo(f"    {name:<22}{n:>12,}")
