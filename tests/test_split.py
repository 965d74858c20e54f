"""The split stores: one pair per seed and holdout beside the cohort, reused only when they hold this split."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import META_TABLE, CohortStore
from synthcohort.errors import CohortTooSmallError, InputError
from synthcohort.evaluation.api import evaluate
from synthcohort.generator import engine_class
from synthcohort.generator.split import check_size, smallest_cohort, split_cohort, split_paths, split_stores
from tests.bad_inputs.inputs import write_omop_csv


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cohort store of 150 hand-written persons (copy it before fitting beside it)."""
    base = tmp_path_factory.mktemp("split")
    cohort = base / "cohort.duckdb"
    source = write_omop_csv(base / "input", persons=150)
    result = CliRunner().invoke(cli, ["extract", "omop", str(source), "-o", str(cohort)])
    assert result.exit_code == 0, result.output
    return cohort


@pytest.fixture
def cohort(small_cohort: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(small_cohort, tmp_path / "cohort.duckdb"))


def _stat_keys(paths: tuple[Path, ...]) -> list[tuple[int, int]]:
    return [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths]


def _drop_one_person(cohort: Path) -> None:
    with duckdb.connect(str(cohort)) as con:
        con.execute("DELETE FROM person WHERE person_id = (SELECT max(person_id) FROM person)")


def test_split_stores_are_named_after_seed_and_holdout(tmp_path: Path) -> None:
    assert [p.name for p in split_paths(tmp_path / "c.duckdb", 0.25, 7)] == [
        "c.split-s7-h0.25.train.duckdb",
        "c.split-s7-h0.25.control.duckdb",
    ]


def test_split_stores_lists_every_pair_beside_the_cohort_and_nothing_else(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort.duckdb"
    pairs = [*split_paths(cohort, 0.2, 1), *split_paths(cohort, 0.05, 2**63 - 1)]
    others = ["cohort.duckdb", "other.split-s1-h0.2.train.duckdb", "cohort.train.duckdb", "synthetic.duckdb"]
    for path in (*pairs, *(tmp_path / name for name in others)):
        path.touch()
    assert split_stores(cohort) == sorted(pairs)


@pytest.mark.parametrize(
    ("persons", "holdout", "message", "hint"),
    [
        (1, 0.2, "has 1 person: a holdout of 0.2 leaves 1 person to learn from and 0 to measure", "98 persons"),
        (300, 0.05, "has 300 persons: a holdout of 0.05 leaves 285 persons to learn from and 15 to", "390 persons"),
        (2_000, 0.99, "has 2,000 persons: a holdout of 0.99 leaves 20 persons to learn from and 1,980 to", "4,950"),
    ],
)
def test_a_cohort_too_small_to_split_is_told_with_its_counts(
    persons: int, holdout: float, message: str, hint: str
) -> None:
    with pytest.raises(CohortTooSmallError) as caught:
        check_size(persons, holdout)
    assert message in caught.value.message and hint in (caught.value.hint or "")


@pytest.mark.parametrize("holdout", [0.05, 0.07, 0.1, 0.2, 0.25, 0.33, 0.5])
def test_the_smallest_cohort_named_is_the_smallest_that_splits(holdout: float) -> None:
    n = smallest_cohort(holdout)
    check_size(n, holdout)
    with pytest.raises(CohortTooSmallError):
        check_size(n - 1, holdout)


def test_the_split_is_logged_with_its_counts(cohort: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="synthcohort"):
        split_cohort(cohort, 0.2, 7)
    assert "split cohort.duckdb: 120 persons to learn from, 30 held out" in caplog.messages


def test_fits_with_other_seeds_and_holdouts_keep_their_own_split_and_stay_evaluable(
    cohort: Path, tmp_path: Path
) -> None:
    """Each fit learns beside a split of its own: both models' synthetic stores are evaluated against the split
    their model learned from (a shared split would refuse the first as rewritten)."""
    runs = [(3, 0.2), (4, 0.25)]
    for seed, holdout in runs:
        model = engine_class("native")(seed=seed, holdout=holdout).fit(cohort)
        assert not model.split_reused
        model.sample(60, tmp_path / f"synthetic-{seed}.duckdb", seed=1)
    for seed, holdout in runs:
        stores = evaluate(cohort, tmp_path / f"synthetic-{seed}.duckdb").stores
        assert stores.control is not None
        assert (stores.training.resolve(), stores.control.resolve()) == tuple(
            p.resolve() for p in split_paths(cohort, holdout, seed)
        )


def test_a_second_fit_with_the_same_seed_and_holdout_reuses_the_split(cohort: Path, tmp_path: Path) -> None:
    argv = ["fit", str(cohort), "--seed", "5", "--holdout", "0.3", "-o"]
    first = CliRunner().invoke(cli, [*argv, str(tmp_path / "first")])
    assert first.exit_code == 0, first.output
    paths = split_paths(cohort, 0.3, 5)
    assert "reused" not in first.output and all(str(p.resolve()) in first.output for p in paths)
    before = _stat_keys(paths)
    second = CliRunner().invoke(cli, [*argv, str(tmp_path / "second")])
    assert second.exit_code == 0, second.output
    assert second.output.count("(reused") == 2
    assert _stat_keys(paths) == before
    manifests = [json.loads((tmp_path / name / "model.json").read_text()) for name in ("first", "second")]
    assert manifests[0]["files"] == manifests[1]["files"]
    for manifest in manifests:
        del manifest["record"]["model_dir"]
    assert manifests[0]["record"] == manifests[1]["record"]


def test_a_split_of_other_content_under_the_same_name_is_rewritten(cohort: Path, small_cohort: Path) -> None:
    """Split stores with the right name, seed and holdout but made from another cohort's content are not
    reused: the split is written again from this cohort, and that one is reused next time."""
    split_cohort(small_cohort, 0.2, 7)
    stale = split_paths(cohort, 0.2, 7)
    for theirs, ours in zip(split_paths(small_cohort, 0.2, 7), stale, strict=True):
        shutil.copy(theirs, ours)
    _drop_one_person(cohort)
    before = _stat_keys(stale)
    split = split_cohort(cohort, 0.2, 7)
    assert not split.reused and _stat_keys(stale) != before
    with CohortStore.open(cohort) as whole:
        digest, persons = whole.content_digest(), whole.person_count()
    for path in stale:
        with CohortStore.open(path) as store:
            assert store.get_meta("split_of") == digest
    assert split.train_persons + split.control_persons == persons
    assert split_cohort(cohort, 0.2, 7).reused


def test_a_split_store_that_is_not_a_store_is_rewritten(cohort: Path) -> None:
    """A file under a split store's name that no complete split wrote (a leftover, a damaged copy) is replaced."""
    train, control = split_paths(cohort, 0.2, 7)
    split_cohort(cohort, 0.2, 7)
    train.write_bytes(b"not a DuckDB file")
    assert not split_cohort(cohort, 0.2, 7).reused
    with CohortStore.open(train) as store:
        assert store.get_meta("kind") == "train"


def test_a_split_store_beside_a_write_ahead_log_is_rewritten(cohort: Path) -> None:
    """A write-ahead log beside a split store says a write to it may have been interrupted: the split is
    written again rather than reused, and the log of the replaced file does not stay beside the new one."""
    train, control = split_paths(cohort, 0.2, 7)
    split_cohort(cohort, 0.2, 7)
    with duckdb.connect(str(train)) as con:  # a change left in the log, as by a process that stopped mid-way
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
        con.execute(f"INSERT INTO {META_TABLE} VALUES ('note', 'unfinished')")
    wal = Path(f"{train}.wal")
    assert wal.exists()
    before = _stat_keys((train,))
    assert not split_cohort(cohort, 0.2, 7).reused
    assert _stat_keys((train,)) != before and not wal.exists()
    with CohortStore.open(train) as store:
        assert store.get_meta("kind") == "train" and store.get_meta("note") is None
    assert split_cohort(cohort, 0.2, 7).reused


def test_split_stores_under_their_former_names_are_named_for_deletion_not_deleted(
    cohort: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """COHORT.train.duckdb and COHORT.control.duckdb, the split as older versions named it, are copies of real
    patients no fit reads: a fit that writes or reuses its split names them, and leaves them in place. A file
    under such a name that is not a split (the user's own store) is not named."""
    train, control = split_paths(cohort, 0.2, 7)
    split_cohort(cohort, 0.2, 7)
    old_train = shutil.copy(train, cohort.with_name("cohort.train.duckdb"))
    shutil.copy(cohort, cohort.with_name("cohort.control.duckdb"))
    for seed, reused in ((8, False), (7, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="synthcohort"):
            assert split_cohort(cohort, 0.2, seed).reused == reused
        (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert str(old_train) in warning and "cohort.control.duckdb" not in warning
        assert "copies of real patients" in warning and "can be deleted" in warning
    assert Path(old_train).exists() and cohort.with_name("cohort.control.duckdb").exists()


def test_evaluation_refuses_a_split_rewritten_for_a_changed_cohort(cohort: Path, tmp_path: Path) -> None:
    """A fit with the same seed and holdout on a changed cohort rewrites the split: evaluating the first model
    against it would count training patients as controls. The fingerprints in the synthetic store say so."""
    model = engine_class("native")(seed=3).fit(cohort)
    model.sample(60, tmp_path / "s.duckdb", seed=1)
    _drop_one_person(cohort)
    assert not split_cohort(cohort, 0.2, 3).reused  # what a second fit with the same seed writes
    with pytest.raises(InputError, match="no longer the split the model was fitted with"):
        evaluate(cohort, tmp_path / "s.duckdb")
