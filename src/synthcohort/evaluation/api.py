"""The evaluation entry point: ``evaluate(real, synth, control, config) -> EvaluationResult``."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from synthcohort import __version__
from synthcohort.cohort import CohortStore
from synthcohort.errors import CohortTooSmallError, InputError
from synthcohort.evaluation import attacks, evidence, features, fidelity, gates, utility
from synthcohort.evaluation.encoding import Encoder, patient_table
from synthcohort.evaluation.gates import GateResult
from synthcohort.evaluation.privacy import Distances, balanced_train, distance_figures, outlier_probe
from synthcohort.text import plural

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
MIN_PERSONS = 10
N_ATTACK_CONCEPTS = 10


@dataclass
class EvaluationConfig:
    """What to measure and how strictly; every threshold defaults to the quality bar."""

    target: str | None = None
    exposure: list[str] | None = None
    outcome: list[str] | None = None
    gate_overrides: dict[str, float] = field(default_factory=dict)
    accept_risk: str | None = None
    seed: int = 0
    n_singling_out: int = 2000


@dataclass
class StorePaths:
    """Which stores play which part, and why (the resolution rule is written into the report)."""

    real: Path
    synthetic: Path
    training: Path
    control: Path | None
    notes: list[str]


@dataclass
class EvaluationResult:
    figures: dict[str, Any]
    gates: list[GateResult]
    stores: StorePaths
    accept_risk: str | None
    data: dict[str, features.CohortData] = field(default_factory=dict, repr=False)
    distances: Distances | None = field(default=None, repr=False)

    @property
    def failed(self) -> list[GateResult]:
        return gates.blocking_failures(self.gates)

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "synthcohort_version": __version__,
            "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "stores": {
                "real": self.stores.real.name,
                "synthetic": self.stores.synthetic.name,
                "training": self.stores.training.name,
                "control": self.stores.control.name if self.stores.control else None,
                "resolution": self.stores.notes,
            },
            "gates": gates.as_dicts(self.gates),
            "gates_passed": self.passed,
            "accepted_risk": self.accept_risk,
            **self.figures,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def _meta_path(synth: Path, value: str | None) -> Path | None:
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else (synth.parent / p)


def resolve_stores(real: str | Path, synth: str | Path, control: str | Path | None = None) -> StorePaths:
    """Decide the training and control stores.

    Rule: a control named on the command line wins; otherwise the synthetic store's ``control_store``
    meta key. The training side is REAL when REAL is itself a training split (meta kind=train) or when
    the synthetic store names no training split; otherwise (REAL is the whole cohort, which contains
    the control patients) the synthetic store's ``train_store`` is used, so that no control patient is
    counted as a training patient.
    """
    real_p, synth_p = Path(real), Path(synth)
    notes: list[str] = []
    with CohortStore.open(synth_p) as s:
        meta = s.meta()
    with CohortStore.open(real_p) as r:
        real_kind = r.meta().get("kind", "real")
    train_meta = _meta_path(synth_p, meta.get("train_store"))
    control_p = Path(control) if control else _meta_path(synth_p, meta.get("control_store"))
    if control:
        notes.append("control set: named on the command line")
    elif control_p is not None:
        if control_p.is_file():
            notes.append("control set: found from the synthetic store's control_store")
        else:
            notes.append(f"control set: {control_p.name} named by the synthetic store is missing")
            control_p = None
    else:
        notes.append("no control set: privacy figures that need one are not measured")
    training = real_p
    if real_kind != "train" and train_meta is not None and train_meta.is_file():
        training = train_meta
        notes.append("training side: the synthetic store's train_store (REAL holds the control patients too)")
    else:
        notes.append("training side: REAL")
    if not control:
        _check_split(control_p, meta.get("control_fingerprint"))
    if training == train_meta:
        _check_split(training, meta.get("train_fingerprint"))
    return StorePaths(real_p, synth_p, training, control_p, notes)


def _check_split(path: Path | None, fingerprint: str | None) -> None:
    """A split store found through the synthetic store must be the one its model learned beside."""
    from synthcohort.generator.split import store_fingerprint

    if path is None or not fingerprint or store_fingerprint(path) == fingerprint:
        return
    raise InputError(
        f"{path.name} is no longer the split the model was fitted with (a fit with the same seed and holdout on "
        "a changed cohort rewrites it)",
        "fit the model again and generate again, or name the training and control stores yourself",
    )


def _load(path: Path, name: str, measurement_concepts: list[str] | None) -> features.CohortData:
    with CohortStore.open(path) as store:
        return features.load(store, name, measurement_concepts)


def evaluate(
    real: str | Path,
    synth: str | Path,
    control: str | Path | None = None,
    config: EvaluationConfig | None = None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Measure fidelity, utility, privacy and study evidence of SYNTH against REAL (and a control set)."""
    cfg = config or EvaluationConfig()
    step = progress or (lambda _msg: None)
    paths = resolve_stores(real, synth, control)
    step("reading stores")
    with CohortStore.open(paths.training) as store:
        top = features.top_measurement_concepts(store)
    train = _load(paths.training, "training", top)
    syn = _load(paths.synthetic, "synthetic", top)
    ctrl = _load(paths.control, "control", top) if paths.control else None
    if train.n < MIN_PERSONS:
        raise CohortTooSmallError(
            f"the training cohort has {plural(train.n, 'person')}", f"evaluation needs {MIN_PERSONS}+"
        )
    if syn.n == 0:
        raise InputError("the synthetic store holds no person", "sample a synthetic cohort first")
    step("fidelity")
    figures: dict[str, Any] = {"sizes": {"training": train.n, "synthetic": syn.n, "control": ctrl.n if ctrl else None}}
    figures["fidelity"] = fidelity.fidelity(train, syn)
    step("utility")
    figures["utility"] = utility.utility(train, syn, ctrl, cfg.target, cfg.seed)
    step("study evidence")
    figures["evidence"] = evidence.evidence(train, syn, cfg.exposure, cfg.outcome)
    step("privacy")
    distances = None
    if ctrl is not None and ctrl.n >= 2:
        figures["privacy"], distances = _privacy(train, ctrl, syn, cfg)
    else:
        figures["privacy"] = {"measured": False, "reason": "no control set (held-out real patients) was available"}
    results = gates.evaluate_gates(figures, cfg.gate_overrides)
    return EvaluationResult(
        figures,
        results,
        paths,
        cfg.accept_risk,
        {"training": train, "synthetic": syn, **({"control": ctrl} if ctrl else {})},
        distances,
    )


def _privacy(
    train: features.CohortData, ctrl: features.CohortData, syn: features.CohortData, cfg: EvaluationConfig
) -> tuple[dict[str, Any], Distances]:
    rng = np.random.default_rng(cfg.seed)
    enc = Encoder.fit(train)
    x_train, x_ctrl, x_syn = enc.transform(train), enc.transform(ctrl), enc.transform(syn)
    figs, distances = distance_figures(x_train, x_ctrl, x_syn, enc.n_features, rng)
    figs["measured"] = True
    figs["encoding"] = {"features": enc.n_features, "concepts": len(enc.concepts)}
    figs["outliers"] = outlier_probe(x_train, x_ctrl, x_syn, enc.n_features)
    prev = fidelity.prevalence(train)
    informative = list(prev[(prev >= 0.05) & (prev <= 0.95)].index[:N_ATTACK_CONCEPTS])
    sub = balanced_train(train.n, ctrl.n, rng)
    t_train = patient_table(train, informative).iloc[sub].reset_index(drop=True)
    t_ctrl, t_syn = patient_table(ctrl, informative), patient_table(syn, informative)
    figs["singling_out"] = attacks.singling_out(t_train, t_ctrl, t_syn, rng, cfg.n_singling_out)
    figs["linkability"] = attacks.linkability(t_train, t_ctrl, t_syn, rng)
    figs["inference"] = attacks.inference(t_train, t_ctrl, t_syn, rng, list(t_syn.columns))
    for row in figs["inference"]["most_gained"]:  # "has_<concept>" reads better with the concept's name
        concept = row["attribute"].removeprefix("has_")
        if concept != row["attribute"] and concept in train.concept_names:
            row["name"] = train.concept_names[concept]
    return figs, distances
