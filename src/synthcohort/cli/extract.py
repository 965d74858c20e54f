"""``synthcohort extract omop|fhir SOURCE -o COHORT.duckdb``: read a real cohort into a cohort store."""

from __future__ import annotations

import click

from synthcohort.cli.groups import SubcommandGroup

# subcommand -> module under synthcohort.cli defining a click command called ``command``
SUBCOMMANDS: dict[str, str] = {
    "omop": "extract_omop",
    "fhir": "extract_fhir",
}


@click.group("extract", cls=SubcommandGroup, subcommands=SUBCOMMANDS)
def command() -> None:
    """Read a cohort from an OMOP CDM source or FHIR R4 data into a cohort store."""
