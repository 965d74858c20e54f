"""FHIR validation cost per checker, on the Synthea 1k OMOP set exported as Bulk NDJSON.

    python bench/fhir_validate_bench.py [OMOP_CSV_DIR] [--reference-every 20]

CPU seconds (and resources per CPU second) of each part of ``validate fhir`` over every exported
resource: parse, the project's own rules, the fhir.resources models, the official R4 JSON schema
(the copy shipped in the package) compiled by jsonschema-rs (what ``validate fhir`` runs), and the
Python ``jsonschema`` package on every k-th resource (extrapolated), in one run; written to
bench/results/fhir_validate_bench.json. The machine is shared and noisy: the ratios are the figures
that count.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"
DEFAULT = SHARED / "data" / "synthea-omop-1k-split" / "csv"
SCHEMA = ROOT / "src" / "synthcohort" / "data" / "fhir.schema.json.gz"


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _export(csv: Path, work: Path) -> Path:
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.fhir.writer import write_fhir
    from synthcohort.connectors.omop.csv_source import read_csv_folder

    with CohortStore.building(work / "store.duckdb") as store:
        read_csv_folder(csv, store)
    with CohortStore.open(work / "store.duckdb") as store:
        write_fhir(store, work / "ndjson", fmt="ndjson", gz=True)
    return work / "ndjson"


def _parse(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*.ndjson.gz")):
        out.extend(orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--reference-every", type=int, default=20, help="Python jsonschema on every k-th resource")
    args = parser.parse_args()
    if not args.csv.exists():
        sys.exit(f"{args.csv} is absent: the shared test data is not laid beside the project")
    import jsonschema
    from fhir.resources.R4B import get_fhir_model_class

    from synthcohort.connectors.fhir.schema import R4Schema
    from synthcohort.connectors.fhir.validate import validate_fhir

    with tempfile.TemporaryDirectory() as tmp:
        folder = _export(args.csv, Path(tmp))
        parse_cpu, resources = _cpu(lambda: _parse(folder))
        n = len(resources)
        own_cpu, _ = _cpu(lambda: validate_fhir(folder, models=False, schema_check=False))
        models_cpu, _ = _cpu(lambda: [get_fhir_model_class(r["resourceType"]).model_validate(r) for r in resources])
        load_cpu, schema = _cpu(lambda: R4Schema.load(SCHEMA))
        compiled_cpu, errors = _cpu(lambda: sum(len(schema.errors(r)) for r in resources))
        with gzip.open(SCHEMA, "rb") as fh:
            definitions = json.loads(fh.read())["definitions"]
        reference = {
            t: jsonschema.Draft6Validator({"$ref": f"#/definitions/{t}", "definitions": definitions})
            for t in {r["resourceType"] for r in resources}
        }
        sample = resources[:: args.reference_every]
        ref_cpu, ref_errors = _cpu(lambda: sum(1 for r in sample for _ in reference[r["resourceType"]].iter_errors(r)))
        ref_cpu *= n / len(sample)
    assert errors == ref_errors == 0, (errors, ref_errors)
    rows = [
        ("gunzip + orjson parse", parse_cpu),
        ("own rules (incl. parse)", own_cpu),
        ("fhir.resources models", models_cpu),
        ("R4 schema, jsonschema-rs (+ load, compile)", compiled_cpu + load_cpu),
        (f"R4 schema, Python jsonschema (1/{args.reference_every}, scaled)", ref_cpu),
    ]
    print(f"{n:,} resources of the Synthea 1k export (Bulk NDJSON)")
    print(f"{'checker':<50}{'CPU s':>8}{'res/CPU s':>12}{'x parse':>9}")
    for name, cpu in rows:
        print(f"{name:<50}{cpu:>8.2f}{n / cpu:>12,.0f}{cpu / parse_cpu:>9.2f}")
    print(f"Python jsonschema / jsonschema-rs: {ref_cpu / (compiled_cpu + load_cpu):.0f}x the CPU")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    figures = {"resources": n, "cpu_seconds": {name: round(cpu, 3) for name, cpu in rows}}
    (out / "fhir_validate_bench.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
