"""Concept clusters: concepts that go together strongly, learned as one variable before the concepts.

A tree drawing one concept splits on whatever earlier variable separates its holders best,
often a visit count that many concepts share; the partner concepts of a small, tight group
(chronic pain, migraine, impacted molars, drug overdose) then fall into leaves too small to
split again and the association fades. So concepts are clustered first by the phi correlation
of who holds them (average linkage, so one strong pair does not chain unrelated groups), and
each cluster spanning at least two concepts becomes a variable: how many of its codes the
person holds. Drawn early, it tells every later tree which group the person belongs to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.cluster import AgglomerativeClustering

PHI_LINK = 0.5  # mean phi inside a cluster (average linkage): 1 - PHI_LINK is the cut distance


def presence(events: dict[str, pd.DataFrame], person_ids: pd.Index, n_codes: int) -> sp.csr_matrix:
    """Persons x codes, 1 where the person holds the code."""
    rows, cols = [], []
    for df in events.values():
        pairs = df[["person_id", "code"]].drop_duplicates()
        rows.append(person_ids.get_indexer(pd.Index(pairs["person_id"])))
        cols.append(pairs["code"].to_numpy(dtype=np.int64))
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    keep = r >= 0
    ones = np.ones(int(keep.sum()))
    return sp.csr_matrix((ones, (r[keep], c[keep])), shape=(len(person_ids), n_codes))


def phi_matrix(held: sp.csr_matrix) -> np.ndarray:
    """Phi correlation between every two codes (0 for a code everyone or no one holds)."""
    n = held.shape[0]
    both = (held.T @ held).toarray()
    p = np.asarray(held.sum(axis=0)).ravel()
    spread = np.sqrt(p * (n - p))
    den = np.outer(spread, spread)
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.where(den > 0, (n * both - np.outer(p, p)) / np.where(den > 0, den, 1.0), 0.0)
    np.fill_diagonal(phi, 1.0)
    return phi


def concept_clusters(held: sp.csr_matrix, identity: np.ndarray) -> list[list[int]]:
    """Groups of codes (by index) whose holders overlap strongly and that name two concepts or more.

    ``identity`` gives each code's concept: the same concept recorded in several domains forms
    a group by itself, which adds nothing its own variable does not already say.
    """
    if held.shape[1] < 2:
        return []
    distance = np.clip(1.0 - phi_matrix(held), 0.0, 2.0)
    labels = (
        AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="average", distance_threshold=1.0 - PHI_LINK
        )
        .fit(distance)
        .labels_
    )
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    kept = [sorted(int(i) for i in g) for g in groups if len(np.unique(identity[g])) >= 2]
    return sorted(kept)
