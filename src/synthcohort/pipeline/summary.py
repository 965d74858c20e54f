"""The metrics summary of a run record: the headline figures the gates and targets look at, nothing per patient."""

from __future__ import annotations

import math
from typing import Any


def metrics_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """Sizes plus every figure a gate or a fidelity target reads (values only; the report has the rest)."""
    from synthcohort.evaluation.gates import ALL_GATES, lookup

    headline: dict[str, float | None] = {}
    for name, spec in ALL_GATES.items():
        value = lookup(figures, spec.path)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(float(value)):
            headline[name] = None
        else:
            headline[name] = round(float(value), 6)
    return {"sizes": figures.get("sizes", {}), "figures": headline}
