"""Calibration of the count means: the model's own draws get the training mean back."""

from __future__ import annotations

import numpy as np
import pytest

from synthcohort.errors import ModelError
from synthcohort.generator.trees import MAX_SCALE, SequentialTrees, Variable


def _training(n: int, rng: np.random.Generator) -> tuple[list[Variable], np.ndarray]:
    """Two roots; visits heavier for the second group; a total that follows the visits."""
    variables = [
        Variable("group", "cat", 2),
        Variable("band", "cat", 3),
        Variable("visits", "count"),
        Variable("total", "count"),
        Variable("per_code", "count", given=3),
    ]
    x = np.zeros((n, len(variables)))
    x[:, 0] = rng.integers(0, 2, n)
    x[:, 1] = rng.integers(0, 3, n)
    x[:, 2] = rng.poisson(np.where(x[:, 0] == 1, 12.0, 10.0))
    x[:, 3] = rng.poisson(3.0 * x[:, 2])
    x[:, 4] = np.where(x[:, 3] > 0, rng.poisson(2.0, n) + 1, 0)
    return variables, x


def _fitted(x: np.ndarray, variables: list[Variable]) -> SequentialTrees:
    model = SequentialTrees(variables, n_roots=2)
    model.fit(x, base=4, max_predictors=4, min_leaf=np.full(len(variables), 20), seed=1)
    return model


def test_calibration_gives_the_draws_the_training_means() -> None:
    rng = np.random.default_rng(0)
    variables, x = _training(4000, rng)
    model = _fitted(x, variables)
    # Roots unlike the training ones (only the lighter group): uncalibrated draws fall short.
    roots = np.zeros((40_000, len(variables)))
    roots[:, 1] = rng.integers(0, 3, len(roots))
    before = model.sample(roots.copy(), np.random.default_rng(1), stop=4)[:, 2:4].mean(axis=0)
    assert (before < 0.95 * x[:, 2:4].mean(axis=0)).all()
    model.calibrate(x, roots, stop=4, rng=np.random.default_rng(2))
    after = model.sample(roots.copy(), np.random.default_rng(3), stop=4)[:, 2:4].mean(axis=0)
    np.testing.assert_allclose(after, x[:, 2:4].mean(axis=0), rtol=0.02)
    assert model.scale[2] > 1 and model.scale[[0, 1, 4]].tolist() == [1.0, 1.0, 1.0]  # roots, per-code counts


def test_calibration_never_moves_a_mean_by_more_than_its_cap() -> None:
    rng = np.random.default_rng(0)
    variables, x = _training(2000, rng)
    model = _fitted(x, variables)
    model.calibrate(x * np.array([1, 1, 10, 1, 1]), np.zeros((5000, len(variables))), stop=4, rng=rng)
    assert model.scale[2] == pytest.approx(MAX_SCALE)


@pytest.mark.parametrize("scale", [None, np.ones(3), np.full(5, 2 * MAX_SCALE), np.full(5, np.nan)])
def test_a_model_with_missing_or_wrong_factors_is_refused(scale: np.ndarray | None) -> None:
    rng = np.random.default_rng(0)
    variables, x = _training(500, rng)
    arrays = _fitted(x, variables).to_arrays()
    if scale is None:
        del arrays["scale"]
    else:
        arrays["scale"] = scale
    with pytest.raises(ModelError, match="count factors"):
        SequentialTrees.from_arrays(variables, 2, arrays)
