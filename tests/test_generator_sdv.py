"""The SDV engine: same contract, output through the same safeguards (skipped when sdv is absent)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import duckdb
import pytest

from synthcohort.errors import DependencyMissing
from synthcohort.generator import engine_class, load_model

HAS_SDV = importlib.util.find_spec("sdv") is not None


@pytest.mark.skipif(not HAS_SDV, reason="sdv is not installed (pip install 'synthcohort[sdv]')")
def test_sdv_engine_fits_samples_and_obeys_rules(synthea_1k_store: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "small.duckdb"
    shutil.copy(synthea_1k_store, cohort)
    con = duckdb.connect(str(cohort))
    keep = "person_id IN (SELECT person_id FROM person ORDER BY person_id LIMIT 80)"
    for table in (
        "measurement",
        "drug_exposure",
        "condition_occurrence",
        "procedure_occurrence",
        "observation",
        "visit_occurrence",
        "observation_period",
        "person",
    ):
        con.execute(f"DELETE FROM {table} WHERE NOT ({keep})")
    con.close()
    engine_class("sdv")(seed=3, k=5, holdout=0.25).fit(cohort).save(tmp_path / "m")
    out = tmp_path / "s.duckdb"
    load_model(tmp_path / "m").sample(20, out, seed=1)
    s = duckdb.connect(str(out), read_only=True)
    assert s.sql("SELECT value FROM synthcohort_meta WHERE key = 'engine'").fetchall() == [("sdv",)]
    assert s.sql("SELECT count(*) FROM person").fetchall()[0][0] == 20
    for table, start, end in (
        ("visit_occurrence", "visit_start_date", "visit_end_date"),
        ("drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"),
    ):
        bad = s.sql(
            f"SELECT count(*) FROM {table} e JOIN observation_period o USING (person_id) "
            "JOIN person p USING (person_id)"
            f" WHERE {end} < {start} OR {start} < o.observation_period_start_date"
            f" OR {start} > o.observation_period_end_date OR year({start}) < p.year_of_birth"
        ).fetchall()[0][0]
        assert bad == 0, table
    s.close()
    _pickle_loads_only_when_signed(tmp_path / "m", tmp_path)


def _pickle_loads_only_when_signed(model: Path, tmp_path: Path) -> None:
    """SDV's file is a pickle: refused unsigned or altered, even when the manifest checksums are rewritten."""
    import hashlib
    import json

    from synthcohort.errors import ModelError

    def rehash(folder: Path, drop: str | None = None) -> None:
        manifest = json.loads((folder / "model.json").read_text())
        manifest["files"] = {
            name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in manifest["files"] if name != drop
        }
        (folder / "model.json").write_text(json.dumps(manifest))

    assert (model / "sdv_hma.pkl.sig").is_file()
    unsigned = tmp_path / "unsigned"
    shutil.copytree(model, unsigned)
    (unsigned / "sdv_hma.pkl.sig").unlink()
    rehash(unsigned, drop="sdv_hma.pkl.sig")
    with pytest.raises(ModelError, match="not signed"):
        load_model(unsigned)
    altered = tmp_path / "altered"
    shutil.copytree(model, altered)
    with (altered / "sdv_hma.pkl").open("ab") as fh:
        fh.write(b"\x00")
    rehash(altered)
    with pytest.raises(ModelError, match="altered after it was signed"):
        load_model(altered)


def test_sdv_engine_without_sdv_names_the_pip_line(
    synthea_1k_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("sdv", "sdv.metadata", "sdv.multi_table"):
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    cohort = tmp_path / "c.duckdb"
    shutil.copy(synthea_1k_store, cohort)
    with pytest.raises(DependencyMissing, match="sdv") as err:
        engine_class("sdv")().fit(cohort)
    assert "pip install" in str(err.value.hint)
