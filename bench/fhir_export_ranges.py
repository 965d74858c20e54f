"""What the FHIR export holds from one person range to the next: resident memory and DuckDB's own memory by tag.

    python bench/fhir_export_ranges.py STORE --format bundle                   # every range, files written
    python bench/fhir_export_ranges.py STORE --format bundle --discard --persons 300000 --every 40

Runs FhirWriter in this process on a synthetic store (e.g. one kept by bench/export_scale.py --keep)
and prints, every --every ranges: the resident memory, DuckDB's memory by tag between ranges
(`duckdb_memory()`: BASE_TABLE is the store's blocks kept in the buffer pool, IN_MEMORY_TABLE the
range's temporary tables) and the highest DuckDB total seen during those ranges (sampled from a
second cursor every 50 ms), then the peak RSS and CPU seconds of the whole run. --persons exports the
first N persons only; --discard writes nothing (the files' bytes are counted and dropped), for stores
whose output would not fit the disk. Memory that grows with the ranges shows here range by range.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from synthcohort.cohort import CohortStore  # noqa: E402
from synthcohort.connectors.fhir import writer as fhir_writer  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def duckdb_mib(cur: Any) -> dict[str, float]:
    rows = cur.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0").fetchall()
    return {tag: round(used / 2**20, 1) for tag, used in rows}


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        pass


def _discarding_open(self: Any, name: str) -> Any:
    handle = self.files.get(name)
    if handle is None:
        handle = self.files[name] = (_Discard(), _Discard())
    return handle[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--format", dest="fmt", choices=fhir_writer.FORMATS, default="bundle")
    ap.add_argument("--chunk-size", type=int, help="persons per range (default: the writer's own)")
    ap.add_argument("--persons", type=int, help="export the first N persons only")
    ap.add_argument("--every", type=int, default=20, help="print every K ranges")
    ap.add_argument("--discard", action="store_true", help="write no files")
    args = ap.parse_args(argv)
    if args.discard:
        fhir_writer._Sink.open = _discarding_open  # type: ignore[method-assign]
    store = CohortStore.open(args.store)
    if args.persons:
        size = args.chunk_size or fhir_writer.CHUNK_PERSONS[args.fmt]
        ranges = store.person_ranges(size)[: -(-args.persons // size)]
        count = min(args.persons, store.person_count())
        store.person_ranges = lambda chunk_size=size: ranges  # type: ignore[method-assign]
        store.person_count = lambda: count  # type: ignore[method-assign]
    highest: dict[str, Any] = {"total": 0.0, "tags": {}}

    def sample(cur: Any) -> None:
        while True:
            tags = duckdb_mib(cur)
            if sum(tags.values()) > highest["total"]:
                highest.update(total=sum(tags.values()), tags=tags)
            time.sleep(0.05)

    threading.Thread(target=sample, args=(store.con.cursor(),), daemon=True).start()
    ranges_done = 0
    t0 = time.perf_counter()

    def progress(persons: int) -> None:
        nonlocal ranges_done
        ranges_done += 1
        if ranges_done % args.every == 0:
            between = duckdb_mib(store.con)
            print(
                f"range {ranges_done:5d}  rss {rss_mib():6.0f} MiB  duckdb {sum(between.values()):5.0f} MiB {between}"
                f"  highest {highest['total']:4.0f} MiB {highest['tags']}  {time.perf_counter() - t0:5.0f} s",
                flush=True,
            )
            highest.update(total=0.0, tags={})

    out = Path(tempfile.mkdtemp(prefix="fhir-ranges-", dir=Path(args.store).parent)) / "out"
    try:
        writer = fhir_writer.FhirWriter(store, fmt=args.fmt, chunk_size=args.chunk_size, progress=progress)
        print(f"after the writer's set-up  rss {rss_mib():.0f} MiB  duckdb {duckdb_mib(store.con)}", flush=True)
        writer.write(out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, wall = usage.ru_utime + usage.ru_stime, time.perf_counter() - t0
    print(f"{ranges_done} ranges: peak RSS {usage.ru_maxrss / 1024:.0f} MiB, CPU {cpu:.0f} s, wall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
