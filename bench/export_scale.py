"""How exporting grows with the number of persons: peak memory, time and the slope, per output format.

    python bench/export_scale.py                             # 20k and 100k persons
    python bench/export_scale.py --sizes 20000,100000,300000 # other sizes
    python bench/export_scale.py --work /big/disk --keep     # reuse the model and stores there
    python bench/export_scale.py --formats omop-duckdb-overwrite,omop-duckdb-append  # into an existing file
    python bench/export_scale.py --sizes 20000 --formats omop-postgres,omop-postgres-append  # PostgreSQL

A model is fitted once on synthea-omop-1k-split from ../shared/data and one synthetic store is
generated per size (kept in --work and reused when it is there). Then every export runs in a
process of its own, so that each peak resident memory (from the kernel's rusage of that child)
is that export's alone:

    synthcohort export STORE fhir OUT --format ndjson
    synthcohort export STORE fhir OUT --format bundle
    synthcohort export STORE omop duckdb:///OUT.duckdb
    synthcohort export STORE omop OUT --format csv

and, when named in --formats, into an existing DuckDB file (first written by an export not measured):

    synthcohort export STORE omop duckdb:///OUT.duckdb --overwrite
    synthcohort export STORE omop duckdb:///OUT.duckdb --append

or into a PostgreSQL schema (--pg, default the local test server), new or first written by an export not
measured (the schema, pgbench_export_scale_*, is dropped after each run):

    synthcohort export STORE omop postgresql://... --schema S            # omop-postgres
    synthcohort export STORE omop postgresql://... --schema S --append   # omop-postgres-append

Reported per export: wall and CPU seconds, peak RSS, output size. Per format across sizes: the
time slope (least squares, seconds per 100k persons), peak RSS at the largest size over the
smallest (about 1 when memory is flat in n) and the peak projected linearly to 1,000,000 persons.
Results go to bench/results/export_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.generator_scale import DATA, RESULTS, _cli, _env, fit_model, slope, time_slopes  # noqa: E402

SIZES = (20_000, 100_000)
FORMATS: dict[str, tuple[str, ...]] = {
    "fhir-ndjson": ("fhir", "{out}", "--format", "ndjson"),
    "fhir-bundle": ("fhir", "{out}", "--format", "bundle"),
    "omop-duckdb": ("omop", "duckdb:///{out}.duckdb"),
    "omop-csv": ("omop", "{out}", "--format", "csv"),
    "omop-duckdb-overwrite": ("omop", "duckdb:///{out}.duckdb", "--overwrite"),
    "omop-duckdb-append": ("omop", "duckdb:///{out}.duckdb", "--append"),
    "omop-postgres": ("omop", "{pg}", "--schema", "{schema}"),
    "omop-postgres-append": ("omop", "{pg}", "--schema", "{schema}", "--append"),
}
PG = "postgresql://postgres@127.0.0.1:5432/test"

DEFAULT_FORMATS = ("fhir-ndjson", "fhir-bundle", "omop-duckdb", "omop-csv")
# Exports into a target (DuckDB file or PostgreSQL schema) that the named export of the same store wrote before.
INTO_EXISTING = {
    "omop-duckdb-overwrite": "omop-duckdb",
    "omop-duckdb-append": "omop-duckdb",
    "omop-postgres-append": "omop-postgres",
}


def store_for(work: Path, model: Path, n: int, seed: int) -> Path:
    target = work / f"synthetic-{n}.duckdb"
    if not target.exists():
        cmd = _cli("generate", str(model), "-n", str(n), "-o", str(target), "--seed", str(seed))
        subprocess.run(cmd, check=True, env=_env(), capture_output=True)
    return target


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _schema(out: Path) -> str:
    return "pgbench_export_scale_" + "".join(c if c.isalnum() else "_" for c in out.name.lower())


def export(store: Path, fmt: str, out: Path, pg: str = PG) -> dict[str, Any]:
    """One `synthcohort export` in a child process; its own wall/CPU time and peak RSS (wait4).
    A failed export is reported with its error (the first line of its stderr), not raised."""
    args = [a.format(out=out, pg=pg, schema=_schema(out)) for a in FORMATS[fmt]]
    cmd = _cli("export", str(store), *args)
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        error = err.read().decode().strip().splitlines()[:1] if code else []
    written = out.with_suffix(".duckdb") if fmt.startswith("omop-duckdb") else out
    return {
        **({"failed": f"exit {code}: {error[0] if error else ''}"} if code else {}),
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "output_mib": _size(written) / 2**20 if written.exists() else 0.0,
    }


def _remove(out: Path, fmt: str, pg: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.with_suffix(".duckdb").unlink(missing_ok=True)
    if fmt.startswith("omop-postgres"):
        import sqlalchemy as sa

        engine = sa.create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as con:
            con.execute(sa.text(f'DROP SCHEMA IF EXISTS "{_schema(out)}" CASCADE'))
        engine.dispose()


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Time slope, peak-RSS ratio (largest over smallest) and peak RSS projected to 1,000,000 persons
    (a straight line through the peaks), over the exports that succeeded."""
    runs = [r for r in runs if "failed" not in r]
    if len(runs) < 2:
        return {}
    out = time_slopes(runs)
    b, a = slope([r["persons"] for r in runs], [r["peak_rss_mib"] for r in runs])
    out["peak_rss_mib_per_100k"] = b * 100_000
    out["peak_rss_projected_1m_mib"] = a + b * 1_000_000
    out["peak_rss_ratio_largest_over_smallest"] = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    return out


def _round(value: Any, digits: int) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated numbers of persons")
    ap.add_argument("--formats", default=",".join(DEFAULT_FORMATS), help="comma-separated, of " + ", ".join(FORMATS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg", default=PG, help=f"PostgreSQL URL for the omop-postgres formats (default {PG})")
    ap.add_argument("--work", help="folder for the model, stores and outputs (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic stores (outputs are always removed)")
    args = ap.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    formats = args.formats.split(",")
    if unknown := set(formats) - set(FORMATS):
        ap.error(f"unknown formats: {', '.join(sorted(unknown))}")
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="exportscale-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model" if (work / "model").exists() else fit_model(work, args.seed)
    runs: dict[str, list[dict[str, Any]]] = {f: [] for f in formats}
    report: dict[str, object] = {"runs": runs}
    for n in sizes:
        store = store_for(work, model, n, args.seed)
        for fmt in formats:
            out = work / f"out-{fmt}-{n}"
            _remove(out, fmt, args.pg)
            if fmt in INTO_EXISTING and "failed" in export(store, INTO_EXISTING[fmt], out, args.pg):
                raise SystemExit(f"the existing target for {fmt} could not be written")
            run = {"persons": n, **export(store, fmt, out, args.pg)}
            _remove(out, fmt, args.pg)
            runs[fmt].append(run)
            print(json.dumps({"format": fmt, **{k: _round(v, 1) for k, v in run.items()}}), flush=True)
        if not args.keep:
            store.unlink()
    if len(sizes) > 1:
        summary = {fmt: summarise(r) for fmt, r in runs.items()}
        report["summary"] = summary
        for fmt, s in summary.items():
            print(json.dumps({"format": fmt, **{k: _round(v, 2) for k, v in s.items()}}), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export_scale.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
