"""The nearest-neighbour guard: no synthetic person equal to, or nearer than a threshold to, a training person."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from synthcohort.generator.chunk import EVENT_DOMAINS, Chunk
from synthcohort.generator.safeguards import year_of
from synthcohort.generator.training import EVENT_COLUMNS, TrainingData

log = logging.getLogger(__name__)

# A synthetic person nearer to a training person than this share of training persons are to
# their own nearest training neighbour is too near.
NEAR_QUANTILE = 0.01


def _counts(ids: pd.Index, persons: pd.Series, values: pd.Series, categories: np.ndarray) -> np.ndarray:
    """How many times each person of ``ids`` has each of the sorted ``categories`` (others are not counted)."""
    out = np.zeros((len(ids), len(categories)))
    rows = ids.get_indexer(pd.Index(persons))
    vals = values.to_numpy()
    cols = np.minimum(np.searchsorted(categories, vals), max(len(categories) - 1, 0))
    ok = (rows >= 0) & (len(categories) > 0)
    if len(categories):
        ok &= categories[cols] == vals
    np.add.at(out, (rows[ok], cols[ok]), 1.0)
    return out


class NearestGuard:
    """Features of the training persons (as the model saw them) and a distance threshold."""

    def __init__(self, data: TrainingData, near_quantile: float = NEAR_QUANTILE) -> None:
        self.genders = np.sort(data.persons["gender_concept_id"].unique())
        self.races = np.sort(data.persons["race_concept_id"].unique())
        self.ethnicities = np.sort(data.persons["ethnicity_concept_id"].unique())
        self.visit_types = np.sort(data.visits["concept"].unique())
        self.codes = data.codes
        self._lookup = {
            domain: pd.Series(
                self.codes.index[self.codes["domain"] == domain],
                index=self.codes.loc[self.codes["domain"] == domain, "key"],
            )
            for domain in EVENT_DOMAINS
        }
        persons = data.persons.rename(columns={"birth_day": "birth"})
        visits = data.visits[["person_id", "concept"]]
        events = {d: e[["person_id", "code"]] for d, e in data.events.items()}
        raw = self._matrix(persons, visits, events, data.totals.reset_index(drop=True))
        self.scale = raw.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        self.train = raw / self.scale
        self.signatures = set(self._signatures(raw))
        self.index = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(self.train)
        own = self.index.kneighbors(self.train, n_neighbors=2, return_distance=True)[0][:, 1]
        self.threshold = float(np.quantile(own, near_quantile))
        log.info("nearest-neighbour guard: %d training persons, threshold %.4f", len(self.train), self.threshold)

    def _matrix(
        self, persons: pd.DataFrame, visits: pd.DataFrame, events: dict[str, pd.DataFrame], totals: pd.DataFrame
    ) -> np.ndarray:
        ids = pd.Index(persons["person_id"])
        n = len(ids)
        cols: list[np.ndarray] = []
        for values, cats in (
            (persons["gender_concept_id"], self.genders),
            (persons["race_concept_id"], self.races),
            (persons["ethnicity_concept_id"], self.ethnicities),
        ):
            cols.append((values.to_numpy()[:, None] == cats[None, :]).astype("float64"))
        cols.append(year_of(persons["birth"].to_numpy(dtype="int64"))[:, None].astype("float64"))
        cols.append(np.log1p(_counts(ids, visits["person_id"], visits["concept"], self.visit_types)))
        cols.append(np.log1p(totals.to_numpy(dtype="float64")))
        presence = np.zeros((n, len(self.codes)))
        for df in events.values():
            rows = ids.get_indexer(df["person_id"])
            ok = (rows >= 0) & df["code"].notna().to_numpy()
            presence[rows[ok], df["code"].to_numpy()[ok].astype("int64")] = 1.0
        cols.append(presence)
        return np.hstack(cols)

    def _signatures(self, raw: np.ndarray) -> list[bytes]:
        """Sex, year of birth and the set of concepts held: equal signatures are treated as copies."""
        n_demo = len(self.genders) + len(self.races) + len(self.ethnicities) + 1
        keep = np.r_[0 : len(self.genders), n_demo - 1, raw.shape[1] - len(self.codes) : raw.shape[1]]
        return [row.tobytes() for row in np.ascontiguousarray(raw[:, keep], dtype=np.float64)]

    def chunk_matrix(self, chunk: Chunk) -> np.ndarray:
        persons = chunk["person"].rename(columns={"birth_day": "birth"})
        ids = pd.Index(persons["person_id"])
        visits = chunk["visit_occurrence"].rename(columns={"visit_concept_id": "concept"})[["person_id", "concept"]]
        events: dict[str, pd.DataFrame] = {}
        totals = pd.DataFrame(index=ids)
        for domain in EVENT_DOMAINS:
            df = chunk.get(domain)
            if df is None:
                totals[domain] = 0
                continue
            concept, source = EVENT_COLUMNS[domain][:2]
            key = df[concept].where(df[concept] != 0, -df[source].fillna(0))
            events[domain] = pd.DataFrame({"person_id": df["person_id"], "code": key.map(self._lookup[domain])})
            totals[domain] = df.groupby("person_id").size().reindex(ids).fillna(0)
        return self._matrix(persons, visits, events, totals)

    def too_near(self, chunk: Chunk) -> np.ndarray:
        """Local ids of the chunk's persons that are equal to or too near a training person."""
        if not len(chunk["person"]):
            return np.zeros(0, dtype=np.int64)
        raw = self.chunk_matrix(chunk)
        dist = self.index.kneighbors(raw / self.scale, n_neighbors=1, return_distance=True)[0][:, 0]
        near = dist <= max(self.threshold, 1e-9)
        near |= np.array([sig in self.signatures for sig in self._signatures(raw)], dtype=bool)
        return chunk["person"]["person_id"].to_numpy()[near]
