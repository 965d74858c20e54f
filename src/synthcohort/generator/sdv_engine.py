"""The SDV engine (extra ``sdv``): SDV's HMASynthesizer on five OMOP tables, the side-by-side reference.

What it models: ``person`` (sex, year of birth, race, ethnicity) as the parent table and four
child tables linked to it by person_id: ``visit_occurrence`` (type, start, end),
``condition_occurrence`` and ``drug_exposure`` (concept, start, end, type) and ``measurement``
(concept, date, value, unit). SDV's free multi-table synthesizer refuses more than five
tables, so procedures, observations, death and observation periods are not modelled, and an
event cannot be tied to a visit (a second parent per table is beyond what HMA learns well).

What it cannot do: it knows no clinical rule (events before birth, ends before starts, no
observation period), no structural zero, no temporal order between a treatment and an outcome.
Its output therefore passes through the same after-sample safeguards as the native engine's:
dates moved into the person's life and observation period, observation periods made from the
span of the events, persons too near a training person replaced.

Its model folder holds SDV's own file, a cloudpickle: it is signed with this installation's key
(HMAC beside the file, key kept outside the model) and loaded only when the signature checks out,
so an unsigned, altered or foreign pickle is refused before it is unpickled. Rare concepts are
rolled up or dropped before fitting, values clipped and ages top-coded, as for every engine.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthcohort.errors import DependencyMissing, ModelError
from synthcohort.generator.base import Engine, Progress
from synthcohort.generator.chunk import EPOCH, Chunk
from synthcohort.generator.safeguards import year_of
from synthcohort.generator.training import TrainingData
from synthcohort.generator.where import Condition

log = logging.getLogger(__name__)

PIP_LINE = "pip install 'synthcohort[sdv]'"
MODEL_FILE = "sdv_hma.pkl"
CHILDREN = {
    "visit_occurrence": ("visit_concept_id", "visit_start_date", "visit_end_date", "visit_type_concept_id"),
    "condition_occurrence": (
        "condition_concept_id",
        "condition_start_date",
        "condition_end_date",
        "condition_type_concept_id",
    ),
    "drug_exposure": ("drug_concept_id", "drug_exposure_start_date", "drug_exposure_end_date", "drug_type_concept_id"),
    "measurement": ("measurement_concept_id", "measurement_date", None, "measurement_type_concept_id"),
}


def _sdv() -> Any:
    try:
        import sdv.multi_table  # noqa: F401
        from sdv.metadata import Metadata
        from sdv.multi_table import HMASynthesizer
    except ImportError:
        raise DependencyMissing("the SDV engine needs the package 'sdv'", PIP_LINE) from None
    return Metadata, HMASynthesizer


def _dates(days: pd.Series) -> pd.Series:
    values = days.to_numpy(dtype="float64")
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = np.isfinite(values)
    out[ok] = (EPOCH + values[ok].astype(np.int64)).astype("datetime64[ns]")
    return pd.Series(out, index=days.index)


def _days(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values).to_numpy(dtype="datetime64[D]")
    out = (stamps - EPOCH).astype("float64")
    out[np.isnat(stamps)] = np.nan
    return out


class SDVEngine(Engine):
    name = "sdv"

    def _tables(self, data: TrainingData) -> dict[str, pd.DataFrame]:
        p = data.persons
        tables = {
            "person": pd.DataFrame(
                {
                    "person_id": p["person_id"].astype("int64"),
                    "gender_concept_id": p["gender_concept_id"].astype(str),
                    "year_of_birth": year_of(p["birth_day"].to_numpy()),
                    "race_concept_id": p["race_concept_id"].astype(str),
                    "ethnicity_concept_id": p["ethnicity_concept_id"].astype(str),
                }
            )
        }
        v = data.visits
        tables["visit_occurrence"] = pd.DataFrame(
            {
                "visit_occurrence_id": np.arange(len(v), dtype=np.int64),
                "person_id": v["person_id"].astype("int64"),
                "visit_concept_id": v["concept"].astype(str),
                "visit_start_date": _dates(v["start"]),
                "visit_end_date": _dates(v["end"]),
                "visit_type_concept_id": v["type"].astype(str),
            }
        )
        for name in ("condition_occurrence", "drug_exposure", "measurement"):
            concept, start, end, typ = CHILDREN[name]
            e = data.events[name]
            df = pd.DataFrame(
                {
                    f"{name}_id": np.arange(len(e), dtype=np.int64),
                    "person_id": e["person_id"].astype("int64"),
                    concept: e["code"].astype(str),
                    start: _dates(e["start"]),
                    typ: e["type"].astype(str),
                }
            )
            if end:
                df[end] = _dates(e["end"])
            if name == "measurement":
                df["value_as_number"] = e["value_as_number"].astype("float64")
                df["unit_concept_id"] = e["unit_concept_id"].fillna(0).astype("int64").astype(str)
            tables[name] = df
        return tables

    def _fit(self, data: TrainingData, rng: np.random.Generator, progress: Progress | None) -> None:
        metadata_cls, hma = _sdv()
        tables = self._tables(data)
        metadata = metadata_cls.detect_from_dataframes(tables)
        for name in tables:
            for col in tables[name].columns:
                if col.endswith("_concept_id"):
                    metadata.update_column(col, table_name=name, sdtype="categorical")
        if progress:
            progress("synthesizer", 0, 1)
        with warnings.catch_warnings():
            # SDV's advice to save its metadata as JSON: the model folder keeps it inside SDV's file.
            warnings.simplefilter("ignore", UserWarning)
            self.synthesizer = hma(metadata, verbose=False)
            self.synthesizer.fit(tables)
        self.codes = data.codes.reset_index()
        self.n_train = data.n_persons
        if progress:
            progress("synthesizer", 1, 1)

    def _sample(
        self, n: int, rng: np.random.Generator, conditions: list[Condition], accepted: dict[Any, set[int]]
    ) -> Chunk:
        import random

        seed = int(rng.integers(0, 2**31 - 1))
        np.random.seed(seed)  # SDV draws from the global generators
        random.seed(seed)
        try:
            import torch

            torch.manual_seed(seed)
        except ImportError:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            raw = self.synthesizer.sample(num_rows=max(n, 1), main_table_name="person")
        return self._to_chunk(raw, rng)

    def _to_chunk(self, raw: dict[str, pd.DataFrame], rng: np.random.Generator) -> Chunk:
        p = raw["person"].reset_index(drop=True)
        local = pd.Series(np.arange(len(p)), index=p["person_id"].to_numpy())
        years = p["year_of_birth"].round().astype("int64").to_numpy()
        jan1 = ((years - 1970).astype("datetime64[Y]").astype("datetime64[D]") - EPOCH).astype(np.int64)
        chunk: Chunk = {
            "person": pd.DataFrame(
                {
                    "person_id": np.arange(len(p)),
                    "gender_concept_id": p["gender_concept_id"].astype("int64"),
                    "birth_day": jan1 + rng.integers(0, 365, size=len(p)),
                    "race_concept_id": p["race_concept_id"].astype("int64"),
                    "ethnicity_concept_id": p["ethnicity_concept_id"].astype("int64"),
                }
            ),
            "observation_period": pd.DataFrame(
                {
                    "person_id": pd.Series(dtype="int64"),
                    "observation_period_start_date": pd.Series(dtype="float64"),
                    "observation_period_end_date": pd.Series(dtype="float64"),
                    "period_type_concept_id": pd.Series(dtype="int64"),
                }
            ),
            "death": pd.DataFrame({"person_id": [], "death_date": [], "death_type_concept_id": []}),
        }
        concept_of = self.codes["concept_id"].to_numpy()
        source_of = self.codes["source_concept_id"].to_numpy()
        for name, (concept, start, end, typ) in CHILDREN.items():
            df = raw[name]
            df = df[df["person_id"].isin(local.index)].reset_index(drop=True)
            out = pd.DataFrame({"person_id": df["person_id"].map(local).to_numpy()})
            if name == "visit_occurrence":
                out["visit_occurrence_id"] = np.arange(len(df))
                out[concept] = df[concept].astype("int64").to_numpy()
            else:
                code = df[concept].astype("int64").to_numpy()
                out[concept] = concept_of[code]
                out[concept.replace("_concept_id", "_source_concept_id")] = source_of[code]
                out["visit_occurrence_id"] = np.nan
            out[start] = _days(df[start])
            if end:
                out[end] = _days(df[end])
            out[typ] = df[typ].astype("int64").to_numpy()
            if name == "measurement":
                out["value_as_number"] = df["value_as_number"].to_numpy()
                out["unit_concept_id"] = df["unit_concept_id"].astype("int64").to_numpy()
            chunk[name] = out.dropna(subset=[start]).reset_index(drop=True)
        chunk["observation_period"]["period_type_concept_id"] = 44814724
        return chunk

    def _save(self, directory: Path) -> dict[str, Any]:
        from synthcohort.signing import sign_file

        self.synthesizer.save(str(directory / MODEL_FILE))
        sign_file(directory / MODEL_FILE)
        self.codes.to_parquet(directory / "codes.parquet", index=False)
        return {"n_train": self.n_train}

    def _load(self, directory: Path, info: dict[str, Any]) -> None:
        _sdv()
        from synthcohort.signing import load_signed

        # Unpickled only after its HMAC checks out; the checksum in the manifest alone proves nothing.
        self.synthesizer = load_signed(directory / MODEL_FILE)
        try:
            from sdv.utils.utils import check_synthesizer_version
        except ImportError:  # older or newer SDV without the check
            pass
        else:
            try:
                check_synthesizer_version(self.synthesizer)
            except Exception as exc:
                raise ModelError(
                    f"the SDV model in {directory} was made with another SDV version ({type(exc).__name__})",
                    "fit it again with the SDV installed here",
                ) from None
        self.codes = pd.read_parquet(directory / "codes.parquet")
        self.n_train = int(info["n_train"])
