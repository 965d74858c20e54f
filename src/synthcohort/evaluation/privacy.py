"""Distance-based privacy figures against a held-out control set: copies, DCR, NNDR, membership, outliers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from synthcohort.evaluation.encoding import nearest
from synthcohort.evaluation.stats import auc

OUTLIER_SHARE = 0.01
OUTLIER_MARGIN = 0.5


@dataclass
class Distances:
    """Per-synthetic-patient distances kept for the plots (never written to the JSON)."""

    synth_to_train: np.ndarray
    synth_to_control: np.ndarray


def balanced_train(n_train: int, n_control: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a training subsample as large as the control set (DCR and MIA need equal sizes)."""
    if n_train <= n_control:
        return np.arange(n_train)
    return np.sort(rng.choice(n_train, size=n_control, replace=False))


def distance_figures(
    train: np.ndarray, control: np.ndarray, synth: np.ndarray, n_features: int, rng: np.random.Generator
) -> tuple[dict[str, Any], Distances]:
    """Exact copies, DCR share, NNDR and the distance membership-inference AUC."""
    d_full, _ = nearest(train, synth, n_features, k=2)
    exact = d_full[:, 0] <= 1e-12
    sub = train[balanced_train(len(train), len(control), rng)]
    d_tr, _ = nearest(sub, synth, n_features, k=2)
    d_ct, _ = nearest(control, synth, n_features, k=2)
    closer = np.mean(d_tr[:, 0] < d_ct[:, 0]) + 0.5 * np.mean(d_tr[:, 0] == d_ct[:, 0])
    m_tr, _ = nearest(synth, sub, n_features)
    m_ct, _ = nearest(synth, control, n_features)
    control_copies, _ = nearest(train, control, n_features)
    figures = {
        "n_train_compared": len(sub),
        "n_control": len(control),
        "n_synthetic": len(synth),
        "exact_copies": int(exact.sum()),
        "exact_copy_share": float(exact.mean()) if len(synth) else None,
        "control_exact_copy_share": float(np.mean(control_copies[:, 0] <= 1e-12)) if len(control) else None,
        "dcr_share": float(closer) if len(synth) and len(control) else None,
        "dcr_train_median": _median(d_tr[:, 0]),
        "dcr_control_median": _median(d_ct[:, 0]),
        "dcr_train_p05": _quantile(d_tr[:, 0], 0.05),
        "dcr_control_p05": _quantile(d_ct[:, 0], 0.05),
        "nndr_train_median": _median(_nndr(d_tr)),
        "nndr_control_median": _median(_nndr(d_ct)),
        "mia_auc": auc(-m_tr[:, 0], -m_ct[:, 0]) if len(synth) else None,
    }
    return figures, Distances(d_tr[:, 0], d_ct[:, 0])


def outlier_probe(
    train: np.ndarray, control: np.ndarray, synth: np.ndarray, n_features: int, margin: float = OUTLIER_MARGIN
) -> dict[str, Any]:
    """The 1 % most isolated training patients: is a synthetic patient closer to them than any real one?

    ``literal``: a synthetic patient lies closer than the isolated patient's nearest real neighbour.
    A fresh sample of the same population does that by chance for about half the isolated patients
    (the same probe on the control set's isolated patients shows the chance level), so the gated
    figure asks for a margin: closer than ``margin`` x that distance, which copies and near-copies
    reach and independent patients do not.
    """
    out: dict[str, Any] = {}
    for label, target, others in (("train", train, control), ("control", control, train)):
        if len(target) < 2 or len(synth) == 0:
            out[label] = {"isolated": 0, "reached": 0, "reached_literal": 0}
            continue
        d_self, _ = nearest(target, target, n_features, k=2)
        d_other, _ = nearest(others, target, n_features, k=1)
        nn_real = np.minimum(d_self[:, 1], d_other[:, 0])
        n_iso = max(1, int(round(OUTLIER_SHARE * len(target))))
        iso = np.argsort(-nn_real, kind="stable")[:n_iso]
        d_syn, _ = nearest(synth, target[iso], n_features, k=1)
        out[label] = {
            "isolated": n_iso,
            "reached": int((d_syn[:, 0] < margin * nn_real[iso]).sum()),
            "reached_literal": int((d_syn[:, 0] < nn_real[iso]).sum()),
            "nearest_real_median": _median(nn_real[iso]),
            "nearest_synthetic_median": _median(d_syn[:, 0]),
        }
    return {
        "isolated_reached": out["train"]["reached"],
        "isolated": out["train"]["isolated"],
        "control_isolated_reached": out["control"]["reached"],
        "isolated_reached_literal": out["train"]["reached_literal"],
        "control_isolated_reached_literal": out["control"]["reached_literal"],
        "margin": margin,
        "detail": out,
    }


def _nndr(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = d[:, 0] / d[:, 1]
    return np.where(d[:, 1] > 0, r, 0.0)


def _median(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else None


def _quantile(x: np.ndarray, q: float) -> float | None:
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if len(x) else None
