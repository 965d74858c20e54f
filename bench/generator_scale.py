"""How generating grows with the number of persons: time, peak memory and the slope, up to 1,000,000.

    python bench/generator_scale.py                          # 10k, 100k and 1,000,000 persons
    python bench/generator_scale.py --sizes 10000,50000      # other sizes
    python bench/generator_scale.py --validate               # also check the largest store (validate omop)

A model is fitted once on synthea-omop-1k-split from ../shared/data; then each size runs
`synthcohort generate` in a process of its own, so that each peak resident memory (from the
kernel's rusage of that child) is that run's alone. Reported per run: wall and CPU seconds,
peak RSS, persons per second, store size. Across runs: the time slope (least squares, seconds
per 100k persons) and two ratios that say whether the run scales: the CPU time per extra
person between the two largest sizes over that between the two smallest, and peak memory at
the largest size over the smallest (both about 1 when time is linear and memory flat).
Results go to bench/results/generator_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "synthea-omop-1k-split" / "csv"
RESULTS = ROOT / "bench" / "results"
SIZES = (10_000, 100_000, 1_000_000)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "synthcohort", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def fit_model(work: Path, seed: int) -> Path:
    cohort, model = work / "cohort.duckdb", work / "model"
    subprocess.run(_cli("extract", "omop", str(DATA), "-o", str(cohort)), check=True, env=_env(), capture_output=True)
    subprocess.run(
        _cli("fit", str(cohort), "-o", str(model), "--seed", str(seed)), check=True, env=_env(), capture_output=True
    )
    return model


def generate(model: Path, n: int, target: Path, seed: int) -> dict[str, float]:
    """One `synthcohort generate` in a child process; its own wall/CPU time and peak RSS (wait4)."""
    cmd = _cli("generate", str(model), "-n", str(n), "-o", str(target), "--seed", str(seed), "--overwrite")
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            err.seek(0)
            raise SystemExit(f"generate -n {n} failed ({child.returncode}): {err.read().decode()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "persons": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "persons_per_s": n / wall,
        "persons_per_cpu_s": n / cpu,
        "store_mib": target.stat().st_size / 2**20,
    }


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line through (x, y): slope and intercept."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return b, my - b * mx


def time_slopes(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Wall and CPU seconds per 100k persons, and the intercepts, of a least-squares line through the runs."""
    ns = [r["persons"] for r in runs]
    out: dict[str, float] = {}
    for key in ("wall_s", "cpu_s"):
        b, a = slope(ns, [r[key] for r in runs])
        out[f"{key[:-2]}_s_per_100k"] = b * 100_000
        out[f"{key[:-2]}_intercept_s"] = a
    return out


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    out = time_slopes(runs)
    if len(runs) > 2:
        # CPU seconds per extra person between the two largest sizes over that between the two smallest.
        def marginal(a: dict[str, float], b: dict[str, float]) -> float:
            return (b["cpu_s"] - a["cpu_s"]) / (b["persons"] - a["persons"])

        out["cpu_marginal_ratio_top_over_bottom"] = marginal(runs[-2], runs[-1]) / marginal(runs[0], runs[1])
    out["peak_rss_ratio_largest_over_smallest"] = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    return out


def validate(target: Path) -> str:
    res = subprocess.run(_cli("validate", "omop", str(target)), env=_env(), capture_output=True, text=True)
    return res.stdout.splitlines()[0] if res.stdout else res.stderr[-500:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated numbers of persons")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", help="folder for the model and stores (default: a new temporary folder)")
    ap.add_argument("--validate", action="store_true", help="run 'validate omop' on the largest store")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic stores")
    args = ap.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="genscale-"))
    work.mkdir(parents=True, exist_ok=True)
    model = fit_model(work, args.seed)
    runs: list[dict[str, float]] = []
    report: dict[str, object] = {"runs": runs}
    for n in sizes:
        target = work / f"synthetic-{n}.duckdb"
        runs.append(generate(model, n, target, args.seed))
        print(json.dumps({k: round(v, 1) for k, v in runs[-1].items()}), flush=True)
        if args.validate and n == sizes[-1]:
            report["validate_largest"] = validate(target)
            print(report["validate_largest"], flush=True)
        if not args.keep:
            target.unlink()
    if len(runs) > 1:
        summary = summarise(runs)
        report["summary"] = summary
        print(json.dumps({k: round(v, 2) for k, v in summary.items()}), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generator_scale.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
