"""``synthcohort fit COHORT.duckdb -o MODEL_DIR``: split off a control set and learn a generator."""

from __future__ import annotations

import click


@click.command("fit")
@click.argument("cohort", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--engine", default="native", show_default=True, help="Generator engine: native or sdv.")
@click.option("--holdout", default=0.2, show_default=True, type=float, help="Share of persons held out as control.")
@click.option("--seed", default="0", show_default=True, help="Seed of the split and of the model (a whole number).")
@click.option("--k", "k", default=11, show_default=True, type=int, help="Concepts held by fewer persons are rolled up.")
@click.option(
    "--min-leaf",
    default=11,
    show_default=True,
    type=int,
    help="Smallest group of persons a tree leaf summarises (twice that for year of birth, race, ethnicity and "
    "the observation window).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing model folder.")
def command(
    cohort: str, output: str, engine: str, holdout: float, seed: str, k: int, min_leaf: int, overwrite: bool
) -> None:
    """Fit a generator on a cohort store; the training and control sets are written beside it, named after the
    seed and holdout (COHORT.split-s0-h0.2.train.duckdb, ...control.duckdb) and reused by a later fit with both
    the same."""
    from pathlib import Path

    from synthcohort.cli.progress import progress_bar
    from synthcohort.cli.seeds import parse_seed
    from synthcohort.errors import TargetError
    from synthcohort.generator import engine_class

    out = Path(output)
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        # Checked before the fit, not after it: no long run ends in a refusal with the split stores written.
        raise TargetError(f"{output} already exists", "choose another model folder or pass --overwrite")
    cls = engine_class(engine)
    model = cls(k=k, holdout=holdout, seed=parse_seed(seed), min_leaf=min_leaf)
    with progress_bar("fit", unit="steps") as bar:
        model.fit(cohort, progress=lambda stage, done, total: bar.update(done, total, f"fit {stage}"))
    model.save(output, overwrite=overwrite)
    rec = model.record
    click.echo(f"model written: {output} ({engine}, learned from {rec['persons_learned']:,} persons)")
    reused = " (reused: an earlier fit with this seed and holdout wrote it)" if model.split_reused else ""
    click.echo(f"  training store: {rec['train_store']}{reused}")
    click.echo(f"  control store:  {rec['control_store']}{reused}")
