"""Concept clusters: concepts whose holders overlap strongly are found, and only those."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthcohort.generator.clusters import (
    choose_codes,
    choose_concepts,
    concept_clusters,
    concepts_of,
    membership,
    on_one_day,
    order_groups,
    order_share,
    phi_matrix,
    presence,
    put_in_order,
    same_day_share,
)


def _events(n: int, rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """Codes 0-2: three concepts held by the same 25 persons, give or take one; codes 3 and 4: one
    concept recorded in two domains; codes 5-9: independent concepts held by about 30 % each."""
    rows: list[tuple[int, int]] = []
    group = rng.choice(n, size=25, replace=False)
    for code in (0, 1, 2):
        holders = set(group.tolist()) - {int(group[code])}
        holders.add(int(rng.integers(n)))
        rows += [(p, code) for p in holders]
    twin = rng.choice(n, size=30, replace=False)
    rows += [(int(p), code) for p in twin for code in (3, 4)]
    for code in range(5, 10):
        rows += [(int(p), code) for p in np.flatnonzero(rng.random(n) < 0.3)]
    df = pd.DataFrame(rows, columns=["person_id", "code"])
    domain = np.where(df["code"] == 4, "drug_exposure", "condition_occurrence")
    events = {d: df[domain == d].reset_index(drop=True) for d in ("condition_occurrence", "drug_exposure")}
    identity = np.array([100, 101, 102, 200, 200, 300, 301, 302, 303, 304])
    return events, identity


def test_tight_group_found_and_nothing_else() -> None:
    rng = np.random.default_rng(3)
    events, identity = _events(400, rng)
    held = presence(events, pd.Index(np.arange(400)), 10)
    assert held.shape == (400, 10) and held[:, 0].sum() == 25
    phi = phi_matrix(held)
    assert phi[0, 1] > 0.8 and abs(phi[5, 6]) < 0.2 and np.allclose(phi, phi.T)
    # the same concept in two domains is a group of one concept: left out
    assert concept_clusters(held, identity) == [[0, 1, 2]]
    # with distinct identities the two-domain pair is a cluster of its own
    assert concept_clusters(held, np.arange(10)) == [[0, 1, 2], [3, 4]]


def test_persons_outside_the_index_and_empty_input() -> None:
    events = {"condition_occurrence": pd.DataFrame({"person_id": [1, 99], "code": [0, 1]})}
    held = presence(events, pd.Index([1, 2]), 2)
    assert held.toarray().tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert concept_clusters(held[:, :1], np.array([5])) == []
    # a code no one (or everyone) holds has no correlation to speak of
    assert phi_matrix(held)[0, 1] == 0.0


def test_usual_order_learned_with_same_day_members_in_one_group() -> None:
    # members: 0 a diagnosis, 1 its drug recorded the same day, 2 an outcome that comes later
    times = np.array([[0.1, 0.1, 0.5], [0.2, 0.2, 0.9], [0.3, 0.3, -1], [-1, -1, 0.4], [0.05, 0.05, 0.06]])
    assert order_groups(times) == ([0, 0, 1], [0, 1, 2])
    # the outcome first for most persons: its group comes first
    flipped = np.array([[0.5, 0.1], [0.9, 0.2], [0.1, 0.3], [0.7, 0.4]])
    assert order_groups(flipped) == ([1, 0], [1, 0])
    # inside a group, the member usually first (a diagnosis before its drug, or with it) comes first
    mostly_same = np.array([[0.3, 0.1, 0.9], [0.2, 0.2, 0.8], [0.5, 0.5, 0.7], [0.6, 0.4, 0.95]])
    days, places = order_groups(mostly_same)
    assert days == [0, 0, 1] and places == [1, 0, 2]
    assert same_day_share(mostly_same, days) == [0.5, 1.0]


def test_drawn_times_handed_out_in_the_usual_order() -> None:
    places = np.array([1, 0, 2])
    drawn = np.array([[0.7, 0.2, 0.1], [0.5, -1, 0.3], [-1, 0.4, -1], [0.9, 0.8, 0.2], [-1, -1, -1]])
    out = put_in_order(drawn, places, np.ones(len(drawn), dtype=bool))
    assert out.tolist() == [[0.2, 0.1, 0.7], [0.3, -1, 0.5], [-1, 0.4, -1], [0.8, 0.2, 0.9], [-1, -1, -1]]
    assert ((out >= 0) == (drawn >= 0)).all()  # who holds what is untouched
    kept = put_in_order(drawn, places, np.zeros(len(drawn), dtype=bool))
    assert (kept == drawn).all()


def test_same_day_groups_merged_only_where_together() -> None:
    rng = np.random.default_rng(3)
    days = np.array([0, 0, 1])
    drawn = np.array([[0.2, 0.4, 0.9], [0.2, 0.4, 0.9], [-1, 0.4, 0.9]])
    together = np.array([[True, True], [False, True], [True, True]])
    out = on_one_day(drawn, days, together, rng)
    assert out[0, 0] == out[0, 1] and out[0, 0] in (0.2, 0.4) and out[0, 2] == 0.9
    assert out[1].tolist() == drawn[1].tolist()  # not together: times as drawn
    assert out[2].tolist() == drawn[2].tolist()  # one member held: nothing to merge
    # the merged day is one of the drawn ones at random, not always the earliest
    many = np.tile([[0.2, 0.4, 0.9]], (2000, 1))
    merged = on_one_day(many, days, np.ones((2000, 2), dtype=bool), rng)[:, 0]
    assert 0.4 < np.mean(merged == 0.2) < 0.6


def test_concepts_chosen_together_keep_count_and_shares() -> None:
    rng = np.random.default_rng(5)
    # codes 0 and 2 record concept 7 (a condition, and the same concept as an unmapped observation)
    concept = np.asarray(concepts_of(np.array([7, 8, -7, 9])))
    assert concept.tolist() == [0, 1, 0, 2]
    held = np.zeros((60, 4), dtype=bool)
    held[:20, [0, 2]] = True  # 20 persons: concept 7 only, recorded both ways
    held[20:40, [0, 1, 3]] = True  # 20 persons: all three concepts, 7 as a condition only
    held[40:45, 1] = True  # 5 persons: concept 8 only
    shares, recorded = membership(held, concept, k=11)
    assert len(shares) == 4 and shares[0] == [0.0, 0.0, 0.0]
    # one concept held: 25 persons, 20 of them concept 7
    assert np.allclose(shares[1], [20 / 25, 5 / 25, 0.0], atol=1e-6)
    # two concepts: no one; pooled with the nearest levels (all holders), scaled to sum 2
    assert np.isclose(sum(shares[2]), 2.0) and max(shares[2]) <= 1.0
    assert np.allclose(shares[3], [1.0, 1.0, 1.0])
    assert np.allclose(recorded, [1.0, 1.0, 0.5, 1.0])
    # a large cluster keeps its codes' own trees: nothing learned here
    assert membership(np.tile(held[:, [0, 1, 3]], (1, 3)), np.arange(9), k=11) == ([], [])
    counts = np.array([1] * 3000 + [3] * 1000 + [0] * 500)
    eligible = np.ones((len(counts), 3), dtype=bool)
    eligible[-100:, 2] = False
    chosen = choose_concepts(counts, np.asarray(shares), eligible, rng)
    assert (chosen.sum(axis=1) == np.minimum(counts, eligible.sum(axis=1))).all()  # exactly as many as drawn
    assert not chosen[~eligible].any()
    # a count left with one eligible concept whose share at that count is nil still gets it
    lone = np.zeros((50, 3), dtype=bool)
    lone[:, 2] = True
    assert choose_concepts(np.full(50, 2), np.asarray(shares), lone, rng)[:, 2].all()
    assert 0.77 < chosen[:3000, 0].mean() < 0.83  # concept 7 for 80 % of the one-concept persons
    codes = choose_codes(chosen, concept, np.asarray(recorded), np.ones((len(counts), 4), dtype=bool), rng)
    assert (codes[:, [0, 2]].any(axis=1) == chosen[:, 0]).all()  # a chosen concept is recorded at least once
    assert 0.45 < codes[chosen[:, 0], 2].mean() < 0.55


def test_order_share_says_how_often_the_order_holds() -> None:
    times = np.array([[0.1, 0.5], [0.2, 0.9], [0.6, 0.3], [0.4, 0.4], [-1, 0.2]])
    assert order_share(times, [0, 1]) == 2 / 3  # same-day and single holders do not count
    assert order_share(times, [1, 0]) == 1 / 3
