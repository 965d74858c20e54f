"""Time `evaluate` on 1,000 real vs 1,000 synthetic patients (plus 1,000 control) and print the figures.

Run:  PYTHONPATH=src python bench/evaluate_bench.py [--csv ../shared/data/synthea-omop-1k-split/csv]

The 1,000-patient stores are bootstrap samples (fresh ids) of synthea-omop-1k-split, so the timing is
that of a 1,000 vs 1,000 evaluation; the privacy figures of resampled patients mean nothing here.
Target (quality bar, issue 5): under a minute on two cores, report included.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from synthcohort import cdm
from synthcohort.cohort import CohortStore
from synthcohort.connectors.omop.csv_source import read_csv_folder
from synthcohort.evaluation.api import evaluate
from synthcohort.evaluation.report import write_report

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "synthea-omop-1k-split" / "csv"


def _read(store: CohortStore, sql: str, mapping: pa.Table | None = None) -> pa.Table:
    cur = store.con.cursor()
    try:
        if mapping is not None:
            cur.register("mapping", mapping)
        return cur.sql(sql).to_arrow_table()
    finally:
        cur.close()


def bootstrap_store(src: CohortStore, dst: Path, n: int, seed: int, meta: dict[str, str]) -> Path:
    """n persons drawn with replacement from ``src``, each with a fresh person id and fresh event ids."""
    ids = np.asarray(_read(src, "SELECT person_id FROM person").column(0).to_numpy())
    old = np.random.default_rng(seed).choice(ids, size=n, replace=True)
    mapping = pa.table({"old_id": pa.array(old, pa.int64()), "new_id": pa.array(np.arange(1, n + 1), pa.int64())})
    with CohortStore.building(dst, overwrite=True) as out:
        for table in cdm.CLINICAL_TABLES:
            pk = cdm.table(table).primary_key
            replace = "m.new_id AS person_id" + (f", row_number() OVER () AS {pk}" if pk and pk != "person_id" else "")
            sql = f'SELECT t.* REPLACE ({replace}) FROM "{table}" t JOIN mapping m ON t.person_id = m.old_id'
            out.append(table, _read(src, sql, mapping))
        for table in cdm.VOCABULARY_TABLES:
            out.append(table, _read(src, f'SELECT * FROM "{table}"'))
        for key, value in meta.items():
            out.set_meta(key, value)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with CohortStore.building(folder / "source.duckdb") as store:
            read_csv_folder(args.csv, store)
        with CohortStore.open(folder / "source.duckdb") as src:
            train = bootstrap_store(src, folder / "train.duckdb", args.n, 1, {"kind": "train"})
            control = bootstrap_store(src, folder / "control.duckdb", args.n, 2, {"kind": "control"})
            synth = bootstrap_store(src, folder / "synth.duckdb", args.n, 3, {"kind": "synthetic"})
        stages: list[tuple[str, float, float]] = []

        def mark(stage: str) -> None:
            stages.append((stage, time.perf_counter(), time.process_time()))

        t0, c0 = time.perf_counter(), time.process_time()
        result = evaluate(train, synth, control, progress=mark)
        t1 = time.perf_counter()
        mark("report")
        write_report(result, folder / "report.html", folder / "metrics.json")
        t2, c2 = time.perf_counter(), time.process_time()
        stages.append(("end", t2, c2))
        size = (folder / "report.html").stat().st_size
    print(f"evaluate {args.n} vs {args.n} (+{args.n} control): figures {t1 - t0:.1f} s, report {t2 - t1:.1f} s")
    print(f"total {t2 - t0:.1f} s wall, {c2 - c0:.1f} s CPU (target < 60 s on 2 cores); report {size / 1e6:.1f} MB")
    for (name, w, c), (_, w2, c2_) in zip(stages, stages[1:], strict=False):
        print(f"  {name:<16} {w2 - w:6.1f} s wall {c2_ - c:6.1f} s CPU")


if __name__ == "__main__":
    main()
