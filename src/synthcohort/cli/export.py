"""``synthcohort export COHORT.duckdb omop|fhir TARGET``: write a cohort store out."""

from __future__ import annotations

import click


@click.group("export")
def command() -> None:
    """Write a cohort store (real or synthetic) as OMOP CDM tables or FHIR R4 resources."""
