"""The patient vector the native engine learns: demographics, window, visits, totals, concepts, timing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthcohort.generator.chunk import EVENT_DOMAINS
from synthcohort.generator.clusters import (
    by_concept,
    choose_codes,
    choose_concepts,
    concept_clusters,
    concepts_of,
    membership,
    on_one_day,
    order_groups,
    order_share,
    presence,
    put_in_order,
    same_day_share,
)
from synthcohort.generator.safeguards import TOP_AGE, year_of
from synthcohort.generator.training import TrainingData
from synthcohort.generator.trees import Variable

N_BANDS = TOP_AGE // 5 + 1  # 5-year age bands, the last one "90 and over"
# What an attacker most likely knows of a patient: year of birth, race, ethnicity and the dates of
# care. Their trees have leaves of twice ``min_leaf`` persons (sex and age band are drawn by quota).
QUASI_IDENTIFIERS = ("age_in_band", "race", "ethnicity", "days_before_data_end", "observation_start_share_of_life")
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
    cluster_concepts: list[list[int]]  # per concept cluster, per code: which of the cluster's concepts it records
    cluster_vars: list[int]  # per concept cluster: index of its variable (how many of its concepts are held)
    cluster_days: list[list[int]]  # per concept cluster, per code: its group of codes usually recorded on one day
    cluster_same_day: list[list[float]]  # per concept cluster, per such group: how often it is on one day
    cluster_places: list[list[int]]  # per concept cluster, per code: its place in the usual order of first times
    cluster_order_share: list[float]  # per concept cluster: how often that order holds in the training data
    cluster_shares: list[list[list[float]]]  # per small cluster, per number of concepts held, per concept: chance held
    cluster_recorded: list[list[float]]  # per small cluster, per code: share of its concept's holders who hold it

    def index(self, name: str) -> int:
        return next(i for i, v in enumerate(self.variables) if v.name == name)

    def leaf_sizes(self, min_leaf: int) -> np.ndarray:
        """Per variable, the fewest persons a leaf of its tree holds: twice ``min_leaf`` for the quasi-identifiers."""
        sizes = np.full(len(self.variables), min_leaf, dtype=np.int64)
        sizes[[self.index(name) for name in QUASI_IDENTIFIERS]] = 2 * min_leaf
        return sizes


def build_layout(data: TrainingData) -> Layout:
    genders = sorted(int(g) for g in data.persons["gender_concept_id"].unique())
    races = sorted(int(g) for g in data.persons["race_concept_id"].unique())
    eths = sorted(int(g) for g in data.persons["ethnicity_concept_id"].unique())
    # most frequent first, ties by concept id: the layout does not depend on the order rows were read in
    by_count = data.visits["concept"].value_counts().sort_index().sort_values(ascending=False, kind="stable")
    visit_types = [int(v) for v in by_count.index]
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
    keys = data.codes["key"].to_numpy()
    clusters = concept_clusters(held, keys)
    concepts = [concepts_of(keys[members]) for members in clusters]
    cluster_vars = []
    for i, concept in enumerate(concepts):
        cluster_vars.append(len(v))
        v.append(Variable(f"cluster_{i}", "cat", max(concept) + 2))
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
        concepts,
        cluster_vars,
        # learned from the matrix (learn_clusters)
        [list(range(len(members))) for members in clusters],
        [[1.0] * len(members) for members in clusters],
        [list(range(len(members))) for members in clusters],
        [0.5] * len(clusters),
        [[] for _ in clusters],
        [[] for _ in clusters],
    )


def build_matrix(data: TrainingData, layout: Layout) -> np.ndarray:
    """One row per training person, one column per variable (undefined timing = -1)."""
    persons = data.persons.reset_index(drop=True)
    ids = pd.Index(persons["person_id"])
    n = len(ids)
    x = np.zeros((n, len(layout.variables)))
    periods = data.periods.set_index("person_id").reindex(ids)
    birth = persons["birth_day"].to_numpy(dtype="float64")
    end = np.maximum(periods["end"].to_numpy(dtype="float64"), birth)
    age = np.clip(year_of(end) - year_of(birth), 0, TOP_AGE)  # at the end of observation
    x[:, 0] = pd.Index(layout.genders).get_indexer(pd.Index(persons["gender_concept_id"]))
    x[:, 1] = age // 5
    x[:, 2] = np.where(age >= TOP_AGE, 0, age % 5)
    x[:, 3] = pd.Index(layout.races).get_indexer(pd.Index(persons["race_concept_id"]))
    x[:, 4] = pd.Index(layout.ethnicities).get_indexer(pd.Index(persons["ethnicity_concept_id"]))
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
    for members, concept, j in zip(layout.clusters, layout.cluster_concepts, layout.cluster_vars, strict=True):
        x[:, j] = by_concept(counts_m[:, members] > 0, np.asarray(concept)).sum(axis=1)
    return x


def learn_clusters(x: np.ndarray, layout: Layout, min_persons: int) -> None:
    """Inside each concept cluster: which concepts go together and how each is recorded
    (``clusters.membership``), the usual order of first occurrences, and how often it holds."""
    counts = x[:, np.asarray(layout.code_vars, dtype=np.int64)]
    learned = [
        membership(counts[:, members] > 0, np.asarray(concept), min_persons)
        for members, concept in zip(layout.clusters, layout.cluster_concepts, strict=True)
    ]
    layout.cluster_shares = [shares for shares, _ in learned]
    layout.cluster_recorded = [recorded for _, recorded in learned]
    timing = np.asarray(layout.timing_vars, dtype=np.int64)
    orders = [order_groups(x[:, timing[members]]) for members in layout.clusters]
    layout.cluster_days = [days for days, _ in orders]
    layout.cluster_places = [places for _, places in orders]
    layout.cluster_same_day = [
        same_day_share(x[:, timing[members]], days)
        for members, days in zip(layout.clusters, layout.cluster_days, strict=True)
    ]
    layout.cluster_order_share = [
        order_share(x[:, timing[members]], places)
        for members, places in zip(layout.clusters, layout.cluster_places, strict=True)
    ]


def order_cluster_times(x: np.ndarray, layout: Layout, rng: np.random.Generator) -> None:
    """Put each person's sampled first times inside every cluster in the cluster's usual order,
    and the codes usually recorded on one day on one day, as often as in the training data.

    The order is imposed on a share 2s - 1 of persons, s being how often it holds in the training
    data; the others keep their drawn order, which agrees with it half the time: so the order
    holds for a share s of synthetic persons too.
    """
    timing = np.asarray(layout.timing_vars, dtype=np.int64)
    for members, days, same_day, places, share in zip(
        layout.clusters,
        layout.cluster_days,
        layout.cluster_same_day,
        layout.cluster_places,
        layout.cluster_order_share,
        strict=True,
    ):
        cols = timing[members]
        ordered = rng.random(len(x)) < 2.0 * share - 1.0
        x[:, cols] = put_in_order(x[:, cols], np.asarray(places, dtype=np.int64), ordered)
        together = rng.random((len(x), len(same_day))) < np.asarray(same_day)
        x[:, cols] = on_one_day(x[:, cols], np.asarray(days, dtype=np.int64), together, rng)


def choose_cluster_codes(x: np.ndarray, layout: Layout, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Per count variable of a cluster's code: which persons hold it. Each person holds as many of
    the cluster's concepts as their cluster variable says, chosen together; a code only where its
    domain has events."""
    held: dict[int, np.ndarray] = {}
    for members, concept, j, shares, recorded in zip(
        layout.clusters,
        layout.cluster_concepts,
        layout.cluster_vars,
        layout.cluster_shares,
        layout.cluster_recorded,
        strict=True,
    ):
        if not shares:
            continue  # a large cluster: its codes keep their own trees
        cols = [layout.code_vars[i] for i in members]
        unit = np.asarray(concept)
        code_ok = np.column_stack([x[:, layout.variables[c].given] > 0 for c in cols])
        concept_ok = by_concept(code_ok, unit)
        chosen = choose_concepts(x[:, j], np.asarray(shares), concept_ok, rng)
        codes = choose_codes(chosen, unit, np.asarray(recorded), code_ok, rng)
        held.update(zip(cols, codes.T, strict=True))
    return held
