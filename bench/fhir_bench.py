"""FHIR read and write speed and peak memory on the 200-bundle set, side by side with plain baselines.

    python bench/fhir_bench.py [BUNDLES_DIR] [--repeat 3]

Read: parse + map into a cohort store (resources/s, wall and CPU) against gunzip + orjson parse alone
with the cyclic GC paused (the floor any reader pays). Write: Bulk NDJSON export (MB/s) against a plain copy
of the same bytes. Each phase runs in its own process so its peak RSS is its own. The machine is
shared and noisy: the ratios are the figures that count.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import multiprocessing as mp
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DEFAULT = ROOT.parent / "shared" / "data" / "synthea-fhir-r4-bundles" / "bundles"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_only(folder: str, _: str) -> dict[str, Any]:
    cpu, start = time.process_time(), time.perf_counter()
    gc.disable()
    n = 0
    for path in sorted(Path(folder).glob("*.json.gz")):
        n += len(orjson.loads(gzip.decompress(path.read_bytes())).get("entry", []))
    gc.enable()
    return {
        "resources": n,
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "peak_mib": _peak_mib(),
    }


def read_store(folder: str, work: str) -> dict[str, Any]:
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.fhir.reader import read_fhir

    store_path = Path(work) / "bench.duckdb"
    store_path.unlink(missing_ok=True)
    cpu, start = time.process_time(), time.perf_counter()
    with CohortStore.building(store_path) as store:
        report = read_fhir(folder, store)
    seconds = time.perf_counter() - start
    return {
        "resources": sum(report.read.values()),
        "seconds": seconds,
        "cpu": time.process_time() - cpu,
        "peak_mib": _peak_mib(),
    }


def write_ndjson(_: str, work: str) -> dict[str, Any]:
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.fhir.writer import write_fhir

    out = Path(work) / "out"
    shutil.rmtree(out, ignore_errors=True)
    cpu, start = time.process_time(), time.perf_counter()
    with CohortStore.open(Path(work) / "bench.duckdb") as store:
        report = write_fhir(store, out)
    seconds = time.perf_counter() - start
    return {
        "resources": sum(report.written.values()),
        "bytes": report.bytes,
        "seconds": seconds,
        "cpu": time.process_time() - cpu,
        "peak_mib": _peak_mib(),
    }


def plain_copy(_: str, work: str) -> dict[str, Any]:
    src, dst = Path(work) / "out", Path(work) / "copy"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    size = sum(p.stat().st_size for p in src.iterdir())
    cpu, start = time.process_time(), time.perf_counter()
    for p in sorted(src.iterdir()):
        shutil.copyfile(p, dst / p.name)
    seconds = time.perf_counter() - start
    return {"bytes": size, "seconds": seconds, "cpu": time.process_time() - cpu, "peak_mib": _peak_mib()}


def _child(fn: Callable[[str, str], dict[str, Any]], folder: str, work: str, queue: Any) -> None:
    queue.put(fn(folder, work))


def run(fn: Callable[[str, str], dict[str, Any]], folder: str, work: str) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, folder, work, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return dict(result)


def median_of(fn: Callable[[str, str], dict[str, Any]], folder: str, work: str, repeat: int) -> dict[str, Any]:
    runs = [run(fn, folder, work) for _ in range(repeat)]
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    best["seconds_all"] = [round(r["seconds"], 3) for r in runs]
    best["seconds"] = statistics.median(r["seconds"] for r in runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="?", default=str(DEFAULT))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.bundles).is_dir():
        sys.exit(f"no bundle folder at {args.bundles}")
    with tempfile.TemporaryDirectory() as work:
        parse = median_of(parse_only, args.bundles, work, args.repeat)
        read = median_of(read_store, args.bundles, work, args.repeat)
        write = median_of(write_ndjson, args.bundles, work, args.repeat)
        copy = median_of(plain_copy, args.bundles, work, args.repeat)
    figures = {
        "parse_only_resources_per_s": round(parse["resources"] / parse["seconds"]),
        "read_resources_per_s": round(read["resources"] / read["seconds"]),
        # CPU seconds (DuckDB's threads included): the figures a busy shared machine disturbs least
        "parse_only_resources_per_cpu_s": round(parse["resources"] / parse["cpu"]),
        "read_resources_per_cpu_s": round(read["resources"] / read["cpu"]),
        "read_vs_parse_only": round(parse["seconds"] / read["seconds"], 3),
        "read_vs_parse_only_cpu": round(parse["cpu"] / read["cpu"], 3),
        "read_peak_mib": round(read["peak_mib"], 1),
        "parse_only_peak_mib": round(parse["peak_mib"], 1),
        "write_resources_per_s": round(write["resources"] / write["seconds"]),
        "write_mb_per_s": round(write["bytes"] / write["seconds"] / 1e6, 1),
        "copy_mb_per_s": round(copy["bytes"] / copy["seconds"] / 1e6, 1),
        "write_vs_copy": round(copy["seconds"] / write["seconds"], 4),
        "write_vs_copy_cpu": round(copy["cpu"] / write["cpu"], 4),
        "write_peak_mib": round(write["peak_mib"], 1),
        "runs": {"parse": parse, "read": read, "write": write, "copy": copy},
    }
    text = json.dumps(figures, indent=2)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fhir_bench.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
