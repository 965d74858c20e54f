"""Known cases on synthea-omop-1k-split: copies fail the gates, unseen real patients pass, shuffling collapses."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.evaluation.api import EvaluationResult, evaluate
from synthcohort.evaluation.report import render_html

pytestmark = pytest.mark.shared_data


@cache
def _evaluate(real: Path, synth: Path) -> EvaluationResult:
    return evaluate(real, synth)


def test_copy_of_training_is_caught(eval_stores: dict[str, Path]) -> None:
    r = _evaluate(eval_stores["real"], eval_stores["copy"])
    p = r.figures["privacy"]
    assert p["exact_copy_share"] > 0.99
    assert p["dcr_share"] > 0.95
    assert p["mia_auc"] > 0.95
    assert p["outliers"]["isolated_reached"] == p["outliers"]["isolated"] >= 1
    for attack in ("singling_out", "linkability", "inference"):
        assert p[attack]["risk_low"] > 0.3, attack
    gained = p["inference"]["most_gained"]
    assert len(gained) == 5 and [g["gain"] for g in gained] == sorted((g["gain"] for g in gained), reverse=True)
    assert gained[-1]["gain"] > 0.2 and all(g["main"] > 0.95 for g in gained)
    html = render_html(r)
    assert all(f"<td>{g['attribute']}" in html for g in gained)
    named = [g for g in gained if g["attribute"].startswith("has_")]
    assert all(g.get("name") and f"({g['name']})" in html for g in named)  # concepts shown with their names
    assert not r.passed
    assert {"exact_copies", "dcr_share", "mia_auc"} <= {g.name for g in r.failed}


def test_unseen_real_patients_pass(eval_stores: dict[str, Path]) -> None:
    r = _evaluate(eval_stores["real"], eval_stores["third"])
    assert r.stores.training == eval_stores["train"].parent / "train.duckdb"
    assert r.stores.control == eval_stores["control"].parent / "control.duckdb"
    p = r.figures["privacy"]
    assert p["exact_copies"] == 0
    assert 0.4 <= p["dcr_share"] <= 0.6
    assert 0.4 <= p["mia_auc"] <= 0.6
    for attack in ("singling_out", "linkability", "inference"):
        assert p[attack]["risk"] <= 0.05, attack
        assert p[attack]["risk_low"] == 0.0, attack
    assert r.passed, [g for g in r.failed]
    f = r.figures["fidelity"]
    assert f["prevalence"]["pearson_r"] > 0.95
    assert f["cooccurrence"]["informative"]["mean_abs_delta_phi"] < 0.12
    assert r.figures["utility"]["tstr_over_trtr"] > 0.9


def test_shuffled_concepts_collapse(eval_stores: dict[str, Path]) -> None:
    good = _evaluate(eval_stores["real"], eval_stores["third"])
    bad = _evaluate(eval_stores["real"], eval_stores["shuffled"])
    g_cooc = good.figures["fidelity"]["cooccurrence"]
    b_cooc = bad.figures["fidelity"]["cooccurrence"]
    assert b_cooc["informative"]["mean_abs_delta_phi"] > 2 * g_cooc["informative"]["mean_abs_delta_phi"]
    assert b_cooc["all"]["mean_abs_delta_phi"] > 2 * g_cooc["all"]["mean_abs_delta_phi"]
    assert bad.figures["utility"]["tstr_auc"] < good.figures["utility"]["tstr_auc"] - 0.2
    assert bad.figures["utility"]["tstr_over_trtr"] < 0.75
    # the shuffle keeps every patient's number of events: those figures must not move
    for dom in ("condition", "drug", "measurement"):
        assert bad.figures["fidelity"]["events_per_patient"][dom]["ks"] == 0.0


def test_cli_exit_code_and_accepted_risk(eval_stores: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["evaluate", str(eval_stores["real"]), str(eval_stores["copy"])]
    failed = runner.invoke(cli, [*args, "--json", str(tmp_path / "m.json")])
    assert failed.exit_code == 7, failed.output
    assert "privacy gates failed" in failed.output
    report = tmp_path / "r.html"
    ok = runner.invoke(
        cli, [*args, "--report", str(report), "--json", str(tmp_path / "a.json"), "--accept-risk", "test fixture"]
    )
    assert ok.exit_code == 0, ok.output
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["accepted_risk"] == "test fixture"
    assert doc["gates_passed"] is False
    html = report.read_text()
    assert "test fixture" in html
    assert "anonymous" not in html.lower()


def test_cli_passes_and_report_is_self_contained(eval_stores: dict[str, Path], tmp_path: Path) -> None:
    report, metrics = tmp_path / "r.html", tmp_path / "m.json"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(eval_stores["train"]),
            str(eval_stores["third"]),
            "--control",
            str(eval_stores["control"]),
            "--report",
            str(report),
            "--json",
            str(metrics),
        ],
    )
    assert result.exit_code == 0, result.output
    html = report.read_text()
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    assert html.count("data:image/png;base64,") >= 8
    assert "anonymous" not in html.lower()
    doc = json.loads(metrics.read_text())
    assert doc["stores"]["control"] == "control.duckdb"
    assert {g["name"] for g in doc["gates"]} >= {"exact_copies", "dcr_share", "inference_ci"}
    assert doc["privacy"]["singling_out"]["main"]["n"] > 100
    assert "anonymous" not in metrics.read_text().lower()


def test_cli_refuses_bad_arguments(eval_stores: dict[str, Path]) -> None:
    runner = CliRunner()
    base = ["evaluate", str(eval_stores["real"]), str(eval_stores["third"])]
    assert runner.invoke(cli, base).exit_code == 2
    assert runner.invoke(cli, [*base, "--json", "x.json", "--exposure", "1"]).exit_code == 2
    assert runner.invoke(cli, [*base, "--json", "x.json", "--gate", "nope=1"]).exit_code == 2
    missing = runner.invoke(cli, ["evaluate", "missing.duckdb", str(eval_stores["third"]), "--json", "x.json"])
    assert missing.exit_code == 3
