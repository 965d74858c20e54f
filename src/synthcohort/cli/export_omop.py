"""``synthcohort export COHORT.duckdb omop TARGET``: OMOP CDM tables into a database, CSV or Parquet folder."""

from __future__ import annotations

import click


@click.command("omop")
@click.argument("target")
@click.option("--schema", help="Target schema in a database (created when missing; default public / main).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), help="Folder format (default csv).")
@click.option("--overwrite", is_flag=True, help="Replace the OMOP tables (or folder) already at TARGET.")
@click.option(
    "--append",
    is_flag=True,
    help="Add to the OMOP tables already in the target schema (fresh ids). In PostgreSQL, the tables written "
    "and those their keys reference (person, concept) can be locked against readers until the export commits.",
)
@click.pass_context
def command(
    ctx: click.Context, target: str, schema: str | None, fmt: str | None, overwrite: bool, append: bool
) -> None:
    """Write the store as OMOP CDM v5.4 into TARGET: a database URL (duckdb:///out.duckdb,
    postgresql://user@host/db with --schema) or a folder (--format csv|parquet)."""
    from synthcohort.cli.export import cohort_path
    from synthcohort.cli.progress import progress_bar
    from synthcohort.cohort import EXPORT_MEMORY_LIMIT, CohortStore
    from synthcohort.connectors.omop.writer import write_omop
    from synthcohort.secrets import mask_url

    with (
        CohortStore.open(cohort_path(ctx), memory_limit=EXPORT_MEMORY_LIMIT) as store,
        progress_bar("export omop") as bar,
    ):
        result = write_omop(
            store,
            target,
            schema=schema,
            fmt=fmt,
            overwrite=overwrite,
            append=append,
            progress=lambda table, n: bar.advance(n, table),
        )
    total = sum(result.rows.values())
    click.echo(f"OMOP CDM v5.4 written to {mask_url(result.target)}: {total:,} rows in {len(result.rows)} tables")
