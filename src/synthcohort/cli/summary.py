"""What a finished run prints: where the outputs, the report and the run record are."""

from __future__ import annotations

import click

from synthcohort.pipeline.runner import RunResult
from synthcohort.text import plural


def print_run(result: RunResult) -> None:
    persons = result.persons
    click.echo(
        f"run {result.status}: {plural(persons.get('real', 0), 'real person')} in, "
        f"{plural(persons.get('synthetic', 0), 'synthetic person')} out"
    )
    for target in result.outputs:
        click.echo(f"  output: {target}")
    if result.report is not None:
        click.echo(f"  report: {result.report}")
    click.echo(f"  run record: {result.manifest}")
