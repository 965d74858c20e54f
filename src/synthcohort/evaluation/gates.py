"""Gates: the quality bar's privacy thresholds (§3) and fidelity targets (§2), configurable, judged on figures."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GateSpec:
    name: str
    label: str
    path: str  # dotted path into the result figures
    op: str  # "<=" or ">=" or "between"
    threshold: float
    warn: float | None = None
    high: float | None = None  # upper bound for "between"
    blocking: bool = True  # a failing blocking gate makes evaluate exit non-zero


PRIVACY_GATES: tuple[GateSpec, ...] = (
    GateSpec("exact_copies", "Exact copies of a training patient", "privacy.exact_copies", "<=", 0),
    GateSpec("dcr_share", "DCR share (closer to training than to control)", "privacy.dcr_share", "<=", 0.55, 0.60),
    GateSpec("mia_auc", "Membership-inference AUC (distance attack)", "privacy.mia_auc", "<=", 0.60),
    GateSpec("singling_out", "Singling-out risk", "privacy.singling_out.risk", "<=", 0.05),
    GateSpec("singling_out_ci", "Singling-out risk, upper 95 % bound", "privacy.singling_out.risk_high", "<=", 0.09),
    GateSpec("linkability", "Linkability risk", "privacy.linkability.risk", "<=", 0.05),
    GateSpec("linkability_ci", "Linkability risk, upper 95 % bound", "privacy.linkability.risk_high", "<=", 0.09),
    GateSpec("inference", "Inference risk", "privacy.inference.risk", "<=", 0.05),
    GateSpec("inference_ci", "Inference risk, upper 95 % bound", "privacy.inference.risk_high", "<=", 0.09),
    GateSpec("isolated_reached", "Isolated real patients approached", "privacy.outliers.isolated_reached", "<=", 0),
)

FIDELITY_TARGETS: tuple[GateSpec, ...] = (
    GateSpec("gender_tvd", "Gender TVD", "fidelity.demographics.gender_tvd", "<=", 0.05, blocking=False),
    GateSpec("race_tvd", "Race TVD", "fidelity.demographics.race_tvd", "<=", 0.05, blocking=False),
    GateSpec("age_tvd", "Age TVD (5-year bins)", "fidelity.demographics.age_tvd", "<=", 0.12, blocking=False),
    GateSpec("prevalence_r", "Prevalence Pearson r", "fidelity.prevalence.pearson_r", ">=", 0.95, blocking=False),
    GateSpec("prevalence_missing", "Concepts missing", "fidelity.prevalence.share_missing", "<=", 0.10, blocking=False),
    GateSpec(
        "cooc_informative",
        "Co-occurrence |Δphi|, informative concepts",
        "fidelity.cooccurrence.informative.mean_abs_delta_phi",
        "<=",
        0.06,
        blocking=False,
    ),
    GateSpec(
        "cooc_all",
        "Co-occurrence |Δphi|, all",
        "fidelity.cooccurrence.all.mean_abs_delta_phi",
        "<=",
        0.10,
        blocking=False,
    ),
    GateSpec(
        "measurement_ks", "Measurement values, median KS", "fidelity.measurements.median_ks", "<=", 0.10, blocking=False
    ),
    GateSpec("visit_gap_ks", "Visit gaps KS", "fidelity.visit_gaps.ks", "<=", 0.10, blocking=False),
    GateSpec("tstr_trtr", "TSTR / TRTR AUC", "utility.tstr_over_trtr", ">=", 0.90, blocking=False),
    GateSpec(
        "evidence_inside_ci",
        "Effect estimates inside the real CI",
        "evidence.share_inside_real_ci",
        ">=",
        1.0,
        blocking=False,
    ),
)

ALL_GATES = {g.name: g for g in (*PRIVACY_GATES, *FIDELITY_TARGETS)}


@dataclass(frozen=True)
class GateResult:
    name: str
    label: str
    value: float | None
    op: str
    threshold: float
    status: str  # pass | warn | fail | not measured
    blocking: bool


def lookup(figures: dict[str, Any], path: str) -> Any:
    node: Any = figures
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def judge(spec: GateSpec, value: Any, threshold: float | None = None) -> GateResult:
    limit = spec.threshold if threshold is None else threshold
    if value is None or (isinstance(value, float) and math.isnan(value)):
        status = "not measured"
    else:
        v = float(value)
        ok = v <= limit if spec.op == "<=" else v >= limit
        status = "pass" if ok else "fail"
        if status == "fail" and spec.warn is not None and v <= spec.warn:
            status = "warn"
    return GateResult(
        spec.name, spec.label, None if value is None else float(value), spec.op, limit, status, spec.blocking
    )


def evaluate_gates(figures: dict[str, Any], overrides: dict[str, float] | None = None) -> list[GateResult]:
    """Judge every gate; a privacy gate that cannot be measured (no control set) counts as failed."""
    overrides = overrides or {}
    return [judge(spec, lookup(figures, spec.path), overrides.get(spec.name)) for spec in ALL_GATES.values()]


def blocking_failures(results: list[GateResult]) -> list[GateResult]:
    return [r for r in results if r.blocking and r.status in ("fail", "not measured")]


def as_dicts(results: list[GateResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
