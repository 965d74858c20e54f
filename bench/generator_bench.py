"""Native engine vs SDV's HMASynthesizer on the same five OMOP tables, in one run.

    python bench/generator_bench.py                 # native vs SDV: fit/sample time, peak memory, fidelity
    python bench/generator_bench.py --seeds 1 2 3   # the same, means over seeds (each seed its own split)
    python bench/generator_bench.py --skip-sdv      # native only

The last table says, figure by figure, which engine came nearer its goal: lower for distances
and risks (a negative risk counts as 0), higher for prevalence r, TSTR/TRTR and study estimates,
nearer 1 for ratios of means, nearer 0.5 for the DCR share and the membership AUC.

Each engine runs in its own process so that its peak resident memory is its own (the 1,000,000-person
run is bench/generator_scale.py). The cohort is
synthea-omop-1k-split from ../shared/data, cut to the five tables SDV's free multi-table
synthesizer accepts (person, visit_occurrence, condition_occurrence, drug_exposure, measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "synthea-omop-1k-split" / "csv"
RESULTS = ROOT / "bench" / "results"
HIGHER_IS_BETTER = ("prev_r", "tstr/trtr", "evid_in_ci")
NEAR_HALF = ("dcr", "mia")
RISKS = ("single", "single_hi", "link", "infer", "infer_hi")
KEEP = ("person", "visit_occurrence", "condition_occurrence", "drug_exposure", "measurement")


def _five_table_cohort(folder: Path) -> Path:
    import duckdb

    from synthcohort import cdm
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.omop.csv_source import read_csv_folder

    path = folder / "cohort5.duckdb"
    with CohortStore.building(path) as store:
        read_csv_folder(DATA, store)
        store.set_meta("kind", "real")
    con = duckdb.connect(str(path))
    for name in cdm.CLINICAL_TABLES:
        if name not in KEEP:
            con.execute(f'DELETE FROM "{name}"')
    con.close()
    return path


def worker(engine: str, cohort: Path, work: Path, n: int | None, seed: int) -> dict[str, float]:
    """Fit (unless a model is there) and sample in this process; report times and peak memory."""
    from synthcohort.generator import engine_class, load_model

    out: dict[str, float] = {}
    model_dir = work / f"model-{engine}-{seed}"
    t0, c0 = time.perf_counter(), time.process_time()
    if not model_dir.exists():
        model = engine_class(engine)(seed=seed)
        model.fit(cohort)
        model.save(model_dir)
        out["fit_s"] = time.perf_counter() - t0
        out["fit_cpu_s"] = time.process_time() - c0
    model = load_model(model_dir)
    n = n or int(model.record["persons_learned"])
    t1, c1 = time.perf_counter(), time.process_time()
    target = work / f"synthetic-{engine}-{seed}.duckdb"
    model.sample(n, target, seed=seed, overwrite=True)
    out["sample_s"] = time.perf_counter() - t1
    out["sample_cpu_s"] = time.process_time() - c1
    out["persons"] = n
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["store_mib"] = target.stat().st_size / 2**20
    return out


def _run_worker(engine: str, cohort: Path, work: Path, n: int | None, seed: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", engine, "--cohort", str(cohort), "--work", str(work)]
    cmd += ["--seed", str(seed)] + (["-n", str(n)] if n else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def shortfall(figure: str, value: float) -> float:
    """How far a figure is from its goal (0 is the goal reached)."""
    if figure in HIGHER_IS_BETTER:
        return -value
    if figure in NEAR_HALF:
        return abs(value - 0.5)
    if figure.startswith("ratio_"):
        return abs(value - 1.0)
    if figure in RISKS:
        return max(value, 0.0)
    return value


def compare(native: dict[str, float], sdv: dict[str, float]) -> dict[str, str]:
    """Per figure of both engines: which one came nearer its goal (within 0.001: a tie)."""
    out = {}
    for figure in native:
        if figure not in sdv or figure.endswith(("_s", "_mib")) or figure == "persons":
            continue
        gap = shortfall(figure, native[figure]) - shortfall(figure, sdv[figure])
        out[figure] = "tie" if abs(gap) < 1e-3 else ("native" if gap < 0 else "sdv")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker")
    ap.add_argument("--cohort")
    ap.add_argument("--work")
    ap.add_argument("-n", type=int)
    ap.add_argument("--seed", type=int, default=1, help="(worker) the seed of this run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--skip-sdv", action="store_true")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.cohort), Path(args.work), args.n, args.seed)))
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "bench"))
    from generator_quality import figures_of

    from synthcohort.evaluation.api import EvaluationConfig, evaluate

    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    work = Path(tempfile.mkdtemp(prefix="genbench-"))
    cohort = _five_table_cohort(work)
    report: dict[str, Any] = {}
    for engine in ("native", *(() if args.skip_sdv else ("sdv",))):
        runs = []
        for seed in args.seeds:
            figures = _run_worker(engine, cohort, work, None, seed)
            manifest = json.loads((work / f"model-{engine}-{seed}" / "model.json").read_text())
            rec = manifest["record"]
            synth = work / f"synthetic-{engine}-{seed}.duckdb"
            ev = evaluate(rec["train_store"], synth, rec["control_store"], EvaluationConfig(seed=seed))
            figures |= {k: v for k, v in figures_of(ev).items() if isinstance(v, float)}
            runs.append(figures)
            print(engine, seed, json.dumps({k: round(v, 3) for k, v in figures.items()}), flush=True)
        common = set.intersection(*(set(r) for r in runs))
        mean = {k: statistics.fmean(r[k] for r in runs) for k in runs[0] if k in common}
        mean["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        report[engine] = mean
        report[f"{engine}_runs"] = runs
    if "sdv" in report:
        nat, ref = report["native"], report["sdv"]
        ratio = (ref["fit_s"] + ref["sample_s"]) / (nat["fit_s"] + nat["sample_s"])
        cpu = (ref["fit_cpu_s"] + ref["sample_cpu_s"]) / (nat["fit_cpu_s"] + nat["sample_cpu_s"])
        report["ratio"] = {"sdv_over_native_fit_plus_sample": ratio, "sdv_over_native_cpu": cpu}
        report["nearer_goal"] = compare(nat, ref)
        print(f"\nmeans over seeds {args.seeds}\n{'figure':<18}{'native':>9}{'sdv':>9}  nearer its goal")
        for figure, who in report["nearer_goal"].items():
            print(f"{figure:<18}{nat[figure]:>9.3f}{ref[figure]:>9.3f}  {who}")
        print(f"native is {ratio:.1f}x faster than SDV (fit + sample, wall), {cpu:.1f}x in CPU time")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generator_bench.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
