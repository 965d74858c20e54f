"""``synthcohort validate omop TARGET``: OMOP CDM validity (keys, required fields, foreign keys, plausibility)."""

from __future__ import annotations

import click

from synthcohort.text import plural


@click.command("omop")
@click.argument("target")
@click.option("--schema", help="Schema to check in a database target.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(target: str, schema: str | None, as_json: bool) -> None:
    """Check TARGET (a cohort store, an OMOP DuckDB file, a CSV/Parquet folder or a database URL); exits non-zero
    on any violation."""
    import json

    from synthcohort.connectors.omop.validate import validate_omop
    from synthcohort.errors import ValidationFailed
    from synthcohort.secrets import mask_url

    result = validate_omop(target, schema=schema)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(f"{mask_url(result.target)}: {len(result.checks)} checks, {plural(result.violations, 'violation')}")
        for rule, n in sorted(result.by_rule().items()):
            click.echo(f"  {'ok  ' if n == 0 else 'FAIL'} {rule:<28}{n:>10,}")
        for check in result.failed():
            click.echo(f"       {check.name}: {check.violations:,}")
    if not result.ok:
        raise ValidationFailed(f"{result.violations:,} OMOP rule violations", "see the failed checks above")
