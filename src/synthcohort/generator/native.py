"""The native engine: a sequential tree model of the whole patient, then timelines laid out on visits.

1. Each training person becomes a vector (patient_vector.py): sex, age band, race, ethnicity,
   observation window and calendar anchor, visit counts per type, event totals per domain,
   death, how many codes of each concept cluster the person holds (clusters.py), then a count
   per concept held by >= k persons, then the relative time of each concept's first occurrence.
2. Roots (sex x age band) are drawn by quota; every later variable is drawn from the leaf of a
   CART tree fitted on the earlier ones (leaves of >= ``min_leaf`` persons: the privacy knob;
   twice as many for the quasi-identifiers, patient_vector.QUASI_IDENTIFIERS).
   Domain totals come early, so a zero total means no concept of that domain. Visit counts and
   domain totals are then calibrated: the model draws 50,000 persons and each count gets the
   factor that gives its draws the training mean (trees.SequentialTrees.calibrate).
3. Timelines (timeline.py): visits per type spaced by the learned rhythm inside the window,
   every event on a visit, first occurrences at their learned point, values from each
   concept's clipped quantiles.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthcohort.errors import InputError, ModelError
from synthcohort.generator import modelfile
from synthcohort.generator.base import Engine, Progress
from synthcohort.generator.chunk import Chunk
from synthcohort.generator.patient_vector import (
    N_BANDS,
    Layout,
    build_layout,
    build_matrix,
    choose_cluster_codes,
    learn_clusters,
)
from synthcohort.generator.timeline import lay_out
from synthcohort.generator.timeline_stats import check_stats, fit_stats
from synthcohort.generator.training import TrainingData
from synthcohort.generator.trees import SequentialTrees, Variable
from synthcohort.generator.where import DOMAIN_TABLES, Condition
from synthcohort.text import plural

log = logging.getLogger(__name__)

MAX_PREDICTORS = 20
CALIBRATION_PERSONS = 50_000  # drawn at fit to calibrate the count means (trees.SequentialTrees.calibrate)
OVERSAMPLE_LIMIT = 200


class NativeEngine(Engine):
    name = "native"

    def _fit(self, data: TrainingData, rng: np.random.Generator, progress: Progress | None) -> None:
        self.layout = build_layout(data)
        x = build_matrix(data, self.layout)
        learn_clusters(x, self.layout, self.params["min_leaf"])
        self.quota = np.zeros((len(self.layout.genders), N_BANDS))
        np.add.at(self.quota, (x[:, 0].astype(np.int64), x[:, 1].astype(np.int64)), 1.0)
        self.model = SequentialTrees(self.layout.variables, n_roots=2)
        self.model.fit(
            x,
            self.layout.n_base,
            MAX_PREDICTORS,
            self.layout.leaf_sizes(self.params["min_leaf"]),
            self.params["seed"],
            progress=(lambda done, total: progress("trees", done, total)) if progress else None,
        )
        base = self.layout.n_base  # the counts calibrated are base variables: draws need no later column
        self.model.calibrate(x, self._roots(CALIBRATION_PERSONS, rng, [], quota=True, width=base), base, rng)
        self.stats = fit_stats(data, self.layout.visit_types, self.params["k"])
        self.codes = data.codes.reset_index()
        self.code_persons = data.codes["persons"].to_numpy()
        log.info("native engine: %d variables over %d persons", len(self.layout.variables), len(x))

    # -- conditions -------------------------------------------------------------------
    def _code_hits(self, cond: Condition, accepted: dict[Any, set[int]]) -> np.ndarray:
        table = DOMAIN_TABLES[cond.field]
        if table == "visit_occurrence":
            return np.zeros(0, dtype=np.int64)
        mask = (self.codes["domain"] == table) & self.codes["concept_id"].isin(accepted[cond])
        return self.codes.index[mask].to_numpy()

    def _check_where(self, conditions: list[Condition], accepted: dict[Any, set[int]]) -> None:
        for cond in conditions:
            if cond.field == "gender":
                ok = (
                    cond.concept in self.layout.genders
                    and self.quota[self.layout.genders.index(cond.concept)].sum() > 0
                )
            elif cond.field == "age":
                bands = np.arange(N_BANDS)
                ok = bool(self.quota[:, (bands * 5 + 4 >= cond.low) & (bands * 5 <= cond.high)].sum() > 0)
            elif cond.field in ("race", "ethnicity"):
                ok = cond.concept in (self.layout.races if cond.field == "race" else self.layout.ethnicities)
            elif cond.field == "visit":
                ok = cond.concept in self.layout.visit_types
            else:
                ok = len(self._code_hits(cond, accepted)) > 0
            if not ok:
                raise InputError(
                    f"no training person matches --where {cond}",
                    f"the model knows only concepts held by at least {plural(self.params['k'], 'person')}; "
                    "loosen the condition",
                )

    def _roots(
        self, n: int, rng: np.random.Generator, conditions: list[Condition], quota: bool, width: int | None = None
    ) -> np.ndarray:
        """``n`` rows with sex and age band drawn (by quota or at random), the other ``width`` columns zero."""
        weights = self.quota.copy()
        bands = np.arange(N_BANDS)
        for cond in conditions:
            if cond.field == "gender":
                weights[[g != cond.concept for g in self.layout.genders]] = 0
            elif cond.field == "age":
                weights[:, (bands * 5 + 4 < cond.low) | (bands * 5 > cond.high)] = 0
        p = weights.ravel() / weights.sum()
        if quota:
            # Largest remainder: each sex x age-band cell gets its share of n, the rest at random.
            exact = p * n
            cells = np.floor(exact).astype(np.int64)
            short = n - int(cells.sum())
            if short:
                extra = rng.choice(len(p), size=short, replace=False, p=(exact - cells) / (exact - cells).sum())
                cells[extra] += 1
            flat = np.repeat(np.arange(len(p)), cells)
            flat = flat[rng.permutation(len(flat))]
        else:
            flat = rng.choice(len(p), size=n, p=p)
        x = np.zeros((n, width or len(self.layout.variables)))
        x[:, 0], x[:, 1] = np.divmod(flat, N_BANDS)
        return x

    def _accept(self, x: np.ndarray, conditions: list[Condition], accepted: dict[Any, set[int]]) -> np.ndarray:
        ok = np.ones(len(x), dtype=bool)
        for cond in conditions:
            if cond.field in ("race", "ethnicity"):
                cats = self.layout.races if cond.field == "race" else self.layout.ethnicities
                ok &= x[:, 3 if cond.field == "race" else 4] == cats.index(cond.concept)
            elif cond.field == "visit":
                j = 7 + self.layout.visit_types.index(cond.concept)
                ok &= x[:, j] > 0
            elif cond.field in DOMAIN_TABLES:
                cols = np.asarray(self.layout.code_vars, dtype=np.int64)[self._code_hits(cond, accepted)]
                ok &= (x[:, cols] > 0).any(axis=1)
        return ok

    def _persons(self, roots: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Whole patient vectors: the base variables, then which codes of each cluster are held, then the codes."""
        base = self.layout.n_base
        x = self.model.sample(roots, rng, stop=base)
        return self.model.sample(x, rng, start=base, held=choose_cluster_codes(x, self.layout, rng))

    def _sample(
        self, n: int, rng: np.random.Generator, conditions: list[Condition], accepted: dict[Any, set[int]]
    ) -> Chunk:
        rejecting = any(c.field not in ("gender", "age") for c in conditions)
        if not rejecting:
            x = self._persons(self._roots(n, rng, conditions, quota=True), rng)
            return lay_out(x, self.layout, self.stats, self.ref_day, rng)
        kept: list[np.ndarray] = []
        have = 0
        for _ in range(OVERSAMPLE_LIMIT):
            x = self._persons(self._roots(max(n, 256), rng, conditions, quota=False), rng)
            x = x[self._accept(x, conditions, accepted)]
            kept.append(x)
            have += len(x)
            if have >= n:
                break
        return lay_out(np.vstack(kept)[:n], self.layout, self.stats, self.ref_day, rng)

    # -- persistence ------------------------------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        arrays = {**self.model.to_arrays(), **{f"s_{k}": v for k, v in self.stats.items()}, "quota": self.quota}
        modelfile.save_arrays(directory / "native.npz", arrays)
        pq.write_table(pa.Table.from_pandas(self.codes, preserve_index=False), directory / "codes.parquet")
        lay = asdict(self.layout)
        lay["variables"] = [asdict(v) for v in self.layout.variables]
        (directory / "layout.json").write_text(json.dumps(lay), encoding="utf-8")
        return {"variables": len(self.layout.variables), "codes": len(self.codes)}

    def _load(self, directory: Path, info: dict[str, Any]) -> None:
        lay = json.loads((directory / "layout.json").read_text(encoding="utf-8"))
        variables = [Variable(**v) for v in lay.pop("variables")]
        for v in variables:
            if v.kind not in ("cat", "count", "cont") or not -1 <= v.given < len(variables):
                raise ModelError(f"variable {v.name} of the model is malformed", "fit the model again")
        self.layout = Layout(variables=variables, **lay)
        arrays = modelfile.load_arrays(directory / "native.npz")
        self.model = SequentialTrees.from_arrays(variables, 2, arrays)
        self.stats = {k[2:]: v for k, v in arrays.items() if k.startswith("s_")}
        self.quota = arrays["quota"]
        self.codes = pq.read_table(directory / "codes.parquet").to_pandas()
        n_codes = len(self.codes)
        if (
            not check_stats(self.stats, n_codes, len(self.layout.visit_types))
            or len(self.layout.code_vars) != n_codes
            or not self._clusters_fit(n_codes)
            or self.quota.shape != (len(self.layout.genders), N_BANDS)
            or (self.quota < 0).any()
            or self.quota.sum() <= 0
            or info.get("codes") != n_codes
        ):
            raise ModelError("the model's arrays do not fit together", "fit the model again")
        self.code_persons = self.codes["persons"].to_numpy()
        self.codes = pd.DataFrame(self.codes)

    def _clusters_fit(self, n_codes: int) -> bool:
        """Every cluster's parts have the sizes its codes imply, with places, groups and shares in range."""
        lay = self.layout
        parts = (
            lay.cluster_vars,
            lay.cluster_concepts,
            lay.cluster_days,
            lay.cluster_same_day,
            lay.cluster_places,
            lay.cluster_order_share,
            lay.cluster_shares,
            lay.cluster_recorded,
        )
        if any(len(part) != len(lay.clusters) for part in parts):
            return False
        for members, _, concept, days, same_day, places, order, shares, recorded in zip(
            lay.clusters, *parts, strict=True
        ):
            n = len(set(concept))
            table, rec = np.asarray(shares, dtype="float64"), np.asarray(recorded, dtype="float64")
            together = np.asarray(same_day, dtype="float64")
            if (
                not all(0 <= i < n_codes for i in members)
                or not len(concept) == len(days) == len(places) == len(members)
                or sorted(set(concept)) != list(range(n))
                or sorted(set(days)) != list(range(len(same_day)))
                or sorted(places) != list(range(len(members)))
                or not 0 <= order <= 1
                or (table.size > 0 and (table.shape != (n + 1, n) or rec.shape != (len(members),)))
                or (table.size == 0 and rec.size > 0)
                or not all(np.all((a >= 0) & (a <= 1)) for a in (table, rec, together))
            ):
                return False
        return True
