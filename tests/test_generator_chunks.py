"""Per-chunk helpers of the sampling loop: person selection and the nearness check's visit counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthcohort.generator.chunk import select_persons
from synthcohort.generator.nearest import _counts


def _chunk() -> dict[str, pd.DataFrame]:
    return {
        "person": pd.DataFrame({"person_id": [0, 1, 2]}),
        "visit_occurrence": pd.DataFrame({"person_id": [0, 0, 2, 2, 2], "visit_occurrence_id": [0, 1, 2, 3, 4]}),
    }


def test_select_persons_keeps_the_tables_when_nobody_is_dropped() -> None:
    chunk = _chunk()
    same = select_persons(chunk, np.array([2, 1, 0]))
    assert all(same[name] is chunk[name] for name in chunk)


def test_select_persons_drops_rows_and_renumbers_the_index() -> None:
    kept = select_persons(_chunk(), np.array([2]))
    assert kept["person"]["person_id"].tolist() == [2]
    assert kept["visit_occurrence"]["visit_occurrence_id"].tolist() == [2, 3, 4]
    assert kept["visit_occurrence"].index.tolist() == [0, 1, 2]
    # A table whose index is not 0..n-1 is renumbered even when every row is kept.
    odd = {"person": pd.DataFrame({"person_id": [5, 6]}, index=[3, 4])}
    assert select_persons(odd, np.array([5, 6]))["person"].index.tolist() == [0, 1]


def test_visit_counts_match_a_crosstab() -> None:
    rng = np.random.default_rng(0)
    persons = pd.Series(rng.integers(0, 60, 2000))
    concepts = pd.Series(rng.choice([9201, 9202, 9203, 581477, 42], 2000))
    ids = pd.Index(np.arange(5, 55))  # persons outside these ids are not counted
    kinds = np.array([8870, 9201, 9202, 9203, 581477])  # sorted; 42 is not a known type, 8870 never occurs
    expected = pd.crosstab(persons, concepts).reindex(index=ids, columns=kinds).fillna(0).to_numpy(dtype="float64")
    assert np.array_equal(_counts(ids, persons, concepts, kinds), expected)
    assert _counts(ids, persons, concepts, np.array([], dtype=np.int64)).shape == (50, 0)
