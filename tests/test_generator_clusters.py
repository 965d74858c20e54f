"""Concept clusters: concepts whose holders overlap strongly are found, and only those."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthcohort.generator.clusters import (
    concept_clusters,
    order_groups,
    order_share,
    phi_matrix,
    presence,
    put_in_order,
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


def test_usual_order_learned_with_same_day_members_sharing_a_place() -> None:
    # members: 0 a diagnosis, 1 its drug recorded the same day, 2 an outcome that comes later
    times = np.array([[0.1, 0.1, 0.5], [0.2, 0.2, 0.9], [0.3, 0.3, -1], [-1, -1, 0.4], [0.05, 0.05, 0.06]])
    assert order_groups(times) == [0, 0, 1]
    # the outcome first for most persons: it takes the first place
    flipped = np.array([[0.5, 0.1], [0.9, 0.2], [0.1, 0.3], [0.7, 0.4]])
    assert order_groups(flipped) == [1, 0]


def test_drawn_times_handed_out_in_the_usual_order() -> None:
    places = np.array([0, 0, 1])
    drawn = np.array([[0.7, 0.2, 0.1], [0.5, -1, 0.3], [-1, 0.4, -1], [0.9, 0.9, 0.2], [-1, -1, -1]])
    out = put_in_order(drawn, places, np.ones(len(drawn), dtype=bool))
    assert out.tolist() == [[0.1, 0.1, 0.7], [0.3, -1, 0.5], [-1, 0.4, -1], [0.2, 0.2, 0.9], [-1, -1, -1]]
    assert ((out >= 0) == (drawn >= 0)).all()  # who holds what is untouched
    # rows left in their drawn order still record same-place members on one day
    kept = put_in_order(drawn, places, np.zeros(len(drawn), dtype=bool))
    assert kept.tolist() == [[0.7, 0.7, 0.1], [0.5, -1, 0.3], [-1, 0.4, -1], [0.9, 0.9, 0.2], [-1, -1, -1]]


def test_order_share_says_how_often_the_order_holds() -> None:
    times = np.array([[0.1, 0.5], [0.2, 0.9], [0.6, 0.3], [0.4, 0.4], [-1, 0.2]])
    assert order_share(times, [0, 1]) == 2 / 3  # same-day and single holders do not count
    assert order_share(times, [0, 0]) == 0.5  # one place: no order to keep
