"""Quality of the native engine over several seeds, measured by the project's own evaluation.

    python bench/generator_quality.py [COHORT.duckdb] [--seeds 1 2 3] [--min-leaf 11] [--floor] [--out DIR]

For each seed: fit on COHORT (the control split is made from the seed), sample as many persons
as the training set holds, evaluate against the training and control stores. Prints the figures
of quality-bar sections 2 and 3 per seed with their mean, and which gates failed. With --floor,
two floors come first. The fidelity floor: two random halves of the real cohort against each
other, what chance alone gives at that size (the quality bar's floor). The privacy floor: an
unseen real sample in place of the synthetic one, what the attacks find by chance at these sizes.
Without COHORT, the synthea-omop-1k-split cohort of ../shared/data is extracted first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data" / "synthea-omop-1k-split" / "csv"
RESULTS = ROOT / "bench" / "results"

from synthcohort.evaluation.api import EvaluationConfig, EvaluationResult, evaluate  # noqa: E402

# (label, path into the evaluation figures)
FIGURES: list[tuple[str, tuple[str, ...]]] = [
    ("age_tvd", ("fidelity", "demographics", "age_tvd")),
    ("race_tvd", ("fidelity", "demographics", "race_tvd")),
    ("prev_r", ("fidelity", "prevalence", "pearson_r")),
    ("prev_missing", ("fidelity", "prevalence", "share_missing")),
    ("cooc_inf", ("fidelity", "cooccurrence", "informative", "mean_abs_delta_phi")),
    ("cooc_all", ("fidelity", "cooccurrence", "all", "mean_abs_delta_phi")),
    ("meas_ks", ("fidelity", "measurements", "median_ks")),
    ("gap_ks", ("fidelity", "visit_gaps", "ks")),
    ("obs_len_ks", ("fidelity", "observation_length", "ks")),
    ("year_tvd", ("fidelity", "calendar", "event_year_tvd")),
    ("tstr/trtr", ("utility", "tstr_over_trtr")),
    ("evid_in_ci", ("evidence", "share_inside_real_ci")),
    ("dcr", ("privacy", "dcr_share")),
    ("mia", ("privacy", "mia_auc")),
    ("single", ("privacy", "singling_out", "risk")),
    ("single_hi", ("privacy", "singling_out", "risk_high")),
    ("link", ("privacy", "linkability", "risk")),
    ("infer", ("privacy", "inference", "risk")),
    ("infer_hi", ("privacy", "inference", "risk_high")),
]


def _get(figures: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = figures
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def _domain_ratios(figures: dict[str, Any]) -> dict[str, float]:
    """Events per patient, per domain: ratio of means and KS statistic."""
    per = figures.get("fidelity", {}).get("events_per_patient", {})
    held = {d: v for d, v in per.items() if v.get("ratio_of_means") is not None}  # domains the real cohort has
    return {f"ratio_{d}": float(v["ratio_of_means"]) for d, v in held.items()} | {
        f"ks_{d}": float(v["ks"]) for d, v in held.items() if v.get("ks") is not None
    }


def _extract(folder: Path) -> Path:
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.omop.csv_source import read_csv_folder

    path = folder / "cohort.duckdb"
    with CohortStore.building(path) as store:
        read_csv_folder(DATA, store)
        store.set_meta("kind", "real")
    return path


def run_seed(cohort: Path, work: Path, seed: int, min_leaf: int) -> dict[str, Any]:
    from synthcohort.generator import engine_class

    t0 = time.perf_counter()
    model = engine_class("native")(seed=seed, min_leaf=min_leaf)
    model.fit(cohort)
    synth = work / f"synthetic-{seed}.duckdb"
    result = model.sample(int(model.record["persons_learned"]), synth, seed=seed, overwrite=True)
    seconds = time.perf_counter() - t0
    rec = model.record
    ev = evaluate(rec["train_store"], synth, rec["control_store"], EvaluationConfig(seed=seed))
    per_secret = ev.figures["privacy"]["inference"]["per_secret"]
    gains = {s: round(v["main"] - v["control"], 3) for s, v in per_secret.items() if "control" in v}
    return {"seed": seed, "persons": result.persons, "fit_sample_s": seconds, **figures_of(ev), "inference_gain": gains}


def figures_of(ev: EvaluationResult) -> dict[str, Any]:
    """The headline figures of an evaluation, flat, with the gates that failed."""
    row: dict[str, Any] = {label: _get(ev.figures, path) for label, path in FIGURES}
    row |= _domain_ratios(ev.figures)
    row["failed_gates"] = [g.name for g in ev.gates if g.status == "fail"]
    return row


def floor(cohort: Path, work: Path, seed: int) -> dict[str, Any]:
    """The same figures for two random halves of the real cohort: what chance alone gives at this size."""
    import shutil

    from synthcohort.generator.split import split_cohort

    copy = work / "floor" / "cohort.duckdb"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(cohort, copy)
    halves = split_cohort(copy, 0.5, seed)
    ev = evaluate(halves.train, halves.control, None, EvaluationConfig(seed=seed))
    row = {label: _get(ev.figures, path) for label, path in FIGURES if path[0] != "privacy"}
    return {"seed": seed, "persons": halves.train_persons, **row, **_domain_ratios(ev.figures)}


def privacy_floor(cohort: Path, work: Path, seed: int) -> dict[str, Any]:
    """The privacy figures with an unseen real sample in place of the synthetic one.

    The control split is made as for a fit (20 %); what is left is halved: one half plays the
    training set, the other the "synthetic" set. Real patients that were never learned from carry
    no trace of the training set, so what the attacks find here is chance at these sizes.
    """
    import shutil

    from synthcohort.generator.split import split_cohort

    folder = work / "privacy-floor" / str(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(cohort, folder / "cohort.duckdb")
    first = split_cohort(folder / "cohort.duckdb", 0.2, seed)
    learn = folder / "learn.duckdb"
    shutil.move(first.train, learn)
    halves = split_cohort(learn, 0.5, seed)
    ev = evaluate(halves.train, halves.control, first.control, EvaluationConfig(seed=seed))
    row = {label: _get(ev.figures, path) for label, path in FIGURES if path[0] == "privacy"}
    return {"seed": seed, "persons": halves.train_persons, **row}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cohort", nargs="?", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--min-leaf", type=int, default=11)
    ap.add_argument("--floor", action="store_true", help="also measure two real halves against each other")
    ap.add_argument("--out", type=Path, default=None, help="folder for the models and stores (default: a temp dir)")
    args = ap.parse_args(argv)
    work = args.out or Path(tempfile.mkdtemp(prefix="genquality-"))
    work.mkdir(parents=True, exist_ok=True)
    cohort = args.cohort
    if cohort is None:
        if not DATA.is_dir():
            print(f"skipped: {DATA} is absent")
            return 0
        cohort = _extract(work)
    if args.floor:
        floors = [floor(cohort, work, seed) for seed in args.seeds]
        mean_floor = {k: statistics.fmean(r[k] for r in floors if r[k] is not None) for k in floors[0] if k != "seed"}
        print("floor (two real halves)", json.dumps({k: round(v, 3) for k, v in mean_floor.items()}), flush=True)
        privacy = [privacy_floor(cohort, work, seed) for seed in args.seeds]
        mean_privacy = {
            k: statistics.fmean(r[k] for r in privacy if r[k] is not None) for k in privacy[0] if k != "seed"
        }
        print("privacy floor (unseen real)", json.dumps({k: round(v, 3) for k, v in mean_privacy.items()}), flush=True)
    rows = []
    for seed in args.seeds:
        row = run_seed(cohort, work, seed, args.min_leaf)
        rows.append(row)
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "inference_gain"}
        print(json.dumps(shown), flush=True)
    numeric = [k for k in rows[0] if k != "seed" and isinstance(rows[0][k], (int, float))]
    mean = {k: statistics.fmean(r[k] for r in rows if r[k] is not None) for k in numeric}
    print("mean", json.dumps({k: round(v, 3) for k, v in mean.items()}))
    failed = sorted({g for r in rows for g in r["failed_gates"]})
    print("gates failed in at least one seed:", ", ".join(failed) or "none")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generator_quality.json").write_text(json.dumps({"runs": rows, "mean": mean}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
