"""Write the evaluation as one self-contained HTML file (inline CSS, plots as data URIs) and as JSON."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from synthcohort.evaluation import plots
from synthcohort.evaluation.api import EvaluationResult
from synthcohort.evaluation.features import CohortData
from synthcohort.text import plural


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f} %"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("synthcohort.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["pct"] = _pct
    env.filters["plural"] = plural  # {{ n | plural("patient") }}: "1 patient", "1,234 patients"
    return env


def _plots(result: EvaluationResult) -> dict[str, Any]:
    train: CohortData | None = result.data.get("training")
    synth: CohortData | None = result.data.get("synthetic")
    control = result.data.get("control")
    if train is None or synth is None:
        return {}
    fid = result.figures["fidelity"]
    gaps = {"real": train.visit_gaps, "synthetic": synth.visit_gaps}
    obs = {"real": plots.fi.obs_length_days(train) / 365.25, "synthetic": plots.fi.obs_length_days(synth) / 365.25}
    d2t = {"real": train.diag_to_treat, "synthetic": synth.diag_to_treat}
    if control is not None:
        obs["control"] = plots.fi.obs_length_days(control) / 365.25
    studies = result.figures["evidence"]["studies"]
    out: dict[str, Any] = {
        "demographics": plots.demographics(train, synth),
        "prevalence": plots.prevalence_scatter(fid["prevalence"]["points"]),
        "cooc_informative": plots.cooccurrence(fid["cooccurrence"]["informative"]),
        "cooc_all": plots.cooccurrence(fid["cooccurrence"]["all"]),
        "measurements": plots.measurement_grid(train, synth),
        "visit_gaps": plots.ecdf(gaps, "days between consecutive visits", "Time between visits", log=True),
        "diag_to_treat": plots.ecdf(d2t, "days from diagnosis to next drug", "Diagnosis to treatment", log=True),
        "obs_length": plots.ecdf(obs, "years", "Observation length"),
        "calendar": plots.calendar(train, synth),
        "forest_or": plots.forest(studies, "odds_ratio"),
        "forest_hr": plots.forest(studies, "hazard_ratio"),
        "km": [plots.km_curves(train, synth, s) for s in _distinct_outcomes(studies)[:4]],
        "distances": None,
    }
    if result.distances is not None:
        out["distances"] = plots.distances(result.distances.synth_to_train, result.distances.synth_to_control)
    return out


def _distinct_outcomes(studies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for s in studies:
        key = tuple(s["outcome"])
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def render_html(result: EvaluationResult) -> str:
    doc = result.to_dict()
    template = _environment().get_template("report.html.j2")
    return template.render(r=doc, plots=_plots(result), failed=[g.name for g in result.failed])


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(result: EvaluationResult, html: str | Path | None = None, json: str | Path | None = None) -> None:
    """Write the HTML report and/or the JSON figures, each atomically."""
    if json is not None:
        _atomic_write(Path(json), result.to_json())
    if html is not None:
        _atomic_write(Path(html), render_html(result).encode("utf-8"))
