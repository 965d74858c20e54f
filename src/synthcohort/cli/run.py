"""``synthcohort run PIPELINE.toml``: extract, fit, generate, evaluate and export from one config file."""

from __future__ import annotations

import click


@click.command("run")
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier run (same as [run] overwrite).")
def command(pipeline: str, overwrite: bool) -> None:
    """Run the whole pipeline described by PIPELINE (TOML); see examples/ for one per use.

    Database passwords come from the environment variable each section names with
    password_env (or SYNTHCOHORT_DB_PASSWORD, PGPASSWORD, ~/.pgpass), never from the file.
    The run record (run-manifest.json), the report and its figures go to [run] outdir.
    """
    from dataclasses import replace

    from synthcohort.cli.progress import stage_bar
    from synthcohort.cli.summary import print_run
    from synthcohort.pipeline.config import load
    from synthcohort.pipeline.runner import run
    from synthcohort.signals import sigterm_as_interrupt

    cfg = load(pipeline)
    if overwrite:
        cfg = replace(cfg, overwrite=True)
    with sigterm_as_interrupt():
        result = run(cfg, bars=stage_bar)
    print_run(result)
