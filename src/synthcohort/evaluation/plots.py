"""Report figures drawn with matplotlib (Agg) and embedded as base64 PNG: no file, no network."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import numpy as np

from synthcohort.evaluation import evidence as ev
from synthcohort.evaluation import fidelity as fi
from synthcohort.evaluation.features import CohortData

REAL, SYNTH, CONTROL = "#1f5fa8", "#d9822b", "#6b8e23"


def _legend(ax: Any, **options: Any) -> None:
    """A legend only where something is labelled (an empty group draws no line to name)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _safe(draw: Callable[[], str | None]) -> str | None:
    try:
        return draw()
    except (ValueError, KeyError, IndexError):  # an empty or degenerate input: no plot rather than no report
        return None


def _bars(ax: Any, labels: list[str], a: list[float], b: list[float], legend: bool = True) -> None:
    x = np.arange(len(labels))
    ax.bar(x - 0.2, a, 0.4, label="real", color=REAL)
    ax.bar(x + 0.2, b, 0.4, label="synthetic", color=SYNTH)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of patients")
    if legend:
        _legend(ax, frameon=False)


def demographics(real: CohortData, synth: CohortData) -> str | None:
    def draw() -> str:
        fig, _ = _figure(9.5, 3.4)
        fig.clf()
        axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
        ra, sa = fi.age_bins(real), fi.age_bins(synth)
        bins = sorted(set(ra.tolist()) | set(sa.tolist()))
        _bars(
            axes[0],
            [f"{b}-{b + 4}" for b in bins],
            [float(np.mean(ra == b)) for b in bins],
            [float(np.mean(sa == b)) for b in bins],
        )
        axes[0].set_title("Age at end of observation (5-year bins)", fontsize=10)
        names = {8507: "male", 8532: "female"}
        g = sorted(set(real.persons["gender"]) | set(synth.persons["gender"]))
        _bars(
            axes[1],
            [names.get(int(v), str(v)) for v in g],
            [float((real.persons["gender"] == v).mean()) for v in g],
            [float((synth.persons["gender"] == v).mean()) for v in g],
            legend=False,
        )
        axes[1].set_title("Gender", fontsize=10)
        return _png(fig)

    return _safe(draw)


def prevalence_scatter(points: dict[str, list[Any]]) -> str | None:
    def draw() -> str:
        fig, ax = _figure(4.6, 4.2)
        ax.scatter(points["real"], points["synthetic"], s=12, alpha=0.7, color=SYNTH, edgecolor="none")
        ax.plot([0, 1], [0, 1], color="#888", lw=1, ls="--")
        ax.set_xlabel("prevalence, real")
        ax.set_ylabel("prevalence, synthetic")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title("Per-concept patient prevalence", fontsize=10)
        return _png(fig)

    return _safe(draw)


def cooccurrence(block: dict[str, Any]) -> str | None:
    if "phi_real" not in block:
        return None

    def draw() -> str:
        fig, _ = _figure(9.5, 4.2)
        fig.clf()
        axes = fig.subplots(1, 2)
        for ax, key, title in zip(axes, ("phi_real", "phi_synthetic"), ("real", "synthetic"), strict=True):
            im = ax.imshow(np.array(block[key]), vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_title(f"phi, {title}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=axes, shrink=0.8)
        return _png(fig)

    return _safe(draw)


def measurement_grid(real: CohortData, synth: CohortData, k: int = 6) -> str | None:
    concepts = list(real.measurement_values)[:k]
    if not concepts:
        return None

    def draw() -> str:
        fig, _ = _figure(9.5, 5.0)
        fig.clf()
        axes = fig.subplots(2, 3).ravel()
        for ax, c in zip(axes, concepts, strict=False):
            a, b = real.measurement_values[c], synth.measurement_values.get(c, np.array([]))
            both = np.concatenate([a, b])
            bins = np.histogram_bin_edges(both, bins=25) if len(both) else 10
            ax.hist(a, bins=bins, density=True, alpha=0.55, color=REAL, label="real")
            if len(b):
                ax.hist(b, bins=bins, density=True, alpha=0.55, color=SYNTH, label="synthetic")
            ax.set_title(real.concept_names.get(c, c)[:38], fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes[len(concepts) :]:
            ax.axis("off")
        _legend(axes[0], frameon=False, fontsize=7)
        return _png(fig)

    return _safe(draw)


def ecdf(pairs: dict[str, np.ndarray], xlabel: str, title: str, log: bool = False) -> str | None:
    def draw() -> str:
        fig, ax = _figure(4.6, 3.4)
        for (label, values), color in zip(pairs.items(), (REAL, SYNTH, CONTROL), strict=False):
            v = np.sort(values[np.isfinite(values)])
            if len(v):
                ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", color=color, label=label)
        if log:
            ax.set_xscale("symlog")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("cumulative share")
        ax.set_title(title, fontsize=10)
        _legend(ax, frameon=False)
        return _png(fig)

    return _safe(draw)


def calendar(real: CohortData, synth: CohortData) -> str | None:
    def draw() -> str:
        fig, ax = _figure(9.5, 3.0)
        for data, color, label in ((real, REAL, "real"), (synth, SYNTH, "synthetic")):
            s = data.event_years
            ax.plot(s.index, s.to_numpy() / max(s.sum(), 1), color=color, label=label)
        ax.set_xlabel("event year")
        ax.set_ylabel("share of events")
        _legend(ax, frameon=False)
        return _png(fig)

    return _safe(draw)


def km_curves(real: CohortData, synth: CohortData, study: dict[str, Any]) -> str | None:
    def draw() -> str:
        from lifelines import KaplanMeierFitter

        fig, ax = _figure(6.4, 3.8)
        for data, color, label in ((real, REAL, "real"), (synth, SYNTH, "synthetic")):
            t = ev.study_table(data, study["exposure"], study["outcome"])
            for exposed, ls in ((1, "-"), (0, "--")):
                part = t[t["exposed"] == exposed]
                if len(part) < 2:
                    continue
                km = KaplanMeierFitter().fit(part["time"], part["outcome"])
                sf = km.survival_function_
                ax.step(
                    sf.index,
                    sf.iloc[:, 0],
                    where="post",
                    color=color,
                    ls=ls,
                    label=f"{label}, {'exposed' if exposed else 'unexposed'}",
                )
        ax.set_xlabel("years from start of observation")
        ax.set_ylabel("free of outcome")
        ax.set_title(f"{study['exposure_name'][:30]} → {study['outcome_name'][:30]}", fontsize=9)
        _legend(ax, frameon=False, fontsize=8)
        return _png(fig)

    return _safe(draw)


def forest(studies: list[dict[str, Any]], key: str = "odds_ratio") -> str | None:
    rows = [(s, s[key]) for s in studies if s[key]["real"] is not None]
    if not rows:
        return None

    def draw() -> str:
        fig, ax = _figure(8.5, 0.9 + 0.55 * len(rows))
        labels = []
        for i, (s, e) in enumerate(rows):
            y = len(rows) - i
            for est, dy, color in ((e["real"], 0.12, REAL), (e["synthetic"], -0.12, SYNTH)):
                if est is None:
                    continue
                ax.plot([est["low"], est["high"]], [y + dy, y + dy], color=color, lw=2)
                ax.plot(est["estimate"], y + dy, "o", color=color)
            labels.append(f"{s['exposure_name'][:28]} → {s['outcome_name'][:28]}")
        ax.axvline(1, color="#888", lw=1, ls="--")
        ax.set_xscale("log")
        ax.set_yticks(range(len(rows), 0, -1), labels, fontsize=8)
        ax.set_xlabel(
            "odds ratio (95 % CI), adjusted for age and sex" if key == "odds_ratio" else "hazard ratio (95 % CI)"
        )
        ax.plot([], [], color=REAL, lw=2, label="real")
        ax.plot([], [], color=SYNTH, lw=2, label="synthetic")
        _legend(ax, frameon=False, fontsize=8, loc="lower right")
        return _png(fig)

    return _safe(draw)


def distances(to_train: np.ndarray, to_control: np.ndarray) -> str | None:
    def draw() -> str:
        fig, ax = _figure(6.4, 3.4)
        both = np.concatenate([to_train, to_control])
        bins = np.histogram_bin_edges(both[np.isfinite(both)], bins=30)
        ax.hist(to_train, bins=bins, alpha=0.6, color=REAL, label="to nearest training patient")
        ax.hist(to_control, bins=bins, alpha=0.6, color=CONTROL, label="to nearest control patient")
        ax.set_xlabel("distance of each synthetic patient (Gower)")
        ax.set_ylabel("synthetic patients")
        _legend(ax, frameon=False)
        return _png(fig)

    return _safe(draw)
