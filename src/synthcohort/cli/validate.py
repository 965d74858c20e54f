"""``synthcohort validate omop|fhir TARGET``: check an output against the standard's rules."""

from __future__ import annotations

import click

from synthcohort.cli.groups import SubcommandGroup

# subcommand -> module under synthcohort.cli defining a click command called ``command``
SUBCOMMANDS: dict[str, str] = {
    "omop": "validate_omop",
    "fhir": "validate_fhir",
}


@click.group("validate", cls=SubcommandGroup, subcommands=SUBCOMMANDS)
def command() -> None:
    """Check written data (or a cohort store) against the rules of OMOP CDM v5.4 or FHIR R4."""
