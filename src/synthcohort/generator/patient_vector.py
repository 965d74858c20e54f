"""The patient vector the native engine learns: demographics, window, visits, totals, concepts, timing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthcohort.generator.chunk import EVENT_DOMAINS
from synthcohort.generator.clusters import concept_clusters, order_groups, order_share, presence, put_in_order
from synthcohort.generator.safeguards import TOP_AGE, year_of
from synthcohort.generator.training import TrainingData
from synthcohort.generator.trees import Variable

N_BANDS = TOP_AGE // 5 + 1  # 5-year age bands, the last one "90 and over"
# Order of the timing variables: the clinical domains first, measurements (many, near-universal) last.
TIMING_ORDER = ("condition_occurrence", "drug_exposure", "procedure_occurrence", "observation", "measurement")


@dataclass
class Layout:
    """Where each part of the vector sits, and the category values of the categorical parts."""

    variables: list[Variable]
    genders: list[int]
    races: list[int]
    ethnicities: list[int]
    visit_types: list[int]
    n_base: int
    code_vars: list[int]  # per code (row of the code table): index of its count variable
    timing_vars: list[int]  # per code: index of its first-occurrence variable
    total_vars: dict[str, int]
    death_var: int  # -1 when deaths are not modelled
    clusters: list[list[int]]  # per concept cluster: its codes (rows of the code table)
    cluster_vars: list[int]  # per concept cluster: index of its variable (how many of its codes are held)
    cluster_places: list[list[int]]  # per concept cluster, per code: its place in the usual order of first times
    cluster_order_share: list[float]  # per concept cluster: how often that order holds in the training data

    def index(self, name: str) -> int:
        return next(i for i, v in enumerate(self.variables) if v.name == name)


def build_layout(data: TrainingData) -> Layout:
    genders = sorted(int(g) for g in data.persons["gender_concept_id"].unique())
    races = sorted(int(g) for g in data.persons["race_concept_id"].unique())
    eths = sorted(int(g) for g in data.persons["ethnicity_concept_id"].unique())
    visit_types = [int(v) for v in data.visits["concept"].value_counts().index]
    v: list[Variable] = [
        Variable("sex", "cat", len(genders)),
        Variable("age_band", "cat", N_BANDS),
        Variable("age_in_band", "cat", 5),
        Variable("race", "cat", len(races)),
        Variable("ethnicity", "cat", len(eths)),
        Variable("days_before_data_end", "cont"),
        Variable("observation_start_share_of_life", "cont"),
    ]
    v += [Variable(f"visits_{t}", "count") for t in visit_types]
    total_vars = {}
    for domain in EVENT_DOMAINS:
        total_vars[domain] = len(v)
        v.append(Variable(f"total_{domain}", "count"))
    death_var = -1
    if len(data.deaths):
        death_var = len(v)
        v.append(Variable("death", "cat", 2))
    held = presence(data.events, pd.Index(data.persons["person_id"]), len(data.codes))
    clusters = concept_clusters(held, data.codes["key"].to_numpy())
    cluster_vars = []
    for i, members in enumerate(clusters):
        cluster_vars.append(len(v))
        v.append(Variable(f"cluster_{i}", "cat", len(members) + 1))
    n_base = len(v)
    code_vars = [0] * len(data.codes)
    for code, row in data.codes.iterrows():
        code_vars[int(code)] = len(v)  # type: ignore[call-overload]
        v.append(Variable(f"count_{row['domain']}_{row['key']}", "count", given=total_vars[str(row["domain"])]))
    timing_vars = [0] * len(data.codes)
    for domain in TIMING_ORDER:
        for code in data.codes.index[data.codes["domain"] == domain]:
            timing_vars[int(code)] = len(v)
            v.append(Variable(f"first_{domain}_{data.codes.loc[code, 'key']}", "cont", given=code_vars[int(code)]))
    return Layout(
        v,
        genders,
        races,
        eths,
        visit_types,
        n_base,
        code_vars,
        timing_vars,
        total_vars,
        death_var,
        clusters,
        cluster_vars,
        [[0] * len(members) for members in clusters],  # learned from the matrix (learn_cluster_order)
        [0.5] * len(clusters),
    )


def build_matrix(data: TrainingData, layout: Layout) -> np.ndarray:
    """One row per training person, one column per variable (undefined timing = -1)."""
    persons = data.persons.reset_index(drop=True)
    ids = pd.Index(persons["person_id"])
    n = len(ids)
    x = np.zeros((n, len(layout.variables)))
    ref_year = int(year_of(np.array([data.ref_day]))[0])
    age = np.clip(ref_year - year_of(persons["birth_day"].to_numpy()), 0, TOP_AGE)
    x[:, 0] = pd.Index(layout.genders).get_indexer(pd.Index(persons["gender_concept_id"]))
    x[:, 1] = age // 5
    x[:, 2] = np.where(age >= TOP_AGE, 0, age % 5)
    x[:, 3] = pd.Index(layout.races).get_indexer(pd.Index(persons["race_concept_id"]))
    x[:, 4] = pd.Index(layout.ethnicities).get_indexer(pd.Index(persons["ethnicity_concept_id"]))
    periods = data.periods.set_index("person_id").reindex(ids)
    birth = persons["birth_day"].to_numpy(dtype="float64")
    end = np.maximum(periods["end"].to_numpy(dtype="float64"), birth)
    start = np.clip(periods["start"].to_numpy(dtype="float64"), birth, end)
    x[:, 5] = data.ref_day - end
    x[:, 6] = np.where(end > birth, (start - birth) / np.maximum(end - birth, 1), 0.0)
    counts = pd.crosstab(data.visits["person_id"], data.visits["concept"]).reindex(
        index=ids, columns=layout.visit_types
    )
    x[:, 7 : 7 + len(layout.visit_types)] = counts.fillna(0).to_numpy()
    for domain, j in layout.total_vars.items():
        x[:, j] = data.totals[domain].reindex(ids).fillna(0).to_numpy()
    if layout.death_var >= 0:
        x[:, layout.death_var] = ids.isin(data.deaths["person_id"]).astype("float64")
    span = np.maximum(end - start, 1.0)
    for df in data.events.values():
        rows = ids.get_indexer(df["person_id"])
        grouped = pd.DataFrame({"row": rows, "code": df["code"], "start": df["start"]}).groupby(["row", "code"])
        first = grouped["start"].min()
        size = grouped.size()
        if not len(df):
            continue  # no event left in this domain (all rolled up or dropped): nothing to place
        r = first.index.get_level_values(0).to_numpy()
        c = first.index.get_level_values(1).to_numpy().astype(np.int64)
        x[r, np.asarray(layout.code_vars, dtype=np.int64)[c]] = size.to_numpy()
        x[r, np.asarray(layout.timing_vars, dtype=np.int64)[c]] = np.clip(
            (first.to_numpy() - start[r]) / span[r], 0.0, 1.0
        )
    timing = np.asarray(layout.timing_vars, dtype=np.int64)
    counts_m = x[:, np.asarray(layout.code_vars, dtype=np.int64)]
    x[:, timing] = np.where(counts_m > 0, x[:, timing], -1.0)
    for members, j in zip(layout.clusters, layout.cluster_vars, strict=True):
        x[:, j] = (counts_m[:, members] > 0).sum(axis=1)
    return x


def learn_cluster_order(x: np.ndarray, layout: Layout) -> None:
    """The usual order of first occurrences inside each concept cluster, and how often it holds."""
    timing = np.asarray(layout.timing_vars, dtype=np.int64)
    layout.cluster_places = [order_groups(x[:, timing[members]]) for members in layout.clusters]
    layout.cluster_order_share = [
        order_share(x[:, timing[members]], places)
        for members, places in zip(layout.clusters, layout.cluster_places, strict=True)
    ]


def order_cluster_times(x: np.ndarray, layout: Layout, rng: np.random.Generator) -> None:
    """Put each person's sampled first times inside every cluster in the cluster's usual order.

    The order is imposed on a share 2s - 1 of persons, s being how often it holds in the training
    data; the others keep their drawn order, which agrees with it half the time: so the order
    holds for a share s of synthetic persons too.
    """
    timing = np.asarray(layout.timing_vars, dtype=np.int64)
    for members, places, share in zip(layout.clusters, layout.cluster_places, layout.cluster_order_share, strict=True):
        cols = timing[members]
        ordered = rng.random(len(x)) < 2.0 * share - 1.0
        x[:, cols] = put_in_order(x[:, cols], np.asarray(places, dtype=np.int64), ordered)
