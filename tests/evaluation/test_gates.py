"""Gates: thresholds from the quality bar, overrides, warn band, and 'not measured' blocks."""

from __future__ import annotations

from typing import Any

from synthcohort.evaluation.gates import ALL_GATES, blocking_failures, evaluate_gates


def _figures(**privacy: Any) -> dict[str, Any]:
    base = {
        "exact_copies": 0,
        "dcr_share": 0.5,
        "mia_auc": 0.5,
        "singling_out": {"risk": 0.0, "risk_high": 0.03},
        "linkability": {"risk": 0.0, "risk_high": 0.03},
        "inference": {"risk": 0.0, "risk_high": 0.03},
        "outliers": {"isolated_reached": 0},
    }
    base.update(privacy)
    return {"privacy": base, "fidelity": {}, "utility": {}, "evidence": {}}


def test_defaults_are_the_quality_bar() -> None:
    assert ALL_GATES["dcr_share"].threshold == 0.55 and ALL_GATES["dcr_share"].warn == 0.60
    assert ALL_GATES["mia_auc"].threshold == 0.60
    assert ALL_GATES["inference"].threshold == 0.05 and ALL_GATES["inference_ci"].threshold == 0.09
    assert ALL_GATES["exact_copies"].threshold == 0


def test_clean_figures_pass_and_fidelity_targets_never_block() -> None:
    results = evaluate_gates(_figures())
    assert not blocking_failures(results)
    fidelity = [r for r in results if not r.blocking]
    assert fidelity and all(r.status == "not measured" for r in fidelity)


def test_warn_band_and_failure() -> None:
    results = {r.name: r for r in evaluate_gates(_figures(dcr_share=0.58))}
    assert results["dcr_share"].status == "warn"
    results = {r.name: r for r in evaluate_gates(_figures(dcr_share=0.61, exact_copies=3))}
    assert results["dcr_share"].status == "fail"
    assert {r.name for r in blocking_failures(list(results.values()))} == {"dcr_share", "exact_copies"}


def test_override_changes_threshold() -> None:
    figures = _figures(mia_auc=0.65)
    assert [r.name for r in blocking_failures(evaluate_gates(figures))] == ["mia_auc"]
    assert not blocking_failures(evaluate_gates(figures, {"mia_auc": 0.7}))


def test_unmeasured_privacy_blocks() -> None:
    results = evaluate_gates({"privacy": {"measured": False}, "fidelity": {}})
    failed = {r.name for r in blocking_failures(results)}
    assert "dcr_share" in failed and all(r.status == "not measured" for r in results if r.name in failed)
