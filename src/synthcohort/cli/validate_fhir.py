"""``synthcohort validate fhir PATH``: FHIR R4 validity (fhir.resources models, the official R4 JSON schema
shipped with the tool or given with --schema, references, ids, labels)."""

from __future__ import annotations

import click

from synthcohort.text import plural


@click.command("fhir")
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Check the model of every k-th resource only (the project's own checks still see all).",
)
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Check against this FHIR R4 JSON schema (fhir.schema.json, .json.gz or HL7's fhir.schema.json.zip) "
    "instead of the official R4 schema shipped with the tool; every resource and Bundle is checked.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(path: str, sample: int, schema_path: str | None, as_json: bool) -> None:
    """Check FHIR R4 files under PATH (NDJSON, Bundles); exits non-zero on any error, each shown with its
    location (file:line or file entry N)."""
    import json

    from synthcohort.connectors.fhir.validate import validate_fhir
    from synthcohort.errors import ValidationFailed

    result = validate_fhir(path, model_sample=sample, schema=schema_path)
    errors = sum(result.error_counts.values())
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(f"{path}: {plural(sum(result.counts.values()), 'resource')}, {plural(errors, 'error')}")
        for rtype, n in sorted(result.counts.items()):
            click.echo(f"  {rtype:<28}{n:>10,}")
        click.echo(
            f"  checked by the fhir.resources models: {result.model_checked:,}; "
            f"by the R4 JSON schema: {result.schema_checked:,}"
        )
        for where, message in result.errors:
            click.echo(f"  {where}: {message}")
        if len(result.errors) < errors:
            click.echo(f"  ... {errors - len(result.errors):,} more")
    if not result.ok:
        raise ValidationFailed(f"{plural(errors, 'FHIR error')} in {path}", "see the list above")
