"""Summaries the native engine needs to lay out timelines: visit rhythm, durations, values, types.

Every array is an aggregate over many persons or events (quantiles, shares, modes), keyed by
visit type or by code; none is a row of the training data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri

from synthcohort.generator.chunk import EVENT_DOMAINS
from synthcohort.generator.training import TrainingData

Q21 = np.linspace(0, 1, 21)
Q101 = np.linspace(0, 1, 101)
GAP_BUCKETS = 6
ERA_SHARE = 1 / 30  # the least share of all gaps a calendar era of the visit rhythm holds
AGE_BANDS = np.array([0.0, 2.0, 6.0, 12.0, 18.0, 40.0, 65.0])  # years: starts of the age bands of values
VALUE_DOMAINS = ("measurement", "observation")
VALUE_LEVELS = ("adult", "band", "band_sex")  # coarse to fine
YEAR_DAYS = 365.2425


def _quantiles(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    values = values[np.isfinite(values)]
    return np.quantile(values, levels) if len(values) else np.zeros(len(levels))


def _era_edges(ends: np.ndarray, least: int) -> np.ndarray:
    """Calendar eras of the visits that end gaps: whole years, merged from the latest back until each
    era holds ``least`` gaps. Records thicken at dates (a system going live, a history cut off at a
    new year): yearly eras keep such a step where equal shares of gaps would blur it."""
    years = np.asarray(ends, dtype="int64").astype("datetime64[D]").astype("datetime64[Y]")
    starts, counts = np.unique(years, return_counts=True)
    edges = [np.inf]
    held = 0
    for start, count in zip(starts[::-1], counts[::-1], strict=True):
        held += count
        if held >= least:
            edges.append(float(start.astype("datetime64[D]").astype(np.int64)))
            held = 0
    edges[-1] = -np.inf
    return np.asarray(edges[::-1] if len(edges) > 1 else [-np.inf, np.inf], dtype="float64")


def _of_k_persons(persons: np.ndarray, k: int) -> bool:
    """Whether rows of these persons may be summarised: they belong to at least k distinct persons."""
    return len(np.unique(persons)) >= k


def _gap_persistence(gaps: np.ndarray, cell: np.ndarray, whose: np.ndarray, gap_q: np.ndarray) -> float:
    """How much one person's gaps agree in running short or long for their cells: the weight rho of a
    normal score the person's gaps share, the rest drawn afresh per gap (rho squared is the share of
    the gaps' scores' variance that lies between persons, estimated from all pairs of gaps of one person).

    A gap's score is its place among its cell's quantiles. A person who returns more often than others
    of the same rate in one era does so in the next: drawn independently, the gaps of a patient seen
    often in recent years spread evenly over their window."""
    if len(gaps) < 2:
        return 0.0
    levels = gap_q.shape[1]
    u = np.zeros(len(gaps))
    order = np.argsort(cell, kind="stable")
    cells, starts = np.unique(cell[order], return_index=True)
    for c, at in zip(cells, np.split(order, starts[1:]), strict=True):  # one pass over the gaps, cell by cell
        q = gap_q[c]
        u[at] = (np.searchsorted(q, gaps[at], side="left") + np.searchsorted(q, gaps[at], side="right")) / 2
    z = ndtri(np.clip(u / levels, 0.5 / levels, 1 - 0.5 / levels))
    z = (z - z.mean()) / (z.std() or 1.0)
    person = pd.factorize(whose)[0]
    n, total = np.bincount(person), np.bincount(person, weights=z)
    pairs = float((n * (n - 1)).sum())
    share = float((total**2 - np.bincount(person, weights=z * z)).sum() / pairs) if pairs else 0.0
    return float(np.sqrt(np.clip(share, 0.0, 0.81)))


def _mode(values: pd.Series, default: int = 0) -> int:
    values = values.dropna()
    return int(values.mode().iloc[0]) if len(values) else default


def fit_stats(data: TrainingData, visit_types: list[int], k: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    visits = data.visits.sort_values(["person_id", "start"], kind="stable")
    # Visit rhythm: gaps between consecutive visits, by the person's visit rate (visits per day).
    gaps = visits.groupby("person_id")["start"].diff()
    first = visits.groupby("person_id")["start"].transform("min")
    last = visits.groupby("person_id")["start"].transform("max")
    n_visits = visits.groupby("person_id")["start"].transform("size")
    rate = ((n_visits - 1) / (last - first).clip(lower=1)).to_numpy()
    person_rate = pd.Series(rate, index=visits["person_id"]).groupby(level=0).first()
    person_rate = person_rate[visits.groupby("person_id").size() >= 2]
    edges = np.unique(np.quantile(person_rate, np.linspace(0, 1, GAP_BUCKETS + 1))) if len(person_rate) else [0.0]
    edges = np.asarray(edges, dtype="float64")
    edges[0], edges[-1] = 0.0, np.inf
    if len(edges) < 2:
        edges = np.array([0.0, np.inf])
    out["gap_edges"] = edges
    has = gaps.notna().to_numpy()
    bucket = np.clip(np.searchsorted(edges, rate[has], side="right") - 1, 0, len(edges) - 2)
    # Gaps also differ by calendar era (records grow denser in recent years): by the year of the
    # visit that ends the gap.
    ends = visits["start"].to_numpy(dtype="float64")[has]
    era_edges = _era_edges(ends, max(k, int(ERA_SHARE * len(ends))))
    era = np.clip(np.searchsorted(era_edges, ends, side="right") - 1, 0, len(era_edges) - 2)
    out["gap_era_edges"] = era_edges
    raw = gaps.to_numpy(dtype="float64")[has]
    whose = visits["person_id"].to_numpy()[has]
    rows = []
    for b in range(len(edges) - 1):
        for c in range(len(era_edges) - 1):
            # Quantiles of gaps of at least k persons: the cell's, else the era's at every rate, else all.
            choices = ((bucket == b) & (era == c), era == c, np.ones(len(raw), dtype=bool))
            use = raw[next((m for m in choices if _of_k_persons(whose[m], k)), choices[-1])]
            rows.append(np.quantile(use, Q101, method="inverted_cdf") if len(use) else np.zeros(len(Q101)))
    out["gap_q"] = np.stack(rows)
    cell = bucket * (len(era_edges) - 1) + era
    out["gap_rho"] = np.array([_gap_persistence(raw, cell, whose, out["gap_q"])])
    dur = (visits["end"] - visits["start"]).clip(lower=0)
    out["visit_dur_q"] = np.stack([_quantiles(dur[visits["concept"] == t].to_numpy(), Q21) for t in visit_types])
    out["visit_type_concept"] = np.array([_mode(visits.loc[visits["concept"] == t, "type"]) for t in visit_types])
    out["period_type"] = np.array([44814724])  # "Period while enrolled in insurance" is what sources use most
    out["death_type"] = np.array([_mode(data.deaths["type"], 32817) if len(data.deaths) else 32817])
    n_codes = len(data.codes)
    out["code_domain"] = np.array([EVENT_DOMAINS.index(d) for d in data.codes["domain"]], dtype=np.int64)
    out["code_concept"] = data.codes["concept_id"].to_numpy(dtype=np.int64)
    out["code_source"] = data.codes["source_concept_id"].to_numpy(dtype=np.int64)
    out["code_persons"] = data.codes["persons"].to_numpy(dtype="float64")
    out["dur_null"] = np.ones(n_codes)
    out["dur_q"] = np.zeros((n_codes, len(Q21)))
    out["value_null"] = np.ones(n_codes)
    out["value_q"] = np.zeros((n_codes, len(Q101)))
    out["unit"] = np.zeros(n_codes, dtype=np.int64)
    out["value_concept"] = np.zeros(n_codes, dtype=np.int64)
    for d, domain in enumerate(EVENT_DOMAINS):
        df = data.events[domain]
        types = df["type"].value_counts().sort_index().sort_values(ascending=False, kind="stable")  # ties by id
        types = types[types >= k] if (types >= k).any() else types.iloc[:1]
        out[f"type_ids_{d}"] = types.index.to_numpy(dtype=np.int64)
        out[f"type_p_{d}"] = (types / types.sum()).to_numpy(dtype="float64")
        durations = np.maximum(df["end"].to_numpy(dtype="float64") - df["start"].to_numpy(dtype="float64"), 0)
        ended = np.isfinite(durations)
        whose = df["person_id"].to_numpy()
        domain_q = _quantiles(durations[ended], Q21)
        for code, at in df.groupby("code").indices.items():
            c = int(code)  # type: ignore[call-overload]
            g = df.iloc[at]
            has_end = ended[at]
            out["dur_null"][c] = 1.0 - has_end.mean()
            # Quantiles of durations of at least k persons: the code's own, else the domain's.
            own = _of_k_persons(whose[at][has_end], k)
            out["dur_q"][c] = _quantiles(durations[at][has_end], Q21) if own else domain_q
            if "value_as_number" in g:
                val = g["value_as_number"].to_numpy(dtype="float64")
                valued = np.isfinite(val)
                # Values of fewer than k persons are not learned: the code is emitted without one.
                if _of_k_persons(whose[at][valued], k):
                    out["value_null"][c] = 1.0 - valued.mean()
                    out["value_q"][c] = _quantiles(val, Q101)
                out["unit"][c] = _mode(g["unit_concept_id"])
                out["value_concept"][c] = _mode(g["value_as_concept_id"])
    out |= _values_by_age_and_sex(data, n_codes, k)
    return out


def value_cells(level: str, age_days: np.ndarray, sex: np.ndarray, n_sexes: int) -> tuple[np.ndarray, int]:
    """Each value's cell at one level of detail, and the number of cells of that level.

    Levels, coarse to fine: child or adult; age band (infancy, early and late childhood,
    adolescence, adult, middle and old age); age band x sex.
    """
    years = age_days / YEAR_DAYS
    if level == "adult":
        return (years >= 18).astype(np.int64), 2
    band = np.clip(np.searchsorted(AGE_BANDS, years, side="right") - 1, 0, len(AGE_BANDS) - 1)
    if level == "band":
        return band, len(AGE_BANDS)
    return band * n_sexes + sex, len(AGE_BANDS) * n_sexes


def _values_by_age_and_sex(data: TrainingData, n_codes: int, k: int) -> dict[str, np.ndarray]:
    """Per code, value quantiles by cells of age and sex, where a cell holds values of at least k persons.

    Heights, weights and many lab values differ more between a child and an adult, or a man and a
    woman, than within either. Sampling takes the finest cell the code has, else the code's quantiles.
    """
    sexes = sorted(int(g) for g in data.persons["gender_concept_id"].unique())
    persons = data.persons.set_index("person_id")
    frames = [data.events[d] for d in VALUE_DOMAINS]
    df = pd.concat([f[["person_id", "code", "start", "value_as_number"]] for f in frames], ignore_index=True)
    df = df[np.isfinite(df["value_as_number"].to_numpy(dtype="float64"))]
    who = persons.reindex(df["person_id"])
    age = df["start"].to_numpy(dtype="float64") - who["birth_day"].to_numpy(dtype="float64")
    sex = pd.Index(sexes).get_indexer(pd.Index(who["gender_concept_id"]))
    values = df["value_as_number"].to_numpy(dtype="float64")
    out: dict[str, np.ndarray] = {}
    for level in VALUE_LEVELS:
        cell, n_cells = value_cells(level, age, sex, len(sexes))
        q = np.zeros((n_codes * n_cells, len(Q101)))
        ok = np.zeros(n_codes * n_cells, dtype=bool)
        key = df["code"].to_numpy(dtype=np.int64) * n_cells + cell
        pairs = np.unique(np.column_stack([key, df["person_id"].to_numpy(dtype=np.int64)]), axis=0)
        held = np.bincount(pairs[:, 0], minlength=len(ok))
        order = np.argsort(key, kind="stable")
        keys, first = np.unique(key[order], return_index=True)
        for kk, rows in zip(keys, np.split(order, first[1:]) if len(keys) else [], strict=True):
            if held[kk] >= k:
                q[kk] = np.quantile(values[rows], Q101)
                ok[kk] = True
        out[f"value_q_{level}"] = q.reshape(n_codes, n_cells, len(Q101))
        out[f"value_ok_{level}"] = ok.reshape(n_codes, n_cells)
    return out


def check_stats(stats: dict[str, np.ndarray], n_codes: int, n_visit_types: int) -> bool:
    """Shapes and ranges a loaded model must have."""
    try:
        shapes = (
            stats["gap_q"].shape[1] == len(Q101)
            and (len(stats["gap_edges"]) - 1) * (len(stats["gap_era_edges"]) - 1) == stats["gap_q"].shape[0]
            and stats["visit_dur_q"].shape == (n_visit_types, len(Q21))
            and all(
                len(stats[key]) == n_codes for key in ("code_concept", "code_persons", "dur_null", "value_null", "unit")
            )
            and stats["dur_q"].shape == (n_codes, len(Q21))
            and stats["value_q"].shape == (n_codes, len(Q101))
            and all(
                stats[f"value_q_{lv}"].shape[::2] == (n_codes, len(Q101))
                and stats[f"value_ok_{lv}"].shape == stats[f"value_q_{lv}"].shape[:2]
                for lv in VALUE_LEVELS
            )
        )
        shares = all(((stats[k] >= 0) & (stats[k] <= 1)).all() for k in ("dur_null", "value_null"))
        shapes = shapes and stats["gap_rho"].shape == (1,) and 0 <= float(stats["gap_rho"][0]) < 1
        finite = all(np.isfinite(stats[k]).all() for k in ("gap_q", "visit_dur_q", "dur_q", "value_q"))
        finite = finite and all(np.isfinite(stats[f"value_q_{lv}"]).all() for lv in VALUE_LEVELS)
        domains = all(len(stats[f"type_ids_{d}"]) == len(stats[f"type_p_{d}"]) for d in range(len(EVENT_DOMAINS)))
        return bool(shapes and shares and finite and domains)
    except KeyError:
        return False
