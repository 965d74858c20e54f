"""A sequential tree synthesizer: each variable drawn from a leaf distribution of a tree on earlier ones.

Every tree is stored as plain arrays (node features, thresholds, children) with, per leaf,
a distribution of the target over at least ``min_leaf`` training persons: category
probabilities, or a share of zeros and quantiles of the rest; and, per count variable, one factor
that gives the model's own draws the training mean (``SequentialTrees.calibrate``). No training
row is kept. Draws are stratified: the uniform numbers of the rows a leaf receives fall one in each
of as many equal strata, so neither a leaf's heavy tail nor its zeros are over- or under-drawn by
chance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from synthcohort.errors import ModelError

LEVELS = np.linspace(0.0, 1.0, 21)
KINDS = ("cat", "count", "cont")
MAX_SCALE = 1.25  # the largest correction calibration may apply to a count's mean


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # cat | count | cont
    n_cats: int = 0  # categories 0..n_cats-1 for kind cat
    given: int = -1  # defined only where variable ``given`` is > 0 (-1: everywhere)


@dataclass
class Tree:
    feature: np.ndarray  # per node: variable index, -1 at a leaf
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray  # per node: leaf index, -1 inside
    dist: np.ndarray  # per leaf: probabilities (cat), [p0, quantiles...] (count), quantiles (cont)

    def apply(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Leaf index of each row of ``x`` (or of ``x[rows]``), reading only the cells a path needs."""
        rows = np.arange(len(x)) if rows is None else rows
        node = np.zeros(len(rows), dtype=np.int64)
        active = np.arange(len(rows))
        while len(active):
            here = node[active]
            inner = self.feature[here] >= 0
            active, here = active[inner], here[inner]
            if not len(active):
                break
            go_left = x[rows[active], self.feature[here]] <= self.threshold[here]
            node[active] = np.where(go_left, self.left[here], self.right[here])
        return self.leaf[node]

    def check(self, n_vars: int, width: int) -> None:
        nodes = len(self.feature)
        ok = (
            nodes >= 1
            and all(len(a) == nodes for a in (self.threshold, self.left, self.right, self.leaf))
            and int(self.feature.max()) < n_vars
            and self.dist.ndim == 2
            and self.dist.shape[1] == width
            and np.isfinite(self.dist).all()
            and int(self.leaf.max()) == len(self.dist) - 1
        )
        inner = self.feature >= 0
        if ok and inner.any():
            ok = bool(
                (self.left[inner] > np.flatnonzero(inner)).all()
                and (self.right[inner] < nodes).all()
                and (self.left[inner] < nodes).all()
            )
        if not ok:
            raise ModelError("a tree in the model is malformed", "fit the model again")


def _width(var: Variable) -> int:
    return var.n_cats if var.kind == "cat" else len(LEVELS) + (2 if var.kind == "count" else 0)


def _quantile_rows(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the count of values and their quantiles at LEVELS (linear interpolation), in one pass."""
    order = np.lexsort((values, groups))
    v, g = values[order], groups[order]
    counts = np.bincount(g, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    pos = LEVELS[None, :] * np.maximum(counts - 1, 0)[:, None]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0)[:, None])
    frac = pos - lo
    safe = np.maximum(len(v) - 1, 0)
    vlo = v[np.minimum(starts[:, None] + lo, safe)] if len(v) else np.zeros(lo.shape)
    vhi = v[np.minimum(starts[:, None] + hi, safe)] if len(v) else np.zeros(lo.shape)
    q = vlo * (1 - frac) + vhi * frac
    q[counts == 0] = 0.0
    return counts, q


def _leaf_dists(var: Variable, y: np.ndarray, leaf: np.ndarray, n_leaves: int) -> np.ndarray:
    if var.kind == "cat":
        counts = np.zeros((n_leaves, var.n_cats))
        np.add.at(counts, (leaf, np.clip(y.astype(np.int64), 0, var.n_cats - 1)), 1.0)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    if var.kind == "count":
        pos = y > 0
        n_all = np.bincount(leaf, minlength=n_leaves)
        n_pos, q = _quantile_rows(y[pos], leaf[pos], n_leaves)
        mean = np.bincount(leaf[pos], weights=y[pos], minlength=n_leaves) / np.maximum(n_pos, 1)
        return np.column_stack([1.0 - n_pos / np.maximum(n_all, 1), q, mean])
    return _quantile_rows(y, leaf, n_leaves)[1]


def _stratified(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform draws spread evenly within each group of rows (a tree's leaf): a group of ``m`` rows
    gets one draw in each of ``m`` equal strata of [0, 1), in random order."""
    n = len(groups)
    order = np.lexsort((rng.random(n), groups))
    sizes = np.bincount(groups)
    rank = np.empty(n)
    rank[order] = np.arange(n) - (np.cumsum(sizes) - sizes)[groups[order]]
    return (rank + rng.random(n)) / sizes[groups]


def _draw(
    var: Variable,
    dist: np.ndarray,
    leaf: np.ndarray,
    rng: np.random.Generator,
    held: np.ndarray | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Draws from the leaf distributions ``dist`` (one row per draw, from leaf ``leaf``); for a count,
    ``held`` (when given) says which draws are above zero and ``scale`` multiplies the counts above zero.

    One stratified uniform per draw is read through the leaf's inverse distribution function: for a
    count, below the leaf's share of zeros it gives zero, above it the quantile line of the rest.
    """
    # rows held above zero draw their counts among themselves: a leaf's strata are split by ``held``
    u = _stratified(leaf if held is None else 2 * leaf + held, rng)
    if var.kind == "cat":
        cum = np.cumsum(dist, axis=1)
        return np.minimum((cum < u[:, None] * cum[:, -1:]).sum(axis=1), var.n_cats - 1).astype("float64")
    if var.kind == "count":
        if held is None:
            zero = u < dist[:, 0]
            u = np.where(zero, 0.0, (u - dist[:, 0]) / np.maximum(1.0 - dist[:, 0], 1e-12))
        else:
            zero = ~held
    q = dist[:, 1:-1] if var.kind == "count" else dist
    pos = np.minimum(u, 1.0) * (len(LEVELS) - 1)
    lo = np.minimum(pos.astype(np.int64), len(LEVELS) - 2)
    frac = pos - lo
    rows = np.arange(len(dist))
    value = q[rows, lo] * (1 - frac) + q[rows, lo + 1] * frac
    if var.kind == "cont":
        return value
    # Counts are heavy-tailed: the quantile line averages below the leaf's mean (its top segment
    # runs straight to the largest count), so draws are scaled to the mean the leaf recorded.
    line_mean = (q.sum(axis=1) - 0.5 * (q[:, 0] + q[:, -1])) / (len(LEVELS) - 1)
    value = value * np.where(line_mean > 0, dist[:, -1] / np.where(line_mean > 0, line_mean, 1.0), 1.0) * scale
    value = np.maximum(np.floor(value + rng.random(len(dist))), 1.0)
    return np.where(zero, 0.0, value)


def fit_tree(var: Variable, x: np.ndarray, y: np.ndarray, predictors: np.ndarray, min_leaf: int, seed: int) -> Tree:
    """One conditional: a CART tree of ``y`` on the ``predictors`` columns of ``x``."""
    if len(y) < 2 * min_leaf or len(predictors) == 0:
        dist = _leaf_dists(var, y, np.zeros(len(y), dtype=np.int64), 1)
        one = np.zeros(1, dtype=np.int64)
        return Tree(one - 1, np.zeros(1), one - 1, one - 1, one.copy(), dist)
    xp = np.ascontiguousarray(x[:, predictors], dtype=np.float32)
    # A concept's count (defined under its domain's total) splits on presence: which concepts go
    # together matters more than how often each repeats, and leaves spent on repeat counts would
    # isolate small groups of heavy users.
    by_presence = var.kind == "count" and var.given >= 0
    if var.kind == "cat" or by_presence:
        model: DecisionTreeClassifier | DecisionTreeRegressor = DecisionTreeClassifier(
            min_samples_leaf=min_leaf, random_state=seed
        )
        model.fit(xp, (y > 0 if by_presence else y).astype(np.int64))
    else:
        model = DecisionTreeRegressor(min_samples_leaf=min_leaf, random_state=seed)
        target = np.log1p(np.maximum(y, 0)) if var.kind == "count" else y
        model.fit(xp, target.astype(np.float64), check_input=False)
    t = model.tree_
    is_leaf = t.children_left < 0
    leaf = np.full(t.node_count, -1, dtype=np.int64)
    leaf[is_leaf] = np.arange(int(is_leaf.sum()))
    assigned = leaf[model.apply(xp)]
    dist = _leaf_dists(var, y, assigned, int(is_leaf.sum()))
    feature = np.where(is_leaf, -1, predictors[np.maximum(t.feature, 0)]).astype(np.int64)
    return Tree(
        feature,
        t.threshold.astype("float64"),
        t.children_left.astype(np.int64),
        t.children_right.astype(np.int64),
        leaf,
        dist,
    )


class SequentialTrees:
    """Variables in order; the first ``n_roots`` are given, each later one has a tree."""

    def __init__(
        self, variables: list[Variable], n_roots: int, trees: list[Tree] | None = None, scale: np.ndarray | None = None
    ) -> None:
        self.variables = variables
        self.n_roots = n_roots
        self.trees: list[Tree] = trees or []
        # per variable: the factor on its counts above zero that gives the model's draws the training mean
        self.scale = np.ones(len(variables)) if scale is None else scale

    def fit(
        self,
        x: np.ndarray,
        base: int,
        max_predictors: int,
        min_leaf: np.ndarray,
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Fit a tree per variable on the ``base`` first variables and the earlier ones most correlated,
        with leaves of at least ``min_leaf[j]`` persons for variable j.

        ``progress(done, total)`` is called after each tree.
        """
        z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        self.trees = []
        total = len(self.variables) - self.n_roots
        for j in range(self.n_roots, len(self.variables)):
            var = self.variables[j]
            rows = x[:, var.given] > 0 if var.given >= 0 else np.ones(len(x), dtype=bool)
            fixed = np.arange(min(base, j))
            extra = np.arange(min(base, j), j)
            if len(extra) > max_predictors and rows.sum() > 2:
                # Correlation with the target over the rows where it is defined, without copying z.
                y = x[:, j]
                yz = np.where(rows, (y - y[rows].mean()) / (y[rows].std() or 1.0), 0.0)
                score = np.abs(yz @ z[:, extra[0] : extra[-1] + 1])
                extra = np.sort(extra[np.argsort(-score, kind="stable")[:max_predictors]])
            predictors = np.concatenate([fixed, extra]).astype(np.int64)
            self.trees.append(fit_tree(var, x[rows], x[rows, j], predictors, int(min_leaf[j]), seed + j))
            if progress:
                progress(len(self.trees), total)

    def sample(
        self,
        x: np.ndarray,
        rng: np.random.Generator,
        start: int | None = None,
        stop: int | None = None,
        held: dict[int, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Fill the columns from the roots (or ``start``) up to ``stop``, in order, for every row of ``x``.

        ``held`` fixes, for some count variables, which rows draw a count above zero (chosen together
        elsewhere); their trees then give only how many.
        """
        first = self.n_roots if start is None else start
        for j in range(first, len(self.variables) if stop is None else stop):
            var = self.variables[j]
            tree = self.trees[j - self.n_roots]
            rows = np.flatnonzero(x[:, var.given] > 0) if var.given >= 0 else np.arange(len(x))
            x[:, j] = -1.0 if var.kind == "cont" and var.given >= 0 else 0.0
            if len(rows):
                leaf = tree.apply(x, rows)
                held_rows = None if held is None or j not in held else held[j][rows]
                x[rows, j] = _draw(var, tree.dist[leaf], leaf, rng, held_rows, float(self.scale[j]))
        return x

    def calibrate(self, x: np.ndarray, roots: np.ndarray, stop: int, rng: np.random.Generator) -> None:
        """Scale each count variable before ``stop`` (defined everywhere) so that the model's own draws
        from ``roots`` have the mean of the training matrix ``x``.

        A tree learned on real predictors is applied to drawn ones; where the drawn joint differs
        (the heaviest users, mostly), a leaf gives another mean than the real persons had, and the
        shortfall adds up over the chain. Variables are calibrated in order, each on draws that
        already use the earlier factors.
        """
        self.scale = np.ones(len(self.variables))
        drawn, done = roots.copy(), self.n_roots
        for j in range(self.n_roots, stop):
            var = self.variables[j]
            if var.kind != "count" or var.given >= 0:
                continue
            self.sample(drawn, rng, start=done, stop=j + 1)
            if drawn[:, j].mean() > 0 and x[:, j].mean() > 0:
                self.scale[j] = float(np.clip(x[:, j].mean() / drawn[:, j].mean(), 1 / MAX_SCALE, MAX_SCALE))
                self.sample(drawn, rng, start=j, stop=j + 1)  # drawn again with its factor, for the later ones
            done = j + 1

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"scale": self.scale}
        for i, t in enumerate(self.trees):
            for key in ("feature", "threshold", "left", "right", "leaf", "dist"):
                out[f"t{i}_{key}"] = getattr(t, key)
        return out

    @classmethod
    def from_arrays(cls, variables: list[Variable], n_roots: int, arrays: dict[str, np.ndarray]) -> SequentialTrees:
        trees = []
        for i in range(len(variables) - n_roots):
            try:
                t = Tree(*(arrays[f"t{i}_{key}"] for key in ("feature", "threshold", "left", "right", "leaf", "dist")))
            except KeyError:
                raise ModelError(f"tree {i} is missing from the model", "fit the model again") from None
            t.check(len(variables), _width(variables[n_roots + i]))
            if t.feature.max() >= n_roots + i:
                raise ModelError("a tree refers to a later variable", "fit the model again")
            trees.append(t)
        scale = arrays.get("scale", np.zeros(0))
        if scale.shape != (len(variables),) or not ((scale >= 1 / MAX_SCALE) & (scale <= MAX_SCALE)).all():
            raise ModelError("the model's count factors are missing or out of range", "fit the model again")
        return cls(variables, n_roots, trees, scale)
