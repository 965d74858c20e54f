"""Measurement values follow age: a synthetic child is as tall as real children, not as an adult."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.reader import read_fhir
from synthcohort.generator import engine_class, load_model
from tests.conftest import shared_path

# Body height (LOINC 8302-2): the FHIR bundles carry realistic values, children and adults alike.
MEDIAN_HEIGHT = """
    SELECT CASE WHEN datediff('year', make_date(p.year_of_birth, coalesce(p.month_of_birth, 7),
                                                coalesce(p.day_of_birth, 1)), m.measurement_date) < 10
                THEN 'child' ELSE 'adult' END AS age, median(m.value_as_number) AS cm, count(*) AS n
    FROM measurement m JOIN person p USING (person_id)
    JOIN concept c ON c.concept_id = m.measurement_source_concept_id
    WHERE c.concept_code = '8302-2' AND m.value_as_number IS NOT NULL GROUP BY 1
"""


def _heights(path: Path) -> dict[str, tuple[float, int]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {age: (float(cm), int(n)) for age, cm, n in con.sql(MEDIAN_HEIGHT).fetchall()}
    finally:
        con.close()


@pytest.fixture(scope="module")
def fhir_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundles = shared_path("data", "synthea-fhir-r4-bundles", "bundles")
    path = tmp_path_factory.mktemp("fhir-gen") / "fhir.duckdb"
    with CohortStore.building(path) as store:
        read_fhir(bundles, store)
        store.set_meta("kind", "real")
    return path


def test_values_follow_age(fhir_cohort: Path, tmp_path: Path) -> None:
    model = engine_class("native")(seed=1)
    model.fit(fhir_cohort)
    model.save(tmp_path / "model")
    load_model(tmp_path / "model").sample(600, tmp_path / "s.duckdb", seed=2)
    real = _heights(Path(model.record["train_store"]))
    synth = _heights(tmp_path / "s.duckdb")
    assert real["child"][0] < 0.7 * real["adult"][0]  # the data has the contrast the test relies on
    assert synth["child"][1] >= 20 and synth["adult"][1] >= 20
    assert synth["child"][0] < 0.7 * synth["adult"][0]
    assert abs(synth["child"][0] - real["child"][0]) < 0.25 * real["child"][0]
    assert abs(synth["adult"][0] - real["adult"][0]) < 0.1 * real["adult"][0]
