"""The native-vs-SDV bench says which engine came nearer each figure's goal."""

from __future__ import annotations

from bench.generator_bench import compare


def test_nearer_goal_per_kind_of_figure() -> None:
    native = {"age_tvd": 0.08, "prev_r": 0.99, "ratio_visit": 0.97, "dcr": 0.46, "infer": -0.02, "fit_s": 1.0}
    sdv = {"age_tvd": 0.2, "prev_r": 0.999, "ratio_visit": 1.01, "dcr": 0.53, "infer": -0.05, "fit_s": 60.0}
    assert compare(native, sdv) == {
        "age_tvd": "native",  # lower distance
        "prev_r": "sdv",  # higher correlation
        "ratio_visit": "sdv",  # nearer 1
        "dcr": "sdv",  # nearer 0.5, whichever side
        "infer": "tie",  # both risks at or below 0
    }
