"""The generator: control split, determinism, clinical rules, --where, model folder, safeguards, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner
from scipy.stats import ks_2samp

from synthcohort import cdm
from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.errors import CohortTooSmallError, ConfigError, InputError, ModelError
from synthcohort.evaluation.features import _visit_gaps as visit_gaps
from synthcohort.generator import engine_class, load_model
from synthcohort.generator.patient_vector import QUASI_IDENTIFIERS, build_matrix
from synthcohort.generator.safeguards import year_of
from synthcohort.generator.split import split_paths, split_stores
from synthcohort.generator.timeline import _backwards, _fit_span, lay_out
from synthcohort.generator.timeline_stats import Q21, Q101, _era_edges, _gap_persistence, fit_stats
from synthcohort.generator.training import TrainingData, load_training


@pytest.fixture(scope="session")
def fit_progress() -> list[tuple[str, int, int]]:
    """The progress calls of the fit behind ``fitted`` (filled when ``fitted`` is made)."""
    return []


@pytest.fixture(scope="session")
def fitted(
    tmp_path_factory: pytest.TempPathFactory, synthea_1k_store: Path, fit_progress: list[tuple[str, int, int]]
) -> tuple[Path, Path]:
    """A native model fitted once on a private copy of the synthea 1k store: (cohort, model dir)."""
    folder = tmp_path_factory.mktemp("gen")
    cohort = folder / "cohort.duckdb"
    shutil.copy(synthea_1k_store, cohort)
    model = engine_class("native")(seed=7)
    model.fit(cohort, progress=lambda stage, done, total: fit_progress.append((stage, done, total)))
    model.save(folder / "model")
    return cohort, folder / "model"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory, fitted: tuple[Path, Path]) -> Path:
    out = tmp_path_factory.mktemp("synth") / "s.duckdb"
    load_model(fitted[1]).sample(300, out, seed=11)
    return out


def train_store(cohort: Path) -> Path:
    """The training store the fit of ``fitted`` (seed 7, holdout 0.2) wrote beside ``cohort``."""
    return split_paths(cohort, 0.2, 7)[0]


def _content(path: Path) -> dict[str, pa.Table]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            name: con.sql(f'SELECT * FROM "{name}" ORDER BY ALL').to_arrow_table()
            for name in (*cdm.CLINICAL_TABLES, "concept", "cdm_source", "synthcohort_meta")
        }
    finally:
        con.close()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.sql(sql).fetchall()[0][0])


def test_split_written_beside_cohort(fitted: tuple[Path, Path]) -> None:
    cohort, model_dir = fitted
    manifest = json.loads((model_dir / "model.json").read_text())
    train, control = Path(manifest["record"]["train_store"]), Path(manifest["record"]["control_store"])
    assert train == cohort.with_name("cohort.split-s7-h0.2.train.duckdb").resolve()
    assert control == cohort.with_name("cohort.split-s7-h0.2.control.duckdb").resolve()
    with CohortStore.open(train) as t, CohortStore.open(control) as c:
        assert t.get_meta("kind") == "train" and c.get_meta("kind") == "control"
        assert not set(t.person_ids()) & set(c.person_ids())
        with CohortStore.open(cohort) as whole:
            total = whole.person_count()
        assert t.person_count() + c.person_count() == total
        assert c.person_count() == round(total * 0.2)


def test_native_fit_reports_progress_tree_by_tree(
    fitted: tuple[Path, Path], fit_progress: list[tuple[str, int, int]]
) -> None:
    trees = len(load_model(fitted[1]).model.trees)
    assert trees > 100
    assert fit_progress == [("trees", done, trees) for done in range(1, trees + 1)]


def test_same_seed_same_content_other_seed_differs(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    model = load_model(fitted[1])
    model.sample(120, tmp_path / "a.duckdb", seed=5)
    load_model(fitted[1]).sample(120, tmp_path / "b.duckdb", seed=5)
    model.sample(120, tmp_path / "c.duckdb", seed=6)
    a, b, c = (_content(tmp_path / f"{x}.duckdb") for x in "abc")
    assert a == b
    assert a["person"].num_rows == 120
    assert a["condition_occurrence"] != c["condition_occurrence"]


def test_synthetic_store_obeys_clinical_rules(synthetic: Path) -> None:
    con = duckdb.connect(str(synthetic), read_only=True)
    meta = dict(con.sql("SELECT key, value FROM synthcohort_meta").fetchall())
    assert meta["kind"] == "synthetic" and meta["seed"] == "11"
    assert {"model_dir", "train_store", "control_store"} <= meta.keys()
    assert _scalar(con, "SELECT count(*) FROM person") == 300
    assert _scalar(con, "SELECT count(*) FROM person WHERE year_of_birth < 1850 OR year_of_birth > 2026") == 0
    assert _scalar(con, "SELECT count(*) - count(DISTINCT person_id) FROM observation_period") == 0
    assert _scalar(con, "SELECT count(*) FROM person p ANTI JOIN observation_period o USING (person_id)") == 0
    for table, (_, start, end) in cdm.EVENT_TABLES.items():
        birth = "make_date(p.year_of_birth, p.month_of_birth, p.day_of_birth)"
        outside = (
            f'SELECT count(*) FROM "{table}" e JOIN person p USING (person_id) '
            f"JOIN observation_period o USING (person_id) WHERE e.{start} < {birth} "
            f"OR e.{start} < o.observation_period_start_date OR e.{start} > o.observation_period_end_date"
        )
        assert _scalar(con, outside) == 0, table
        if end:
            assert _scalar(con, f'SELECT count(*) FROM "{table}" WHERE {end} < {start}') == 0, table
            assert (
                _scalar(
                    con,
                    f'SELECT count(*) FROM "{table}" e JOIN observation_period o USING (person_id) '
                    f"WHERE e.{end} > o.observation_period_end_date",
                )
                == 0
            ), table
        if table != "visit_occurrence":
            dangling = (
                f'SELECT count(*) FROM "{table}" e LEFT JOIN visit_occurrence v USING (visit_occurrence_id) '
                "WHERE e.visit_occurrence_id IS NOT NULL AND (v.person_id IS NULL OR v.person_id <> e.person_id)"
            )
            assert _scalar(con, dangling) == 0, table
    assert _scalar(con, "SELECT count(*) FROM measurement") > 1000
    # every concept used has its vocabulary row
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM condition_occurrence c ANTI JOIN concept k "
            "ON c.condition_concept_id = k.concept_id WHERE c.condition_concept_id <> 0",
        )
        == 0
    )
    con.close()


def test_where_holds_for_every_person(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    cohort, model_dir = fitted
    con = duckdb.connect(str(train_store(cohort)), read_only=True)
    common = con.sql(
        "SELECT condition_concept_id FROM condition_occurrence WHERE condition_concept_id <> 0 "
        "GROUP BY 1 ORDER BY count(DISTINCT person_id) DESC LIMIT 1"
    ).fetchall()[0][0]
    con.close()
    out = tmp_path / "w.duckdb"
    where = ["sex=F", "age=40-60", f"condition={common}+"]
    load_model(model_dir).sample(60, out, seed=2, where=where)
    s = duckdb.connect(str(out), read_only=True)
    assert _scalar(s, "SELECT count(*) FROM person") == 60
    assert _scalar(s, "SELECT count(*) FROM person WHERE gender_concept_id <> 8532") == 0
    # the age is the one at the end of observation (the last age the record shows)
    outside = (
        "SELECT count(*) FROM person p JOIN observation_period o USING (person_id) "
        "WHERE year(o.observation_period_end_date) - p.year_of_birth NOT BETWEEN 40 AND 60"
    )
    assert _scalar(s, outside) == 0
    lacking = (
        f"SELECT count(*) FROM person p WHERE NOT EXISTS (SELECT 1 FROM condition_occurrence c "
        f"WHERE c.person_id = p.person_id AND c.condition_concept_id = {common})"
    )
    assert _scalar(s, lacking) == 0
    s.close()


def test_where_without_match_fails_clearly(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no training person matches"):
        load_model(fitted[1]).sample(10, tmp_path / "x.duckdb", where=["condition=123456789"])
    assert not (tmp_path / "x.duckdb").exists()
    with pytest.raises(ConfigError):
        load_model(fitted[1]).sample(10, tmp_path / "x.duckdb", where=["colour=blue"])


def test_model_folder_is_plain_data_without_real_rows(fitted: tuple[Path, Path]) -> None:
    model_dir = fitted[1]
    names = sorted(p.name for p in model_dir.iterdir())
    assert all(n.endswith((".json", ".npz", ".parquet")) for n in names), names
    manifest = json.loads((model_dir / "model.json").read_text())
    assert manifest["format_version"] == 11 and manifest["cdm_version"] == "5.4"
    n_train = manifest["record"]["persons_learned"]
    with np.load(model_dir / "native.npz", allow_pickle=False) as arrays:
        for key in arrays.files:
            assert arrays[key].dtype != object
            assert n_train not in arrays[key].shape, key  # no per-person array
    for name in names:
        if name.endswith(".parquet"):
            cols = pa.parquet.read_schema(model_dir / name).names
            assert "person_id" not in cols and "visit_occurrence_id" not in cols
    for raw in (model_dir / "model.json", model_dir / "layout.json"):
        assert "person_source_value" not in raw.read_text()


def test_model_of_another_version_or_altered_is_refused(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(fitted[1], copy)
    manifest = json.loads((copy / "model.json").read_text())
    for key, value in (("tool_version", "0.0.1"), ("format_version", 99), ("cdm_version", "5.3")):
        (copy / "model.json").write_text(json.dumps({**manifest, key: value}))
        with pytest.raises(ModelError):
            load_model(copy)
    (copy / "model.json").write_text(json.dumps(manifest))
    load_model(copy)
    with (copy / "layout.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(ModelError, match="altered"):
        load_model(copy)


def test_too_small_cohort_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "small.duckdb"
    with CohortStore.building(path) as store:
        store.append(
            "person",
            pa.table(
                {
                    "person_id": list(range(1, 41)),
                    "gender_concept_id": [8507] * 40,
                    "year_of_birth": [1970] * 40,
                    "race_concept_id": [0] * 40,
                    "ethnicity_concept_id": [0] * 40,
                }
            ),
        )
        store.set_meta("kind", "real")
    with pytest.raises(CohortTooSmallError, match="at least"):
        engine_class("native")().fit(path)
    assert split_stores(path) == []


def test_cli_fit_and_generate(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "g.duckdb"
    res = runner.invoke(
        cli, ["generate", str(fitted[1]), "-n", "40", "-o", str(out), "--seed", "3", "--where", "sex=M"]
    )
    assert res.exit_code == 0, res.output
    assert "40 persons" in res.output
    cohort = tmp_path / "c.duckdb"
    shutil.copy(fitted[0], cohort)
    res = runner.invoke(cli, ["fit", str(cohort), "-o", str(tmp_path / "m"), "--seed", "1", "--holdout", "0.25"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "model.json").is_file()


@pytest.mark.parametrize(
    "args",
    [["-n", "0"], ["-n", "1000000000"], ["-n", "ten"], ["-n", "5", "--seed", "abc"], ["-n", "5", "--where", "x"]],
)
def test_cli_generate_refuses_bad_input_before_reading(args: list[str], tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["generate", str(tmp_path / "no-model"), "-o", str(tmp_path / "o.duckdb"), *args])
    assert res.exit_code == ConfigError.exit_code, res.output
    assert not (tmp_path / "o.duckdb").exists()


def test_cli_fit_refuses_bad_seed_and_engine(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["fit", str(tmp_path / "c.duckdb"), "-o", str(tmp_path / "m"), "--seed", "x1"])
    assert res.exit_code == ConfigError.exit_code
    res = runner.invoke(cli, ["fit", str(tmp_path / "c.duckdb"), "-o", str(tmp_path / "m"), "--engine", "gan"])
    assert res.exit_code == ConfigError.exit_code


def test_synthetic_store_passes_every_omop_validity_check(synthetic: Path, tmp_path: Path) -> None:
    """Quality bar §1: the synthetic store, and its OMOP export, have 0 violations (FKs to concept included)."""
    from synthcohort.connectors.omop.validate import validate_omop

    store_result = validate_omop(str(synthetic))
    assert store_result.violations == 0, store_result.by_rule()
    out = tmp_path / "omop.duckdb"
    result = CliRunner().invoke(cli, ["export", str(synthetic), "omop", f"duckdb:///{out}"])
    assert result.exit_code == 0, result.output
    exported = validate_omop(f"duckdb:///{out}")
    assert exported.violations == 0, exported.by_rule()


# Chronic pain and drug overdose: about 25 training persons each, mostly the same ones.
PAIR_TABLE = """
    WITH a AS (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_concept_id = 436096),
         b AS (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_concept_id = 4208104)
    SELECT count(*) FILTER (WHERE a.person_id IS NOT NULL AND b.person_id IS NOT NULL),
           count(*) FILTER (WHERE a.person_id IS NOT NULL AND b.person_id IS NULL),
           count(*) FILTER (WHERE a.person_id IS NULL AND b.person_id IS NOT NULL),
           count(*) FILTER (WHERE a.person_id IS NULL AND b.person_id IS NULL)
    FROM person p LEFT JOIN a USING (person_id) LEFT JOIN b USING (person_id)
"""


def _odds_ratio(store: Path) -> float:
    con = duckdb.connect(str(store), read_only=True)
    try:
        both, only_a, only_b, neither = con.sql(PAIR_TABLE).fetchall()[0]
    finally:
        con.close()
    return float(both * neither / max(only_a * only_b, 1))


def test_tight_rare_group_keeps_its_strength(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    """The concept cluster carries a strong association among rare concepts (before clusters the
    synthetic odds ratio came out at less than two thirds of the real one). The synthetic sample
    is large, so that its odds ratio is the model's and not the chance of a few co-holders."""
    layout = json.loads((fitted[1] / "layout.json").read_text())
    keys = pd.read_parquet(fitted[1] / "codes.parquet")["key"]
    assert any({436096, 4208104} <= set(keys[members]) for members in layout["clusters"])
    real = _odds_ratio(train_store(fitted[0]))
    assert real > 20  # the data has the association the test relies on
    load_model(fitted[1]).sample(3000, tmp_path / "large.duckdb", seed=11)
    assert _odds_ratio(tmp_path / "large.duckdb") > real / 1.5


def test_ages_top_coded_at_the_end_of_observation(fitted: tuple[Path, Path]) -> None:
    """90 and over is the age at the end of observation (at death for the dead), not at the end of
    the data, where everyone born long ago would count; and synthetic ages follow the same clock."""
    cohort, model_dir = fitted
    record = json.loads((model_dir / "model.json").read_text())["record"]
    con = duckdb.connect(str(train_store(cohort)), read_only=True)
    try:
        age_at_end = "year(o.observation_period_end_date) - p.year_of_birth"
        from_periods = "FROM person p JOIN observation_period o USING (person_id)"
        old_at_end = _scalar(con, f"SELECT count(*) {from_periods} WHERE {age_at_end} >= 90")
        data_end = _scalar(con, "SELECT max(year(observation_period_end_date)) FROM observation_period")
        old_at_data_end = _scalar(con, f"SELECT count(*) FROM person WHERE {data_end} - year_of_birth >= 90")
    finally:
        con.close()
    assert old_at_data_end > old_at_end  # the data tells the two clocks apart
    assert record["safeguards"]["ages_top_coded"] == old_at_end
    engine = load_model(model_dir)
    rng = np.random.default_rng(4)
    x = engine._persons(engine._roots(500, rng, [], quota=True), rng)
    chunk = lay_out(x.copy(), engine.layout, engine.stats, engine.ref_day, rng)
    end = chunk["observation_period"]["observation_period_end_date"].to_numpy(dtype="int64")
    age = year_of(end) - year_of(chunk["person"]["birth_day"].to_numpy(dtype="int64"))
    assert (age == np.minimum(x[:, 1] * 5 + x[:, 2], 90)).all()


def test_small_clusters_hold_as_many_concepts_as_drawn(fitted: tuple[Path, Path]) -> None:
    """In a cluster of at most six concepts, each synthetic person holds exactly as many of its
    concepts as the cluster variable says (left to each code's tree, the pain cluster's count was
    kept one time in two), and the pain cluster's concepts come out as often as in the training data."""
    engine = load_model(fitted[1])
    layout = engine.layout
    rng = np.random.default_rng(5)
    x = engine._persons(engine._roots(3000, rng, [], quota=True), rng)
    small = [i for i, shares in enumerate(layout.cluster_shares) if shares]
    assert small and any(not shares for shares in layout.cluster_shares)  # both kinds in this model
    code_vars = np.asarray(layout.code_vars)
    for i in small:
        concept = np.asarray(layout.cluster_concepts[i])
        held = x[:, code_vars[layout.clusters[i]]] > 0
        n_held = sum(held[:, concept == u].any(axis=1) for u in range(concept.max() + 1))
        eligible = sum(
            np.column_stack(
                [x[:, layout.variables[c].given] > 0 for c in code_vars[layout.clusters[i]][concept == u]]
            ).any(axis=1)
            for u in range(concept.max() + 1)
        )
        bad = np.flatnonzero(n_held != np.minimum(x[:, layout.cluster_vars[i]], eligible))
        assert not len(bad), (i, bad[:5])  # cluster, persons holding another number than drawn
    keys = engine.codes["key"].to_numpy()
    pain = next(i for i, m in enumerate(layout.clusters) if 436096 in set(keys[m]))
    assert pain in small
    con = duckdb.connect(str(train_store(fitted[0])), read_only=True)
    try:
        persons = _scalar(con, "SELECT count(*) FROM person")
        for concept in (436096, 4208104, 43530652, 4055754):  # chronic pain, overdose, migraine, molars
            sql = f"SELECT count(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id = {concept}"
            real = _scalar(con, sql) / persons
            codes = [c for c in layout.clusters[pain] if abs(keys[c]) == concept]
            synthetic = (x[:, code_vars[codes]] > 0).any(axis=1).mean()
            assert abs(synthetic - real) < 0.35 * real, concept
    finally:
        con.close()


def test_domain_totals_kept_when_concepts_outnumber_them(fitted: tuple[Path, Path]) -> None:
    """A person drawn with more concepts than their domain total keeps them all, and the surplus is
    taken back from other persons' repeats: the chunk's events match the totals it drew (before this,
    conditions and observations came out 5-7 % above the real mean)."""

    engine = load_model(fitted[1])
    rng = np.random.default_rng(3)
    x = engine.model.sample(engine._roots(2000, rng, [], quota=True), rng)
    layout = engine.layout
    chunk = lay_out(x.copy(), layout, engine.stats, engine.ref_day, rng)
    codes = np.asarray(layout.code_vars)[engine.codes["domain"].to_numpy() == "condition_occurrence"]
    surplus = np.maximum((x[:, codes] > 0).sum(axis=1) - np.round(x[:, layout.total_vars["condition_occurrence"]]), 0)
    assert surplus.sum() > 100  # the draws have the surplus the test is about
    drawn = np.round(x[:, layout.total_vars["condition_occurrence"]]).sum()
    assert abs(len(chunk["condition_occurrence"]) / drawn - 1) < 0.02


@pytest.mark.parametrize(
    "field",
    ["cluster_places", "cluster_order_share", "clusters", "cluster_days", "cluster_concepts", "cluster_same_day"],
)
def test_model_with_consistent_checksums_but_bad_clusters_is_refused(
    fitted: tuple[Path, Path], tmp_path: Path, field: str
) -> None:
    """A model edited by hand, checksums recomputed, is still checked for what its arrays can hold."""
    from synthcohort.generator.modelfile import sha256_file

    copy = tmp_path / "m"
    shutil.copytree(fitted[1], copy)
    layout = json.loads((copy / "layout.json").read_text())
    assert layout["clusters"]  # the data has clusters to tamper with
    if field == "cluster_order_share":
        layout[field][0] = 2.0
    else:
        layout[field][0][0] = 10**9
    (copy / "layout.json").write_text(json.dumps(layout))
    manifest = json.loads((copy / "model.json").read_text())
    manifest["files"]["layout.json"] = sha256_file(copy / "layout.json")
    (copy / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="do not fit together"):
        load_model(copy)


def test_window_fitted_on_the_longest_gap() -> None:
    """A drawn visit sequence is fitted to the window through its longest gap, the others keep their
    real lengths; where the longest gap cannot absorb the difference, every gap is scaled."""
    days = np.array([0.0, 30, 60, 400, 430, 10, 20, 5])
    n_vis = np.array([5, 2, 0, 1])
    end = np.array([430.0, 20, 0, 5])
    total = np.array([430.0, 10, 0, 0])
    wider = _fit_span(days, n_vis, end, total, np.array([500.0, 5, 0, 0]))
    assert wider.tolist() == [-70, -40, -10, 400, 430, 15, 20, 5]
    narrower = _fit_span(days, n_vis, end, total, np.array([100.0, 5, 0, 0]))
    assert narrower.tolist() == [330, 360, 390, 400, 430, 15, 20, 5]
    scaled = _fit_span(days, n_vis, end, total, np.array([43.0, 5, 0, 0]))
    assert scaled.tolist() == [387, 390, 393, 427, 430, 15, 20, 5]


def test_visit_rhythm_keeps_real_gaps(synthetic: Path, fitted: tuple[Path, Path]) -> None:
    """Synthea's patients come back after about a month and about a year; scaling every gap to fit
    the window spread those peaks (gap KS 0.066 to 0.090 over 12 seeds); fitting on the longest gap
    keeps them (0.025 to 0.059)."""
    with CohortStore.open(train_store(fitted[0])) as real, CohortStore.open(synthetic) as synth:
        assert ks_2samp(visit_gaps(real), visit_gaps(synth)).statistic < 0.06


def test_calendar_eras_of_the_visit_rhythm_are_whole_years() -> None:
    """Eras are years merged from the latest back until each holds enough gaps: a step in density at
    a new year (sparse 2000s, dense from 2009) falls on an era's edge instead of inside an era."""
    days = np.array(
        [
            "2000-05-01",
            "2004-03-01",
            "2008-03-01",
            "2009-01-02",
            "2009-06-01",
            "2010-01-01",
            "2010-02-02",
            "2011-01-01",
        ],
        dtype="datetime64[D]",
    ).astype(np.int64)
    edges = _era_edges(days.astype(float), 2)
    assert np.isneginf(edges[0]) and np.isposinf(edges[-1])
    inner = edges[1:-1].astype(np.int64).astype("datetime64[D]").astype(str).tolist()
    assert inner == ["2009-01-01", "2010-01-01"]  # 2000 is too few alone: it joins 2004-2008
    era = np.searchsorted(edges, days, side="right") - 1
    assert (np.bincount(era) >= 2).all()  # the oldest years join the era after them
    assert _era_edges(days.astype(float), 100).tolist() == [-np.inf, np.inf]


def _training_data(fitted: tuple[Path, Path], k: int) -> TrainingData:
    """What the fit of ``fitted`` learned from (after the safeguards), read again from its training store."""
    with CohortStore.open(train_store(fitted[0])) as store:
        return load_training(store, k)


def test_visit_rhythm_cells_hold_gaps_of_at_least_k_persons(fitted: tuple[Path, Path]) -> None:
    """A cell of the visit rhythm (rate x era) keeps its own gap quantiles only when its gaps come from
    at least k persons: eleven gaps of two persons would store those two persons' gaps as they are."""
    k = 11
    data = _training_data(fitted, k)
    stats = fit_stats(data, sorted(int(t) for t in data.visits["concept"].unique()), k)
    visits = data.visits.sort_values(["person_id", "start"], kind="stable")
    per = visits.groupby("person_id")["start"]
    has = per.diff().notna().to_numpy()
    rate = ((per.transform("size") - 1) / (per.transform("max") - per.transform("min")).clip(lower=1)).to_numpy()
    gap = per.diff().to_numpy(dtype="float64")[has]
    whose = visits["person_id"].to_numpy()[has]
    edges, eras = stats["gap_edges"], stats["gap_era_edges"]
    bucket = np.clip(np.searchsorted(edges, rate[has], side="right") - 1, 0, len(edges) - 2)
    era = np.clip(
        np.searchsorted(eras, visits["start"].to_numpy(dtype="float64")[has], side="right") - 1, 0, len(eras) - 2
    )
    few = 0
    for b in range(len(edges) - 1):
        for c in range(len(eras) - 1):
            mask = (bucket == b) & (era == c)
            own = np.quantile(gap[mask], Q101, method="inverted_cdf") if mask.any() else None
            row = stats["gap_q"][b * (len(eras) - 1) + c]
            if len(np.unique(whose[mask])) >= k:
                assert np.array_equal(row, own)
            elif mask.sum() >= k:  # enough gaps, too few persons
                few += 1
                assert not np.array_equal(row, own)
    assert few > 0  # the data has cells the rule is about


def test_event_durations_of_a_code_come_from_at_least_k_persons(fitted: tuple[Path, Path]) -> None:
    """A code keeps its own duration quantiles only when at least k persons have an end date for it;
    otherwise it takes its domain's durations (a code held by k persons, of whom two have end dates,
    would store those two persons' durations)."""
    k = 11
    data = _training_data(fitted, k)
    stats = fit_stats(data, sorted(int(t) for t in data.visits["concept"].unique()), k)
    few = 0
    for events in data.events.values():
        durations = np.maximum(events["end"].to_numpy(dtype="float64") - events["start"].to_numpy(dtype="float64"), 0)
        ended = np.isfinite(durations)
        domain = np.quantile(durations[ended], Q21) if ended.any() else None
        for code, rows in events.groupby("code").indices.items():
            own = durations[rows][ended[rows]]
            persons = events["person_id"].to_numpy()[rows][ended[rows]]
            row = stats["dur_q"][int(code)]
            if len(np.unique(persons)) >= k:
                assert np.allclose(row, np.quantile(own, Q21))
            elif len(own):
                few += 1
                assert np.allclose(row, domain)
    assert few > 0  # the data has codes the rule is about


def test_values_of_fewer_than_k_persons_are_not_learned(fitted: tuple[Path, Path]) -> None:
    """A measurement held by k persons but with a value for only three of them is emitted without a
    value: quantiles of three persons' values would store those values."""
    k = 11
    data = _training_data(fitted, k)
    m = data.events["measurement"]
    code = int(m.groupby("code")["person_id"].nunique().idxmax())
    few = m["person_id"][m["code"] == code].drop_duplicates().iloc[:3]
    m.loc[(m["code"] == code) & ~m["person_id"].isin(few), "value_as_number"] = np.nan
    assert np.isfinite(m.loc[m["code"] == code, "value_as_number"].to_numpy(dtype="float64")).any()
    stats = fit_stats(data, sorted(int(t) for t in data.visits["concept"].unique()), k)
    assert stats["value_null"][code] == 1.0 and not stats["value_q"][code].any()
    assert (stats["value_null"] < 1).any()  # the other measurements keep their values


def test_quasi_identifiers_come_from_leaves_of_twice_min_leaf(fitted: tuple[Path, Path]) -> None:
    """Year of birth, race, ethnicity and the dates of care, what an attacker most likely knows, are
    drawn from leaves of at least 2 x min_leaf training persons; the other trees keep min_leaf."""
    model = load_model(fitted[1])
    min_leaf = model.params["min_leaf"]
    layout = model.layout
    x = build_matrix(_training_data(fitted, model.params["k"]), layout)
    smallest = {}
    for name in (*QUASI_IDENTIFIERS, "visits_9202", "total_measurement"):
        j = layout.index(name)
        leaves = np.bincount(model.model.trees[j - 2].apply(x))
        smallest[name] = leaves[leaves > 0].min()
    for name in QUASI_IDENTIFIERS:
        assert smallest[name] >= 2 * min_leaf, name
    # the rule is about something: other trees split down to min_leaf
    assert min(smallest["visits_9202"], smallest["total_measurement"]) < 2 * min_leaf


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_gaps_of_one_person_run_short_or_long_together(rho: float) -> None:
    """The fit measures how much a person's gaps share their place among the gaps of their cell, and
    sampling draws each person's gaps with that much in common: a round trip gives it back."""
    rng = np.random.default_rng(5)
    persons, per = 400, 15
    level = np.repeat(rng.standard_normal(persons), per)
    gaps = np.round(30 * np.exp(rho * level + np.sqrt(1 - rho**2) * rng.standard_normal(persons * per)))
    whose = np.repeat(np.arange(persons), per)
    cell = np.zeros(len(gaps), dtype=np.int64)
    gap_q = np.quantile(gaps, Q101, method="inverted_cdf")[None, :]
    measured = _gap_persistence(gaps, cell, whose, gap_q)
    assert abs(measured - rho) < 0.08
    stats = {"gap_q": gap_q, "gap_era_edges": np.array([-np.inf, np.inf]), "gap_rho": np.array([measured])}
    n_vis = np.full(persons, per + 1)
    days, _ = _backwards(n_vis, np.full(persons, 20_000.0), np.zeros(persons, dtype=np.int64), stats, rng)
    drawn = np.diff(days.reshape(persons, per + 1), axis=1).ravel()
    assert abs(_gap_persistence(drawn, cell, whose, gap_q) - rho) < 0.08
