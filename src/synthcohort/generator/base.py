"""The engine contract: the base owns fit, sample, save, load, seeding, the control split and safeguards."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthcohort import __version__
from synthcohort.cohort import CohortStore
from synthcohort.errors import ConfigError, InputError, ModelError
from synthcohort.generator import modelfile, rules
from synthcohort.generator import where as where_mod
from synthcohort.generator.chunk import DATES, Chunk, select_persons
from synthcohort.generator.split import split_cohort, split_paths, store_fingerprint
from synthcohort.generator.training import TrainingData, load_training
from synthcohort.generator.writer import SyntheticWriter
from synthcohort.text import plural

log = logging.getLogger(__name__)

# engine name -> "module:Class"; modules are imported only when the engine is used.
ENGINES: dict[str, str] = {
    "native": "synthcohort.generator.native:NativeEngine",
    "sdv": "synthcohort.generator.sdv_engine:SDVEngine",
}
MAX_PERSONS = 100_000_000
MAX_ROUNDS = 30
Progress = Callable[[str, int, int], None]


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}", f"choose one of: {', '.join(sorted(ENGINES))}")
    module, cls = ENGINES[name].split(":")
    found = getattr(importlib.import_module(module), cls)
    assert isinstance(found, type) and issubclass(found, Engine)
    return found


def load_model(directory: str | Path) -> Engine:
    """Open a model folder written by :meth:`Engine.save` (version, schema and checksums checked)."""
    manifest = modelfile.read_manifest(Path(directory))
    name = manifest.get("engine")
    if not isinstance(name, str) or name not in ENGINES:
        raise ModelError(f"the model in {directory} names an unknown engine {name!r}", "fit the model again")
    return engine_class(name)._from_dir(Path(directory), manifest)


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be a whole number from 0 to 2**63-1, not {seed!r}")
    return seed


@dataclass
class SampleResult:
    output: Path
    persons: int
    counts: dict[str, int] = field(default_factory=dict)


class Engine:
    """Base of every engine. Subclasses implement ``_fit``, ``_sample``, ``_save`` and ``_load``."""

    name: ClassVar[str] = ""

    def __init__(self, *, k: int = 11, holdout: float = 0.2, seed: int = 0, min_leaf: int = 11) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 1000:
            raise ConfigError(f"k must be a whole number from 2 to 1000, not {k!r}")
        if not isinstance(holdout, float | int) or not 0.05 <= float(holdout) <= 0.5:
            raise ConfigError(f"holdout must be between 0.05 and 0.5, not {holdout!r}", "the default is 0.2")
        if isinstance(min_leaf, bool) or not isinstance(min_leaf, int) or not 5 <= min_leaf <= 10_000:
            raise ConfigError(f"min_leaf must be a whole number from 5 to 10000, not {min_leaf!r}")
        self.params: dict[str, Any] = {
            "k": k,
            "holdout": float(holdout),
            "seed": check_seed(seed),
            "min_leaf": min_leaf,
        }
        self.record: dict[str, Any] = {}
        self.vocabulary = pa.table({"concept_id": pa.array([], pa.int64())})
        self.ancestors = pd.DataFrame(columns=["ancestor_concept_id", "descendant_concept_id"])
        self.ref_day = 0
        self.split_reused = False  # whether the last fit found its split stores already written
        self.fitted = False

    # -- hooks ------------------------------------------------------------------------
    def _fit(self, data: TrainingData, rng: np.random.Generator, progress: Progress | None) -> None:
        raise NotImplementedError

    def _sample(
        self, n: int, rng: np.random.Generator, conditions: list[where_mod.Condition], accepted: dict[Any, set[int]]
    ) -> Chunk:
        raise NotImplementedError

    def _save(self, directory: Path) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, directory: Path, info: dict[str, Any]) -> None:
        raise NotImplementedError

    def _check_where(self, conditions: list[where_mod.Condition], accepted: dict[Any, set[int]]) -> None:
        """Fail when no training person satisfied the conditions (engines that know it override)."""

    # -- fit --------------------------------------------------------------------------
    def fit(self, cohort: str | Path, progress: Progress | None = None) -> Engine:
        """Split off the control set, apply the pre-fit safeguards, learn."""
        cohort = Path(cohort)
        holdout, seed = self.params["holdout"], self.params["seed"]
        before = {p: _stat_key(p) for p in split_paths(cohort, holdout, seed)}
        try:
            split = split_cohort(cohort, holdout, seed)
            with CohortStore.open(split.train) as store:
                data = load_training(store, self.params["k"])
            rng = np.random.default_rng(np.random.SeedSequence([self.params["seed"], 1]))
            self._fit(data, rng, progress)
        except BaseException:
            # An interrupted or failed fit leaves no copy of real data behind: the stores it wrote go.
            for path, key in before.items():
                if _stat_key(path) != key:
                    path.unlink(missing_ok=True)
            raise
        self.vocabulary = data.vocabulary
        self.ancestors = data.ancestors.to_pandas()
        self.ref_day = data.ref_day
        self.split_reused = split.reused
        self.record = {
            "cohort": str(cohort.resolve()),
            **split.record(),
            "persons_learned": data.n_persons,
            "rows_per_person": round(
                (len(data.visits) + sum(len(e) for e in data.events.values())) / max(data.n_persons, 1) + 2, 1
            ),
            "ref_day": data.ref_day,
            "safeguards": data.report,
        }
        self.fitted = True
        return self

    # -- save / load ------------------------------------------------------------------
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        if not self.fitted:
            raise ModelError("the model has not been fitted", "call fit first")
        self.record["model_dir"] = str(Path(directory).resolve())
        with modelfile.writing(Path(directory), overwrite=overwrite) as tmp:
            pq.write_table(self.vocabulary, tmp / "vocabulary.parquet")
            pq.write_table(pa.Table.from_pandas(self.ancestors, preserve_index=False), tmp / "ancestors.parquet")
            info = self._save(tmp)
            modelfile.write_manifest(
                tmp, {"engine": self.name, "params": self.params, "record": self.record, "engine_info": info}
            )
        log.info("model saved to %s", directory)
        return Path(directory)

    @classmethod
    def _from_dir(cls, directory: Path, manifest: dict[str, Any]) -> Engine:
        try:
            params = dict(manifest["params"])
            engine = cls(**params)
            engine.record = dict(manifest["record"])
            engine.ref_day = int(engine.record["ref_day"])
            engine.vocabulary = pq.read_table(directory / "vocabulary.parquet")
            engine.ancestors = pq.read_table(directory / "ancestors.parquet").to_pandas()
            engine.record["model_dir"] = str(directory.resolve())
            engine._load(directory, dict(manifest["engine_info"]))
        except (KeyError, TypeError, ValueError, OSError, ConfigError) as exc:
            # Parameters out of range in a model folder mean a damaged model, not a bad command line.
            raise ModelError(f"the model in {directory} is malformed ({exc})", "fit the model again") from None
        engine.fitted = True
        return engine

    # -- sample -----------------------------------------------------------------------
    def _guard_data(self) -> TrainingData:
        path = Path(self.record.get("train_store", ""))
        if not path.is_file():
            raise ModelError(
                f"the training store {path} the model was fitted on is gone",
                "the nearest-neighbour safeguard needs it: keep it beside the cohort, or fit again",
            )
        if store_fingerprint(path) != self.record.get("train_fingerprint"):
            raise ModelError(f"the training store {path} changed after fitting", "fit the model again")
        with CohortStore.open(path) as store:
            return load_training(store, self.params["k"])

    def sample(
        self,
        n: int,
        output: str | Path,
        *,
        seed: int = 0,
        where: Sequence[str] = (),
        overwrite: bool = False,
        chunk_size: int = 5000,
        jitter_days: int = 90,
        progress: Progress | None = None,
    ) -> SampleResult:
        """Write ``n`` synthetic persons to a new store at ``output``, person chunk by person chunk."""
        from synthcohort.generator.nearest import NearestGuard

        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PERSONS:
            raise ConfigError(f"the number of persons must be from 1 to {MAX_PERSONS:,}, not {n!r}")
        check_seed(seed)
        if not self.fitted:
            raise ModelError("the model has not been fitted", "call fit first")
        conditions = where_mod.parse(list(where))
        accepted = where_mod.expand(conditions, self.ancestors)
        self._check_where(conditions, accepted)
        guard = NearestGuard(self._guard_data())
        counts: Counter[str] = Counter()
        with CohortStore.building(output, overwrite=overwrite) as store:
            writer = SyntheticWriter(store)
            done = 0
            for index, start in enumerate(range(0, n, chunk_size)):
                want = min(chunk_size, n - start)
                rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
                got = 0
                for _ in range(MAX_ROUNDS):
                    piece = self._sample(want - got, rng, conditions, accepted)
                    piece = self._reanchor(piece, rng, jitter_days)
                    piece = rules.enforce(piece, today=self.ref_day, counts=counts)
                    keep = where_mod.matches(piece, conditions, accepted)
                    counts["rejected_where"] += len(piece["person"]) - len(keep)
                    piece = select_persons(piece, keep)
                    near = guard.too_near(piece)
                    counts["rejected_too_near_training"] += len(near)
                    piece = select_persons(piece, np.setdiff1d(piece["person"]["person_id"].to_numpy(), near))
                    piece = select_persons(piece, piece["person"]["person_id"].to_numpy()[: want - got])
                    got += writer.write(piece)
                    if got >= want:
                        break
                else:
                    raise InputError(
                        f"could not draw {plural(want, 'person')} meeting the conditions in {MAX_ROUNDS} rounds",
                        "loosen --where, or ask for fewer persons",
                    )
                done += got
                if progress:
                    progress("sample", done, n)
            writer.finish(self.vocabulary, self.ancestors, self.ref_day)
            for key, value in {
                "kind": "synthetic",
                "engine": self.name,
                "model_dir": str(Path(self.record.get("model_dir", ""))),
                "train_store": self.record.get("train_store", ""),
                "control_store": self.record.get("control_store", ""),
                "train_fingerprint": self.record.get("train_fingerprint", ""),
                "control_fingerprint": self.record.get("control_fingerprint", ""),
                "seed": str(seed),
                "where": json.dumps([str(c) for c in conditions]),
                "safeguards": json.dumps(dict(sorted(counts.items()))),
                "created_by": f"synthcohort {__version__}",
            }.items():
                store.set_meta(key, value)
        log.info("wrote %s to %s (%s)", plural(done, "synthetic person"), output, dict(counts))
        return SampleResult(Path(output), done, dict(counts))

    def _reanchor(self, chunk: Chunk, rng: np.random.Generator, jitter_days: int) -> Chunk:
        """Shift each person's whole timeline by a random number of days, never past the data's end."""
        person = chunk["person"]
        ids = person["person_id"].to_numpy()
        shift = pd.Series(rng.integers(-jitter_days, jitter_days + 1, size=len(ids)).astype("float64"), index=ids)
        latest = person["birth_day"].to_numpy(dtype="float64")
        for name, cols in DATES.items():
            df = chunk.get(name)
            if df is None or not len(df):
                continue
            for col in cols:
                if col is not None and col in df:
                    top = df.groupby("person_id")[col].max()
                    latest = np.fmax(latest, top.reindex(ids).to_numpy())
        shift = pd.Series(np.minimum(shift.to_numpy(), self.ref_day - latest), index=ids)
        person["birth_day"] = person["birth_day"].to_numpy(dtype="int64") + shift.reindex(ids).to_numpy(dtype="int64")
        for name, cols in DATES.items():
            df = chunk.get(name)
            if df is None or not len(df):
                continue
            moved = shift.reindex(df["person_id"]).to_numpy()
            for col in cols:
                if col is not None and col in df:
                    df[col] = df[col].to_numpy(dtype="float64") + moved
        return chunk

    @staticmethod
    def today() -> int:
        return (dt.date.today() - dt.date(1970, 1, 1)).days
