"""``synthcohort extract fhir PATH [--vocab SOURCE] -o COHORT.duckdb``: FHIR R4 Bundles / Bulk NDJSON into a store."""

from __future__ import annotations

import click

from synthcohort.text import plural


@click.command("fhir")
@click.argument("path", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Cohort store to create.")
@click.option(
    "--vocab",
    help="OMOP vocabulary: an Athena CSV folder (CONCEPT, CONCEPT_RELATIONSHIP), a DuckDB file holding them, "
    "or a database URL (postgresql://user@host/db; password from SYNTHCOHORT_DB_PASSWORD, PGPASSWORD or ~/.pgpass).",
)
@click.option("--vocab-schema", help="Schema holding the vocabulary when --vocab is a database URL.")
@click.option(
    "--skip-tolerance",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Faulty records (parse errors, orphans, other FHIR versions...) accepted before failing.",
)
@click.option("--allow-skips", is_flag=True, help="Accept any number of faulty records (they are still counted).")
@click.option("--line-cap", type=click.IntRange(min=1024), help="Longest NDJSON line read, in bytes (default 64 MiB).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the run report as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an existing cohort store.")
def command(
    path: str,
    output: str,
    vocab: str | None,
    vocab_schema: str | None,
    skip_tolerance: int,
    allow_skips: bool,
    line_cap: int | None,
    report_path: str | None,
    overwrite: bool,
) -> None:
    """Read FHIR R4 from PATH (a Bundle or resource file, NDJSON, a Bulk export folder, a zip/tar) into a store.
    Names, identifiers, contact details and free text are never read; FHIR ids are replaced by fresh ones.
    Unsupported resource types are counted but do not count against the skip tolerance."""
    import datetime as dt
    import json
    from pathlib import Path

    from synthcohort import __version__
    from synthcohort.cli.progress import progress_bar
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.fhir.reader import check_tolerance, read_fhir
    from synthcohort.connectors.fhir.sources import Limits
    from synthcohort.connectors.omop.database_vocabulary import open_vocabulary
    from synthcohort.outputs import atomic_file

    if vocab_schema and not vocab:
        raise click.UsageError("--vocab-schema goes with --vocab")
    vocabulary = open_vocabulary(vocab, vocab_schema) if vocab else None
    limits = Limits(line_bytes=line_cap) if line_cap else Limits()
    tolerance = 2**62 if allow_skips else skip_tolerance
    try:
        with (
            CohortStore.building(output, overwrite=overwrite) as store,
            progress_bar("extract fhir", unit="resources") as bar,
        ):
            report = read_fhir(path, store, vocabulary=vocabulary, limits=limits, progress=bar.advance)
            store.set_meta("kind", "real")
            store.set_meta("source_kind", "fhir")
            store.set_meta("created_by", f"synthcohort {__version__}")
            store.set_meta("created_at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
            _print(report.to_dict(), vocabulary_given=vocabulary is not None)
            if report_path:
                with atomic_file(Path(report_path)) as fh:
                    fh.write(json.dumps(report.to_dict(), indent=2).encode())
            check_tolerance(report, tolerance)
    finally:
        if vocabulary is not None:
            vocabulary.close()
    click.echo(f"cohort store written: {output} ({plural(report.rows.get('person', 0), 'person')})")


def _print(report: dict[str, object], vocabulary_given: bool) -> None:
    read, files, faults = (_count(report, key) for key in ("read", "files", "faults"))
    click.echo(
        f"read {plural(read, 'record')} from {plural(files, 'file')}: "
        f"{report['mapped']:,} mapped, {report['skipped']:,} skipped ({plural(faults, 'fault')})"
    )
    by_type = report["by_type"]
    assert isinstance(by_type, dict)
    click.echo(f"  {'resource type':<26}{'read':>9}{'mapped':>9}  skipped by reason")
    for rtype, c in by_type.items():
        skipped = ", ".join(f"{r} {n:,}" for r, n in c["skipped"].items())
        click.echo(f"  {rtype:<26}{c['read']:>9,}{c['mapped']:>9,}  {skipped}")
    rows = report["rows"]
    assert isinstance(rows, dict)
    click.echo("  rows per OMOP table: " + (", ".join(f"{t} {n:,}" for t, n in rows.items()) or "none"))
    coverage = report["coverage"]
    assert isinstance(coverage, dict)
    if coverage:
        click.echo(
            "  codes mapped to standard concepts: "
            + ", ".join(f"{t} {c['share']:.1%} of {c['codes']:,}" for t, c in coverage.items())
            + ("" if vocabulary_given else " (no --vocab given: codes are kept as local concepts, concept_id 0)")
        )
    notes = report["notes"]
    assert isinstance(notes, dict)
    if notes:
        click.echo("  notes: " + ", ".join(f"{k} {v:,}" for k, v in notes.items()))
    errors = report["server_errors"]
    assert isinstance(errors, dict)
    if errors:
        click.echo("  server errors in the export: " + ", ".join(f"{k} {v:,}" for k, v in errors.items()))
    for warning in report["warnings"]:  # type: ignore[attr-defined]
        click.echo(f"  warning: {warning}")


def _count(report: dict[str, object], key: str) -> int:
    value = report[key]
    assert isinstance(value, int)
    return value
