"""Lays out whole timelines from sampled patient vectors: visits as the backbone, events on visits."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from synthcohort.generator.chunk import EVENT_DOMAINS, Chunk
from synthcohort.generator.patient_vector import Layout, order_cluster_times
from synthcohort.generator.safeguards import TOP_AGE, year_of
from synthcohort.generator.timeline_stats import VALUE_LEVELS, value_cells
from synthcohort.generator.training import EVENT_COLUMNS

CANDIDATES = 24  # gap sequences drawn per person, the nearest to the window kept


def _interp(q: np.ndarray, which: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse CDF at uniform draws ``u`` from the quantile rows ``q[which]`` (only two cells read per draw)."""
    pos = u * (q.shape[1] - 1)
    lo = np.minimum(pos.astype(np.int64), q.shape[1] - 2)
    frac = pos - lo
    return q[which, lo] * (1 - frac) + q[which, lo + 1] * frac


def _choice(ids: np.ndarray, p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if not len(ids):
        return np.zeros(n, dtype=np.int64)
    return ids[np.minimum(np.searchsorted(np.cumsum(p) / p.sum(), rng.random(n), side="right"), len(ids) - 1)]


def _birth_days(x: np.ndarray, end: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A day in the year that gives each person their drawn age at the end of observation (never after that end)."""
    age = np.minimum(x[:, 1] * 5 + x[:, 2], TOP_AGE).astype(np.int64)
    jan1 = ((year_of(end) - age - 1970).astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    return np.minimum(jan1 + rng.integers(0, 365, size=len(x)), end)


def _backwards(
    n_vis: np.ndarray, end: np.ndarray, bucket: np.ndarray, stats: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Visit days laid backwards from ``end``, each gap drawn from real gaps of persons with a similar
    visit rate ending in the same calendar era (recent years come out as dense as they are). A
    person's gaps share part of their place among those gaps (``gap_rho``): they run short or long
    together, as real patients' do. Returns the days (grouped by person, ascending) and each person's
    first day."""
    eras = stats["gap_era_edges"]
    rho, levels = float(stats["gap_rho"][0]), stats["gap_q"].shape[1]
    level = rng.standard_normal(len(n_vis))  # per person: how short or long their gaps run (timeline_stats)
    days = np.zeros(int(n_vis.sum()))
    last = np.cumsum(n_vis) - 1
    here = end.astype("float64").copy()
    has = n_vis > 0
    days[last[has]] = here[has]
    for back in range(1, int(n_vis.max(initial=0))):
        who = np.flatnonzero(n_vis > back)
        era = np.clip(np.searchsorted(eras, here[who], side="right") - 1, 0, len(eras) - 2)
        cell = bucket[who] * (len(eras) - 1) + era
        u = ndtr(rho * level[who] + np.sqrt(1 - rho * rho) * rng.standard_normal(len(who)))
        here[who] -= stats["gap_q"][cell, np.minimum((u * levels).astype(np.int64), levels - 1)]
        days[last[who] - back] = here[who]
    return days, here


def _visit_days(
    n_vis: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    birth: np.ndarray,
    stats: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """Each person's visit days: the rhythm of real gaps, inside the window the model drew.

    The window (first to last visit) is learned by the model jointly with age and the rest; the
    gaps by rate and era. A sum of drawn gaps rarely matches the window, and stretching the gaps
    to fit bends their distribution; so CANDIDATES sequences are drawn per person and the one
    whose span comes nearest the window is kept, then fitted the small rest of the way (never
    reaching before birth).
    """
    m = len(n_vis)
    edges = stats["gap_edges"]
    rate = np.maximum(n_vis - 1, 0) / np.maximum(end - start, 1)
    bucket = np.clip(np.searchsorted(edges, rate, side="right") - 1, 0, len(edges) - 2)
    rep = np.repeat(np.arange(m), CANDIDATES)
    days, first = _backwards(n_vis[rep], end[rep], bucket[rep], stats, rng)
    want = np.maximum(end - start, 0.0)
    miss = np.abs(np.log1p(end[rep] - first) - np.log1p(want[rep])).reshape(m, CANDIDATES)
    best = np.arange(m) * CANDIDATES + np.argmin(miss, axis=1)
    n_rep = n_vis[rep]
    rep_start = np.cumsum(n_rep) - n_rep
    within = np.arange(int(n_vis.sum())) - np.repeat(np.cumsum(n_vis) - n_vis, n_vis)
    pick = np.repeat(rep_start[best], n_vis) + within
    total = end - first[best]
    span = np.where(total > 0, np.minimum(want, end - birth), 0.0)
    return _fit_span(days[pick], n_vis, end, total, span)


def _fit_span(days: np.ndarray, n_vis: np.ndarray, end: np.ndarray, total: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Visit days (ascending per person, the last on ``end``, the first ``total`` days before) moved
    so that the first is ``span`` days before the last.

    The difference goes to the person's longest gap when that gap stays at least a day long, so
    the other gaps keep their real lengths (monthly and yearly visits stay monthly and yearly);
    otherwise every gap is scaled.
    """
    if not len(days):
        return days
    person = np.repeat(np.arange(len(n_vis)), n_vis)
    gap = np.diff(days, prepend=-np.inf)
    gap[(np.cumsum(n_vis) - n_vis)[n_vis > 0]] = -np.inf
    longest_end = np.lexsort((gap, person))[np.maximum(np.cumsum(n_vis) - 1, 0)]  # the visit closing it
    delta = span - total
    widen = (n_vis >= 2) & (gap[longest_end] + delta >= 1.0)
    before_longest = np.arange(len(days)) < np.repeat(longest_end, n_vis)
    days = days - np.repeat(np.where(widen, delta, 0.0), n_vis) * before_longest
    scale = np.repeat(np.where(widen, 1.0, span / np.maximum(total, 1.0)), n_vis)
    v_end = np.repeat(end, n_vis)
    return np.minimum(v_end - np.round((v_end - days) * scale), v_end)


def lay_out(
    x: np.ndarray, layout: Layout, stats: dict[str, np.ndarray], ref_day: int, rng: np.random.Generator
) -> Chunk:
    m = len(x)
    pid = np.arange(m)
    order_cluster_times(x, layout, rng)
    end = ref_day - np.round(np.maximum(x[:, 5], 0))
    birth = _birth_days(x, end, rng)
    start = birth + np.round(np.clip(x[:, 6], 0, 1) * (end - birth))
    chunk: Chunk = {
        "person": pd.DataFrame(
            {
                "person_id": pid,
                "gender_concept_id": np.asarray(layout.genders)[x[:, 0].astype(np.int64)],
                "birth_day": birth,
                "race_concept_id": np.asarray(layout.races)[x[:, 3].astype(np.int64)],
                "ethnicity_concept_id": np.asarray(layout.ethnicities)[x[:, 4].astype(np.int64)],
            }
        ),
    }
    # Visits: counts per type from the vector, at least one when the person has any event.
    n_types = len(layout.visit_types)
    vt = np.maximum(np.round(x[:, 7 : 7 + n_types]), 0).astype(np.int64)
    code_counts = np.maximum(np.round(x[:, np.asarray(layout.code_vars, dtype=np.int64)]), 0).astype(np.int64)
    # A domain total above zero with no concept drawn: one concept of the domain, by prevalence
    # (the total's other events follow it), so that the domain is not left empty.
    for d, domain in enumerate(EVENT_DOMAINS):
        cols = np.flatnonzero(stats["code_domain"] == d)
        if not len(cols):
            continue
        empty = np.flatnonzero((x[:, layout.total_vars[domain]] >= 0.5) & (code_counts[:, cols].sum(axis=1) == 0))
        weights = stats["code_persons"][cols]
        picked = cols[_choice(np.arange(len(cols)), weights, len(empty), rng)]
        code_counts[empty, picked] = 1
        x[empty, np.asarray(layout.timing_vars, dtype=np.int64)[picked]] = rng.random(len(empty))
    needs = (code_counts.sum(axis=1) > 0) & (vt.sum(axis=1) == 0)
    vt[needs, 0] = 1
    n_vis = vt.sum(axis=1)
    v_start = np.cumsum(n_vis) - n_vis
    v_pat = np.repeat(pid, n_vis)
    nv = int(n_vis.sum())
    v_day = _visit_days(n_vis, start, end, birth, stats, rng)
    if nv:
        start = np.where(n_vis > 0, v_day[np.minimum(v_start, nv - 1)], start)
    chunk["observation_period"] = pd.DataFrame(
        {
            "person_id": pid,
            "observation_period_start_date": start,
            "observation_period_end_date": end,
            "period_type_concept_id": int(stats["period_type"][0]),
        }
    )
    v_type_idx = np.repeat(np.tile(np.arange(n_types), m), vt.ravel())
    v_type_idx = v_type_idx[np.lexsort((rng.random(nv), v_pat))]
    dur = np.round(np.maximum(_interp(stats["visit_dur_q"], v_type_idx, rng.random(nv)), 0))
    chunk["visit_occurrence"] = pd.DataFrame(
        {
            "visit_occurrence_id": np.arange(nv),
            "person_id": v_pat,
            "visit_concept_id": np.asarray(layout.visit_types, dtype=np.int64)[v_type_idx],
            "visit_start_date": v_day,
            "visit_end_date": np.minimum(v_day + dur, end[v_pat]),
            "visit_type_concept_id": stats["visit_type_concept"][v_type_idx],
        }
    )
    v_key = v_pat * 1e6 + (v_day - start[v_pat])
    for d, domain in enumerate(EVENT_DOMAINS):
        chunk[domain] = _events(
            d, domain, x, layout, stats, code_counts, birth, start, end, v_start, n_vis, v_key, v_day, rng
        )
    if layout.death_var >= 0:
        dead = x[:, layout.death_var] > 0
        chunk["death"] = pd.DataFrame(
            {"person_id": pid[dead], "death_date": end[dead], "death_type_concept_id": int(stats["death_type"][0])}
        )
    else:
        chunk["death"] = pd.DataFrame({"person_id": [], "death_date": [], "death_type_concept_id": []})
    return chunk


def _events(
    d: int,
    domain: str,
    x: np.ndarray,
    layout: Layout,
    stats: dict[str, np.ndarray],
    code_counts: np.ndarray,
    birth: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    v_start: np.ndarray,
    n_vis: np.ndarray,
    v_key: np.ndarray,
    v_day: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    m = len(x)
    codes = np.flatnonzero(stats["code_domain"] == d)
    counts = code_counts[:, codes] * (n_vis[:, None] > 0)
    n = counts.ravel()
    pair_p = np.repeat(np.arange(m), len(codes))
    pair_c = np.tile(codes, m)
    pair_u = x[:, np.asarray(layout.timing_vars, dtype=np.int64)[codes]].ravel()
    has = n > 0
    pair_p, pair_c, pair_u, n = pair_p[has], pair_c[has], pair_u[has], n[has]
    # Events of rare codes are not emitted; the person's other codes make up the domain total.
    per_person = np.bincount(pair_p, weights=n, minlength=m).astype(np.int64)
    total = np.round(x[:, layout.total_vars[domain]]).astype(np.int64)
    deficit = np.maximum(total - per_person, 0)
    deficit[per_person == 0] = 0
    # A person drawn with more concepts than their domain total keeps every first event; the
    # surplus is taken back from other persons' repeats, so the chunk keeps the totals it drew.
    surplus = int(np.maximum(np.bincount(pair_p, minlength=m) - total, 0)[per_person > 0].sum())
    if surplus and deficit.sum():
        keep_share = max(1.0 - surplus / deficit.sum(), 0.0)
        deficit = np.floor(deficit * keep_share + rng.random(m)).astype(np.int64)
    pair_first = np.cumsum(n) - n
    ev_pair = np.repeat(np.arange(len(n)), n)
    p_start = np.cumsum(per_person) - per_person
    extra_p = np.repeat(np.arange(m), deficit)
    extra = p_start[extra_p] + np.floor(rng.random(len(extra_p)) * per_person[extra_p]).astype(np.int64)
    ev_pair = np.concatenate([ev_pair, ev_pair[extra]]) if len(extra) else ev_pair
    is_first = np.zeros(len(ev_pair), dtype=bool)
    is_first[pair_first] = True
    # More events than the domain total: drop repeats at random, never a concept's first event.
    excess = np.maximum(per_person - total, 0)
    if excess.any():
        rep = np.flatnonzero(~is_first)
        rep_p = pair_p[ev_pair[rep]]
        order = np.lexsort((rng.random(len(rep)), rep_p))
        rep, rep_p = rep[order], rep_p[order]
        rank = np.arange(len(rep)) - np.searchsorted(rep_p, rep_p, side="left")
        keep = np.ones(len(ev_pair), dtype=bool)
        keep[rep[rank < excess[rep_p]]] = False
        ev_pair, is_first = ev_pair[keep], is_first[keep]
    # First occurrence: the visit nearest before the learned point of the observation window.
    p = pair_p
    target = np.clip(pair_u, 0, 1) * (end - start)[p]
    idx = np.searchsorted(v_key, p * 1e6 + target, side="right") - 1
    first_visit = np.clip(idx, v_start[p], v_start[p] + n_vis[p] - 1)
    ev_p = pair_p[ev_pair]
    last = v_start[ev_p] + n_vis[ev_p]
    fv = first_visit[ev_pair]
    visit = np.where(is_first, fv, fv + np.floor(rng.random(len(ev_pair)) * (last - fv)).astype(np.int64))
    day = v_day[visit]
    code = pair_c[ev_pair]
    concept_col, source_col, start_col, end_col, type_col, value_cols = EVENT_COLUMNS[domain]
    out = pd.DataFrame(
        {
            "person_id": ev_p,
            concept_col: stats["code_concept"][code],
            source_col: stats["code_source"][code],
            start_col: day,
            type_col: _choice(stats[f"type_ids_{d}"], stats[f"type_p_{d}"], len(code), rng),
            "visit_occurrence_id": visit,
        }
    )
    if end_col is not None:
        dur = np.round(np.maximum(_interp(stats["dur_q"], code, rng.random(len(code))), 0))
        no_end = rng.random(len(code)) < stats["dur_null"][code]
        if domain == "drug_exposure":
            no_end[:] = False
        out[end_col] = np.where(no_end, np.nan, np.minimum(day + dur, end[ev_p]))
    if value_cols:
        # From the finest cell of age and sex where the code has quantiles, else the code's own.
        u = rng.random(len(code))
        val = _interp(stats["value_q"], code, u)
        age, sex = day - birth[ev_p], x[ev_p, 0].astype(np.int64)
        for level in VALUE_LEVELS:
            cell, n_cells = value_cells(level, age, sex, len(layout.genders))
            flat = code * n_cells + cell
            own = stats[f"value_ok_{level}"].ravel()[flat]
            q = stats[f"value_q_{level}"]
            val[own] = _interp(q.reshape(-1, q.shape[2]), flat[own], u[own])
        out["value_as_number"] = np.where(rng.random(len(code)) < stats["value_null"][code], np.nan, val)
        out["unit_concept_id"] = stats["unit"][code]
        out["value_as_concept_id"] = stats["value_concept"][code]
    return out
