"""Patient-level mixed-type encoding and Gower-style distances, with ranges taken from the real data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from synthcohort.evaluation.features import COUNT_DOMAINS, CohortData
from synthcohort.evaluation.fidelity import presence_matrix, prevalence

CATEGORICAL = ("gender", "race", "ethnicity")


def patient_table(data: CohortData, concepts: list[str]) -> pd.DataFrame:
    """One row per person: demographics, observation window, events per domain, presence of the given concepts."""
    p = data.persons
    columns: dict[str, np.ndarray] = {
        "gender": p["gender"].astype(int).to_numpy(),
        "race": p["race"].astype(int).to_numpy(),
        "ethnicity": p["ethnicity"].astype(int).to_numpy(),
        "year_of_birth": p["birth_date"].dt.year.fillna(0).astype(int).to_numpy(),
        "obs_start_year": p["obs_start"].dt.year.fillna(0).astype(int).to_numpy(),
        "obs_days": (p["obs_end"] - p["obs_start"]).dt.days.fillna(0).clip(lower=0).to_numpy(dtype=float),
    }
    for dom in COUNT_DOMAINS:
        columns[f"n_{dom}"] = data.domain_counts[dom].to_numpy(dtype=float)
    presence = presence_matrix(data, concepts).astype(int)
    for j, c in enumerate(concepts):
        columns[f"has_{c}"] = presence[:, j]
    return pd.DataFrame(columns)


@dataclass
class Encoder:
    """Maps persons to vectors whose L1 distance divided by ``n_features`` is Gower's distance."""

    concepts: list[str]
    categories: dict[str, list[int]]
    numeric_ranges: dict[str, tuple[float, float]]

    @classmethod
    def fit(cls, real: CohortData, max_concepts: int = 200) -> Encoder:
        prev = prevalence(real)
        concepts = list(prev[prev * real.n >= 2].index[:max_concepts])
        table = patient_table(real, concepts)
        categories = {c: sorted(set(table[c].tolist())) for c in CATEGORICAL}
        numeric = [c for c in table.columns if c not in CATEGORICAL and not c.startswith("has_")]
        ranges: dict[str, tuple[float, float]] = {}
        for c in numeric:
            col = _numeric_transform(c, table[c].to_numpy(dtype=float))
            ranges[c] = (float(col.min()), float(col.max())) if len(col) else (0.0, 1.0)
        return cls(concepts, categories, ranges)

    @property
    def n_features(self) -> int:
        return len(CATEGORICAL) + len(self.numeric_ranges) + len(self.concepts)

    def transform(self, data: CohortData) -> np.ndarray:
        table = patient_table(data, self.concepts)
        parts: list[np.ndarray] = []
        for c in CATEGORICAL:
            cats = self.categories[c]
            onehot = np.zeros((len(table), len(cats) + 1), dtype=np.float64)
            idx = pd.Index(cats).get_indexer(pd.Index(table[c].to_numpy()))
            onehot[np.arange(len(table)), np.where(idx >= 0, idx, len(cats))] = 0.5
            parts.append(onehot)
        for c, (lo, hi) in self.numeric_ranges.items():
            col = _numeric_transform(c, table[c].to_numpy(dtype=float))
            parts.append(((np.clip(col, lo, hi) - lo) / (hi - lo if hi > lo else 1.0))[:, None])
        parts.append(table[[f"has_{c}" for c in self.concepts]].to_numpy(dtype=np.float64))
        return np.hstack(parts) if parts else np.zeros((len(table), 0))


def _numeric_transform(name: str, values: np.ndarray) -> np.ndarray:
    # Event counts are heavy-tailed: compare them on a log scale so one busy patient does not set the range.
    return np.log1p(np.maximum(values, 0)) if name.startswith("n_") or name == "obs_days" else values


def nearest(reference: np.ndarray, queries: np.ndarray, n_features: int, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Distances (Gower, in [0, 1]) and indices of the k nearest reference rows for each query row."""
    if len(reference) == 0 or len(queries) == 0:
        return np.full((len(queries), k), np.inf), np.zeros((len(queries), k), dtype=int)
    k_eff = min(k, len(reference))
    nn = NearestNeighbors(n_neighbors=k_eff, metric="manhattan", algorithm="brute", n_jobs=1).fit(reference)
    dist, idx = nn.kneighbors(queries)
    if k_eff < k:
        dist = np.hstack([dist, np.full((len(queries), k - k_eff), np.inf)])
        idx = np.hstack([idx, np.zeros((len(queries), k - k_eff), dtype=int)])
    return dist / max(n_features, 1), idx
