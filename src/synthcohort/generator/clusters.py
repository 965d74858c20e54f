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
# Clusters of at most this many concepts have theirs chosen together (membership): 4, 6 and 10 were
# measured, and 6 kept the most study estimates on both test cohorts (docs/native-generator.md section 8).
CHOSEN_TOGETHER = 6


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


def order_groups(times: np.ndarray, same_day: float = 0.5) -> tuple[list[int], list[int]]:
    """Per member of one cluster: its same-day group and its place in the usual order of first occurrences.

    ``times`` holds, per training person (rows) and member (columns), the first occurrence as a
    share of the observation window, -1 where the member is not held. Members first recorded on
    the same day for at least ``same_day`` of the persons holding both (a diagnosis and the drug
    or observation recorded with it) form a group, numbered earliest first; places order every
    member by its group, then by its mean rank among the other held members.
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
    number = {g: i for i, g in enumerate(sorted(keys, key=lambda g: (keys[g], g)))}
    days = [number[g] for g in group]
    places = np.empty(n, dtype=np.int64)
    places[np.lexsort((np.arange(n), mean_rank, np.asarray(days)))] = np.arange(n)
    return days, places.tolist()


def same_day_share(times: np.ndarray, days: list[int]) -> list[float]:
    """Per same-day group: of the persons holding two of its members or more, the share holding
    them all on one day (1 for a group of one member)."""
    group = np.asarray(days)
    shares = []
    for g in range(int(group.max()) + 1 if len(group) else 0):
        t = times[:, group == g]
        several = (t >= 0).sum(axis=1) >= 2
        if t.shape[1] < 2 or not several.any():
            shares.append(1.0)
            continue
        held_t = np.where(t >= 0, t, np.nan)[several]
        shares.append(float(np.mean(np.nanmax(held_t, axis=1) == np.nanmin(held_t, axis=1))))
    return shares


def on_one_day(times: np.ndarray, days: np.ndarray, together: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each row and same-day group where ``together`` holds, the group's held members take the
    time of one of them, at random (not the earliest, which would pull every group forward)."""
    out = times.copy()
    held = times >= 0
    for g in range(together.shape[1]):
        cols = np.flatnonzero(days == g)
        if len(cols) < 2:
            continue
        h = held[:, cols]
        pick = np.argmax(np.where(h, rng.random(h.shape), -1.0), axis=1)
        day = times[:, cols][np.arange(len(times)), pick]
        merge = together[:, g] & h.any(axis=1)
        out[:, cols] = np.where(merge[:, None] & h, day[:, None], out[:, cols])
    return out


def put_in_order(times: np.ndarray, places: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Hand each ``ordered`` person's drawn member times out again, sorted, in the order of the
    members' places: the person keeps times the model drew, in the order the real cohort shows.
    Other rows keep their drawn order; who holds what is untouched."""
    held = times >= 0
    by_place = np.argsort(places, kind="stable")
    t = times[:, by_place]
    h = held[:, by_place]
    pooled = np.sort(np.where(h, t, np.inf), axis=1)
    slot = np.cumsum(h, axis=1) - 1  # the k-th held member in place order gets the k-th earliest time
    in_order = np.take_along_axis(pooled, np.maximum(slot, 0), axis=1)
    out = np.empty_like(times)
    out[:, by_place] = np.where(h & ordered[:, None], in_order, t)
    return np.where(held, out, times)


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


def concepts_of(keys: np.ndarray) -> list[int]:
    """Per member of a cluster: the index of its concept among the cluster's distinct concepts.

    One concept may be recorded as several codes: a condition, and the same concept as the source
    of an unmapped observation (code key -concept_id, see safeguards).
    """
    return pd.factorize(np.abs(keys.astype(np.int64)))[0].tolist()


def by_concept(held: np.ndarray, concept: np.ndarray) -> np.ndarray:
    """Persons x concepts: whether the person holds any of the concept's codes (``held`` is persons x
    codes, ``concept`` each code's concept as ``concepts_of`` numbers them)."""
    return np.column_stack([held[:, concept == u].any(axis=1) for u in range(int(concept.max()) + 1)])


def membership(held: np.ndarray, concept: np.ndarray, k: int) -> tuple[list[list[float]], list[float]]:
    """Which concepts of a cluster go together, and how each concept is recorded.

    A person holding c of a cluster's n concepts holds a particular c of them: chronic pain alone,
    or pain with migraine but no overdose. Drawing each code from its own tree, given c, does not
    keep c (on Synthea 1k, a synthetic person of the pain cluster held as many as drawn one time
    in two), and the study estimates inside the cluster fade. So the concepts of a small cluster
    (at most CHOSEN_TOGETHER) are chosen together: exactly c of them, each with its share among
    the persons holding c (rows 0..n of the first table, one column per concept). A row describes
    at least ``k`` persons: levels held by fewer are pooled with their nearest levels, and the
    pooled shares scaled to c again (none above 1). In a larger cluster which concepts a person
    holds depends on more than how many (age, sex, the rest of the record): its codes keep their
    trees, and both lists are empty. The second list gives, per code (member), the share of its
    concept's holders who hold it.
    """
    n = int(concept.max()) + 1
    if n > CHOSEN_TOGETHER:
        return [], []
    per_concept = by_concept(held, concept)
    holders = per_concept[:, concept]
    recorded = ((held & holders).sum(axis=0) / np.maximum(holders.sum(axis=0), 1)).tolist()
    count = per_concept.sum(axis=1)
    rows = [[0.0] * n]
    for c in range(1, n + 1):
        width = 0
        while True:
            near = (count > 0) & (np.abs(count - c) <= width)
            if near.sum() >= k or width > n:
                break
            width += 1
        share = per_concept[near].mean(axis=0) if near.any() else np.full(n, c / n)
        rows.append(_scaled(share, c).tolist())
    return rows, recorded


def _scaled(share: np.ndarray, c: int) -> np.ndarray:
    """``share`` scaled to sum to ``c`` with no entry above 1 (capped entries stay at 1, the rest scaled)."""
    p = np.maximum(share.astype("float64"), 1e-9)
    capped = np.zeros(len(p), dtype=bool)
    for _ in range(len(p)):
        q = np.where(capped, 1.0, p * (c - capped.sum()) / p[~capped].sum())
        if not (q > 1.0 + 1e-12).any():
            return np.minimum(q, 1.0)
        capped |= q >= 1.0
    return capped.astype("float64")


def choose_concepts(
    counts: np.ndarray, table: np.ndarray, eligible: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per person, which concepts of a cluster they hold: exactly ``counts`` of the ``eligible`` ones,
    each with the inclusion probability of its row of ``table`` (systematic sampling in a random order)."""
    m, n = eligible.shape
    c = np.minimum(np.round(counts).astype(np.int64), eligible.sum(axis=1))
    # Persons share few (count, eligible concepts) patterns: each pattern's probabilities once.
    patterns, which = np.unique(np.column_stack([c, eligible]), axis=0, return_inverse=True)
    probs = np.zeros((len(patterns), n))
    for i, (ci, *ok) in enumerate(patterns):
        if ci > 0:  # scaled among the eligible concepts only, so that they sum to the count
            mask = np.asarray(ok, dtype=bool)
            probs[i, mask] = _scaled(table[ci][mask], int(ci))
    p = probs[which.ravel()]
    order = np.argsort(rng.random((m, n)), axis=1)
    cum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    before = np.hstack([np.zeros((m, 1)), cum[:, :-1]])
    u = rng.random((m, 1))
    hit = np.floor(cum - u + 1e-9) > np.floor(before - u + 1e-9)
    chosen = np.zeros((m, n), dtype=bool)
    np.put_along_axis(chosen, order, hit, axis=1)
    return chosen


def choose_codes(
    chosen: np.ndarray, concept: np.ndarray, recorded: np.ndarray, eligible: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per person and member code: held when its concept is chosen, with the share of the concept's
    holders recording it that way; at least one eligible code of every chosen concept."""
    held = chosen[:, concept] & eligible & (rng.random(eligible.shape) < recorded)
    for u in range(chosen.shape[1]):
        codes = np.flatnonzero(concept == u)
        bare = chosen[:, u] & ~held[:, codes].any(axis=1)
        if bare.any():
            weight = recorded[codes] * eligible[bare][:, codes] + 1e-12 * eligible[bare][:, codes]
            cum = np.cumsum(weight, axis=1)
            pick = (cum < rng.random((int(bare.sum()), 1)) * cum[:, -1:]).sum(axis=1)
            held[np.flatnonzero(bare), codes[np.minimum(pick, len(codes) - 1)]] = True
    return held
