"""``synthcohort export COHORT.duckdb fhir OUTDIR``: FHIR R4 Bulk NDJSON or one transaction Bundle per patient."""

from __future__ import annotations

import click

from synthcohort.text import plural


@click.command("fhir")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["ndjson", "bundle"]), default="ndjson", show_default=True)
@click.option("--gzip", "gz", is_flag=True, help="Compress the files (.gz).")
@click.option("--seed", default="0", show_default=True, help="Seed of the fresh resource ids (same seed, same bytes).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUTDIR.")
@click.pass_context
def command(ctx: click.Context, outdir: str, fmt: str, gz: bool, seed: str, overwrite: bool) -> None:
    """Write the store as FHIR R4 into OUTDIR (it appears only when complete). Every resource is labelled as
    test data (HTEST) with its data origin; one Provenance names the tool and the run."""
    from synthcohort.cli.export import cohort_path
    from synthcohort.cli.progress import progress_bar
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.fhir.writer import write_fhir

    with (
        CohortStore.open(cohort_path(ctx)) as store,
        progress_bar("export fhir", store.person_count(), "persons") as bar,
    ):
        report = write_fhir(store, outdir, fmt=fmt, gz=gz, seed=seed, overwrite=overwrite, progress=bar.advance)
    total = sum(report.written.values())
    click.echo(f"FHIR R4 written to {outdir}: {total:,} resources in {report.files:,} files (run {report.run_id})")
    click.echo("  " + ", ".join(f"{t} {n:,}" for t, n in sorted(report.written.items())))
    for reason, n in sorted(report.skipped.items()):
        click.echo(f"  not exported: {skip_text(reason, n)}")


def skip_text(reason: str, n: int) -> str:
    """``n`` skips of the FHIR writer in words: 3 ``measurement:no_code`` are "3 measurement rows without a code"."""
    table, _, why = reason.partition(":")
    if why == "no_code":
        return f"{plural(n, f'{table} row')} without a code"
    if reason == "reference_dropped":
        target = "its target is" if n == 1 else "their target is"
        return f"{plural(n, 'reference')} dropped ({target} not in the store)"
    return f"{n:,} {reason.replace(':', ' ').replace('_', ' ')}"
