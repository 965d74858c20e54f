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
from scipy.sparse.csgraph import connected_components
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


def order_groups(times: np.ndarray, same_day: float = 0.5) -> list[int]:
    """Per member of one cluster: its place in the cluster's usual order of first occurrences.

    ``times`` holds, per training person (rows) and member (columns), the first occurrence as a
    share of the observation window, -1 where the member is not held. Members first recorded on
    the same day for at least ``same_day`` of the persons holding both (a diagnosis and the drug
    or observation recorded with it) share a place; places are numbered by the mean rank of their
    members among the other held members, earliest first.
    """
    n = times.shape[1]
    held = times >= 0
    same = np.zeros((n, n), dtype=bool)
    for a in range(n):
        for b in range(a + 1, n):
            both = held[:, a] & held[:, b]
            same[a, b] = both.any() and np.mean(times[both, a] == times[both, b]) >= same_day
    group = connected_components(sp.csr_matrix(same), directed=False)[1]
    # Rank of each member among the person's held members (ties share a rank), scaled to 0..1.
    rows = np.arange(len(times))[:, None]
    keyed = (np.where(held, times, 5.0) + 10.0 * rows).ravel()  # each row sorts inside its own band
    below = np.searchsorted(np.sort(keyed), keyed).reshape(times.shape) - n * rows
    rank = below / np.maximum(held.sum(axis=1) - 1, 1)[:, None]
    shared = held & (held.sum(axis=1) >= 2)[:, None]
    mean_rank = np.array([rank[shared[:, i], i].mean() if shared[:, i].any() else 0.5 for i in range(n)])
    keys = {g: float(mean_rank[group == g].mean()) for g in np.unique(group)}
    places = {g: place for place, g in enumerate(sorted(keys, key=lambda g: (keys[g], g)))}
    return [places[g] for g in group]


def put_in_order(times: np.ndarray, places: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Reassign each person's drawn member times so that they follow the cluster's places.

    Members sharing a place take the time drawn for the first of them the person holds (not the
    earliest, which would pull every shared place forward). For the ``ordered`` rows the places'
    times are then sorted and handed out to the held places in order: the person keeps times the
    model drew, in the order the real cohort shows.
    """
    n_places = int(places.max()) + 1
    held = times >= 0
    per_place = np.full((len(times), n_places), np.inf)
    for c in range(times.shape[1] - 1, -1, -1):  # the first held member of a place is written last
        per_place[:, places[c]] = np.where(held[:, c], times[:, c], per_place[:, places[c]])
    has = np.isfinite(per_place)
    pooled = np.sort(per_place, axis=1)
    slot = np.cumsum(has, axis=1) - 1  # the k-th held place gets the k-th earliest time
    in_order = np.take_along_axis(pooled, np.maximum(slot, 0), axis=1)
    place_time = np.where(has, np.where(ordered[:, None], in_order, per_place), -1.0)
    return np.where(held, place_time[:, places], times)


def order_share(times: np.ndarray, places: list[int]) -> float:
    """Of the pairs of members in different places that a person holds on different days, the share
    in the usual order (1: the order always holds; 0.5: the order is a coin toss)."""
    held = times >= 0
    agree = disagree = 0
    for a in range(times.shape[1]):
        for b in range(times.shape[1]):
            if places[a] < places[b]:
                both = held[:, a] & held[:, b]
                agree += int((times[both, a] < times[both, b]).sum())
                disagree += int((times[both, a] > times[both, b]).sum())
    return agree / (agree + disagree) if agree + disagree else 0.5
