"""``synthcohort export COHORT.duckdb omop|fhir TARGET``: write a cohort store out."""

from __future__ import annotations

import click

from synthcohort.cli.groups import SubcommandGroup

# subcommand -> module under synthcohort.cli defining a click command called ``command``
SUBCOMMANDS: dict[str, str] = {
    "omop": "export_omop",
    "fhir": "export_fhir",
}


@click.group("export", cls=SubcommandGroup, subcommands=SUBCOMMANDS)
@click.argument("cohort", type=click.Path(dir_okay=False))
@click.pass_context
def command(ctx: click.Context, cohort: str) -> None:
    """Write the cohort store COHORT (real or synthetic) as OMOP CDM tables or FHIR R4 resources."""
    ctx.ensure_object(dict)["cohort"] = cohort


def cohort_path(ctx: click.Context) -> str:
    """The COHORT argument given to ``export``, for its subcommands."""
    return str(ctx.find_object(dict)["cohort"])  # type: ignore[index]
