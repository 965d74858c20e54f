"""The held-out control split: made before anything is learned, written as two stores beside the cohort.

The split is fixed by the cohort's content, the seed and the holdout, and its stores are named after the
seed and the holdout (COHORT.split-s7-h0.2.train.duckdb): fits with another seed or holdout keep their own
split, and a fit that finds the split it would write already there reuses it. Older versions named the pair
COHORT.train.duckdb / COHORT.control.duckdb: a fit names any it finds, for the user to delete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pyarrow as pa

from synthcohort import __version__, cdm
from synthcohort.cohort import CohortStore
from synthcohort.errors import CohortTooSmallError, SynthcohortError
from synthcohort.text import plural

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_TRAIN_PERSONS = 50
MIN_CONTROL_PERSONS = 20


@dataclass(frozen=True)
class Split:
    train: Path
    control: Path
    train_persons: int
    control_persons: int
    cohort_fingerprint: str  # the content digest of the cohort the split was made from
    reused: bool = False  # found already written by an earlier fit (not part of the record: the model is the same)

    def record(self) -> dict[str, object]:
        """What a model keeps about the split: paths and fingerprints, never rows."""
        return {
            "cohort_fingerprint": self.cohort_fingerprint,
            "train_store": str(self.train.resolve()),
            "train_fingerprint": store_fingerprint(self.train),
            "train_persons": self.train_persons,
            "control_store": str(self.control.resolve()),
            "control_fingerprint": store_fingerprint(self.control),
            "control_persons": self.control_persons,
        }


def store_fingerprint(path: Path) -> str:
    """A digest of a store's content (not of its file bytes, which DuckDB may rewrite)."""
    with CohortStore.open(path) as store:
        return store.content_digest()


def _stem(cohort: Path) -> str:
    return cohort.name[: -len(".duckdb")] if cohort.name.endswith(".duckdb") else cohort.name


def holdout_text(holdout: float) -> str:
    """The holdout as the split's name and meta give it: the shortest text that reads back as the same number."""
    return repr(float(holdout))


def split_paths(cohort: Path, holdout: float, seed: int) -> tuple[Path, Path]:
    """COHORT.split-sSEED-hHOLDOUT.train.duckdb and its .control.duckdb: one pair per seed and holdout."""
    prefix = f"{_stem(cohort)}.split-s{seed}-h{holdout_text(holdout)}"
    return cohort.with_name(f"{prefix}.train.duckdb"), cohort.with_name(f"{prefix}.control.duckdb")


def split_stores(cohort: Path) -> list[Path]:
    """The split stores beside ``cohort``, whatever their seed and holdout."""
    return sorted(cohort.parent.glob(f"{_stem(cohort)}.split-s*-h*.*.duckdb"))


def old_split_paths(cohort: Path) -> dict[str, Path]:
    """The names older versions gave the split stores beside ``cohort``, by kind: COHORT.train.duckdb and
    COHORT.control.duckdb."""
    return {kind: cohort.with_name(f"{_stem(cohort)}.{kind}.duckdb") for kind in ("train", "control")}


def old_split_stores(cohort: Path) -> list[Path]:
    """The split stores beside ``cohort`` under :func:`old_split_paths`, which no fit reads any more: only
    files whose meta says they are that split."""
    found = []
    for kind, path in old_split_paths(cohort).items():
        meta = _read_store(path, CohortStore.meta)
        if meta is not None and meta.get("kind") == kind and "split_of" in meta:
            found.append(path)
    return found


def _sizes(n_persons: int, holdout: float) -> tuple[int, int]:
    n_control = int(round(n_persons * holdout))
    return n_persons - n_control, n_control


def smallest_cohort(holdout: float) -> int:
    """The fewest persons whose split by ``holdout`` leaves enough to learn from and to measure risk against."""
    n = MIN_TRAIN_PERSONS + MIN_CONTROL_PERSONS
    while True:
        n_train, n_control = _sizes(n, holdout)
        if n_train >= MIN_TRAIN_PERSONS and n_control >= MIN_CONTROL_PERSONS:
            return n
        n += 1


def check_size(n_persons: int, holdout: float) -> tuple[int, int]:
    n_train, n_control = _sizes(n_persons, holdout)
    if n_train < MIN_TRAIN_PERSONS or n_control < MIN_CONTROL_PERSONS:
        raise CohortTooSmallError(
            f"the cohort has {plural(n_persons, 'person')}: a holdout of {holdout:g} "
            f"leaves {plural(n_train, 'person')} to learn from and {n_control:,} to measure risk against; "
            f"at least {MIN_TRAIN_PERSONS} and {MIN_CONTROL_PERSONS} are needed",
            f"use a cohort of at least {smallest_cohort(holdout):,} persons or change --holdout",
        )
    return n_train, n_control


def split_cohort(cohort: Path, holdout: float, seed: int) -> Split:
    """The split named by :func:`split_paths`, persons assigned at random by ``seed``: reused when both stores
    already hold this split of this cohort's content, written otherwise."""
    train_path, control_path = split_paths(cohort, holdout, seed)
    with CohortStore.open(cohort) as source:
        ids = np.asarray(source.person_ids(), dtype=np.int64)
        _, n_control = check_size(len(ids), holdout)
        order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(len(ids))
        control_ids = np.sort(ids[order[:n_control]])
        train_ids = np.sort(ids[order[n_control:]])
        fingerprint = source.content_digest()
        parts = ((train_path, "train", train_ids), (control_path, "control", control_ids))
        wanted = {"split_of": fingerprint, "holdout": holdout_text(holdout), "split_seed": str(seed)}
        reused = all(_holds_part(path, {**wanted, "kind": kind}, members) for path, kind, members in parts)
        if reused:
            log.info("split %s: reusing %s and %s", cohort.name, train_path.name, control_path.name)
        else:
            for path, kind, members in parts:
                _write_part(source, path, kind, members, fingerprint, holdout, seed)
    old = old_split_stores(cohort)
    if old:
        log.warning(
            "split %s: found %s, written by an older version under the split's former names: copies of real "
            "patients that no fit uses any more, which can be deleted",
            cohort.name,
            " and ".join(str(path) for path in old),
        )
    learn, held = plural(len(train_ids), "person"), f"{len(control_ids):,}"
    log.info("split %s: %s to learn from, %s held out", cohort.name, learn, held)
    return Split(train_path, control_path, len(train_ids), len(control_ids), fingerprint, reused)


def _holds_part(path: Path, wanted: dict[str, str], members: np.ndarray) -> bool:
    """Whether the store at ``path`` is the wanted part: its meta and its persons. A store is published under
    its name only once complete (:meth:`CohortStore.building`), so an interrupted split leaves none to find;
    a file that cannot be read as a store is not reused, nor one beside a write-ahead log (a write to it may
    have been interrupted)."""
    if Path(f"{path}.wal").exists():
        return False
    found = _read_store(path, lambda store: (store.meta(), store.person_ids()))
    if found is None:
        return False
    meta, persons = found
    return all(meta.get(key) == value for key, value in wanted.items()) and persons == members.tolist()


def _read_store(path: Path, read: Callable[[CohortStore], T]) -> T | None:
    """What ``read`` finds in the store at ``path``; None when no plain file there reads as a store."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        with CohortStore.open(path) as store:
            return read(store)
    except (SynthcohortError, duckdb.Error):
        return None


def _write_part(
    source: CohortStore, path: Path, kind: str, members: np.ndarray, fingerprint: str, holdout: float, seed: int
) -> None:
    with CohortStore.building(path, overwrite=True) as store:
        con = source.con.cursor()  # its own cursor: the store's connection may hold a pending result
        con.register("_members", pa.table({"person_id": members}))
        try:
            # Rows in a fixed order (DuckDB returns an unordered read in whatever order its threads
            # finish): the parts, and so what a fit reads from them, depend on the cohort's content only.
            for name in cdm.CLINICAL_TABLES:
                rel = con.sql(f'SELECT t.* FROM "{name}" t SEMI JOIN _members m USING (person_id) ORDER BY ALL')
                for batch in rel.to_arrow_reader(200_000):
                    store.append(name, batch)
            for name in cdm.VOCABULARY_TABLES + cdm.METADATA_TABLES:
                store.append(name, con.sql(f'SELECT * FROM "{name}" ORDER BY ALL').to_arrow_table())
        finally:
            con.unregister("_members")
            con.close()
        store.set_meta("kind", kind)
        store.set_meta("source_kind", source.get_meta("source_kind", "") or "")
        store.set_meta("split_of", fingerprint)
        store.set_meta("holdout", holdout_text(holdout))
        store.set_meta("split_seed", str(seed))
        store.set_meta("created_by", f"synthcohort {__version__}")
