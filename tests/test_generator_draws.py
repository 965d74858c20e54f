"""Leaf draws: stratified within each leaf, so a leaf's shares come out exact for the rows it receives."""

from __future__ import annotations

import numpy as np

from synthcohort.generator.trees import LEVELS, Variable, _draw, _stratified


def _count_dist(p_zero: float, low: float, high: float) -> np.ndarray:
    quantiles = np.linspace(low, high, len(LEVELS))
    return np.concatenate([[p_zero], quantiles, [quantiles.mean()]])


def test_each_leafs_uniforms_fall_one_in_each_of_its_strata() -> None:
    rng = np.random.default_rng(3)
    leaf = rng.permutation(np.repeat([0, 1, 4], [7, 12, 1]))
    u = _stratified(leaf, rng)
    for g, m in ((0, 7), (1, 12), (4, 1)):
        strata = np.sort(np.floor(u[leaf == g] * m))
        assert strata.tolist() == list(range(m))


def test_a_leafs_share_of_zeros_is_drawn_exactly() -> None:
    var = Variable("visits", "count")
    leaf = np.repeat([0, 1], [10, 20])
    dist = np.vstack(
        [np.repeat([_count_dist(0.3, 1, 5)], 10, axis=0), np.repeat([_count_dist(0.75, 2, 9)], 20, axis=0)]
    )
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(30)
        x = _draw(var, dist[order], leaf[order], np.random.default_rng(seed))
        assert (x[leaf[order] == 0] == 0).sum() == 3
        assert (x[leaf[order] == 1] == 0).sum() == 15
        assert x[leaf[order] == 1].max() <= 10


def test_a_leafs_categories_come_out_in_their_shares() -> None:
    var = Variable("sex", "cat", 2)
    leaf = np.repeat([0, 1], [10, 8])
    dist = np.vstack([np.tile([0.5, 0.5], (10, 1)), np.tile([0.25, 0.75], (8, 1))])
    for seed in range(20):
        x = _draw(var, dist, leaf, np.random.default_rng(seed))
        assert x[:10].sum() == 5
        assert x[10:].sum() == 6


def test_held_rows_decide_zeros_and_the_rest_draw_from_the_quantiles() -> None:
    var = Variable("per_code", "count", given=0)
    leaf = np.zeros(8, dtype=np.int64)
    held = np.array([True, False] * 4)
    x = _draw(var, np.tile(_count_dist(0.9, 2, 4), (8, 1)), leaf, np.random.default_rng(1), held)
    assert (x[~held] == 0).all()
    assert ((x[held] >= 2) & (x[held] <= 5)).all()


def test_rows_held_above_zero_spread_over_the_leafs_quantiles_among_themselves() -> None:
    var = Variable("per_code", "count", given=0)
    leaf = np.zeros(40, dtype=np.int64)
    held = np.arange(40) % 4 == 0  # 10 of the leaf's 40 rows hold the code
    dist = np.tile(_count_dist(0.0, 1, 100), (40, 1))
    for seed in range(10):
        x = _draw(var, dist, leaf, np.random.default_rng(seed), held)
        # the k-th smallest value lies in the k-th tenth of the line 1..100 (plus the rounding jitter below 1),
        # whatever the other rows drew
        k = np.arange(10)
        assert ((np.sort(x[held]) >= np.floor(1 + 9.9 * k)) & (np.sort(x[held]) < 2 + 9.9 * (k + 1))).all()
