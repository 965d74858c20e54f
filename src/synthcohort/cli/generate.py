"""``synthcohort generate MODEL_DIR -n N -o SYNTH.duckdb``: sample a synthetic cohort store."""

from __future__ import annotations

import click

from synthcohort.text import plural

# Above this many persons per run, split the job (ids, memory and time stay manageable).
MAX_PERSONS = 100_000_000


@click.command("generate")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("-n", "n", required=True, help="Number of synthetic persons.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Synthetic store to create.")
@click.option("--seed", default="0", show_default=True, help="Seed (a whole number): same model + seed, same output.")
@click.option(
    "--where",
    "where",
    multiple=True,
    help="Condition, e.g. sex=F, age=40-60 (at the end of observation), condition=201826+.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
def command(model_dir: str, n: str, output: str, seed: str, where: tuple[str, ...], overwrite: bool) -> None:
    """Generate N synthetic persons from a fitted model (optionally only those meeting --where)."""
    from synthcohort.cli.progress import progress_bar
    from synthcohort.cli.seeds import parse_seed
    from synthcohort.errors import ConfigError
    from synthcohort.generator import load_model
    from synthcohort.generator.room import check_room
    from synthcohort.generator.where import parse

    text = n.strip().replace("_", "")
    if not text.isdigit() or not 1 <= int(text) <= MAX_PERSONS:
        raise ConfigError(f"-n must be a whole number from 1 to {MAX_PERSONS:,}, not {n!r}")
    count = int(text)
    seed_value = parse_seed(seed)
    parse(list(where))
    model = load_model(model_dir)
    check_room(model.record, count, output)
    with progress_bar("generate", total=count, unit="persons") as bar:
        state = {"done": 0}

        def advance(stage: str, done: int, total: int) -> None:
            bar.advance(done - state["done"], stage)
            state["done"] = done

        result = model.sample(count, output, seed=seed_value, where=where, overwrite=overwrite, progress=advance)
    click.echo(f"synthetic store written: {output} ({plural(result.persons, 'person')})")
    rejected = {k: v for k, v in result.counts.items() if v and k.startswith("rejected")}
    if rejected:
        click.echo("  replaced by the safeguards: " + ", ".join(f"{k} {v:,}" for k, v in sorted(rejected.items())))
