"""Cohort selection (all, person ids, OHDSI cohort, concept set, date window) as SQL pushed to the source."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from synthcohort import cdm
from synthcohort.errors import ConfigError, InputError
from synthcohort.text import plural

# Tables a concept set is looked up in, with their concept column.
CONCEPT_DOMAINS = {
    "condition_occurrence": "condition_concept_id",
    "drug_exposure": "drug_concept_id",
    "procedure_occurrence": "procedure_concept_id",
    "measurement": "measurement_concept_id",
    "observation": "observation_concept_id",
}
MAX_PERSON_IDS = 5_000_000


@dataclass(frozen=True)
class Selection:
    """Which persons (and which dates) to extract. At most one of person_ids, cohort_id, concepts."""

    person_ids: tuple[int, ...] | None = None
    cohort_id: int | None = None
    concepts: tuple[int, ...] | None = None
    start: dt.date | None = None
    end: dt.date | None = None

    def __post_init__(self) -> None:
        chosen = [x is not None for x in (self.person_ids, self.cohort_id, self.concepts)]
        if sum(chosen) > 1:
            raise ConfigError("--person-ids, --cohort-id and --concepts exclude each other", "give only one of them")
        if self.start and self.end and self.start > self.end:
            raise ConfigError("--start is after --end", "give a start date on or before the end date")
        if self.concepts is not None and not self.concepts:
            raise ConfigError("--concepts is empty", "give concept ids separated by commas")

    def describe(self) -> str:
        """A description without any identifier (safe for logs and store metadata)."""
        if self.person_ids is not None:
            what = f"person-ids file ({plural(len(self.person_ids), 'id')})"
        elif self.cohort_id is not None:
            what = f"OHDSI cohort definition {self.cohort_id}"
        elif self.concepts is not None:
            what = f"concept set {','.join(map(str, self.concepts))} (with descendants)"
        else:
            what = "all persons"
        if self.start or self.end:
            what += f", events {self.start or '…'} to {self.end or '…'}"
        return what


def read_person_ids(path: str | Path) -> tuple[int, ...]:
    """Integers, one per line (blank lines and a header-like first line ignored); values never echoed."""
    ids: list[int] = []
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, 1):
                text = line.strip().strip(",")
                if not text or (n == 1 and not text.lstrip("-").isdigit()):
                    continue
                try:
                    ids.append(int(text))
                except ValueError:
                    raise ConfigError(f"line {n} of the person-ids file is not an integer") from None
                if len(ids) > MAX_PERSON_IDS:
                    raise ConfigError(f"the person-ids file has more than {MAX_PERSON_IDS:,} ids")
    except OSError as exc:
        raise ConfigError(f"cannot read the person-ids file: {exc.strerror}") from None
    if not ids:
        raise ConfigError("the person-ids file holds no id", "write one person_id per line")
    return tuple(dict.fromkeys(ids))


def parse_concepts(text: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(int(x) for x in text.replace(" ", "").split(",") if x))
    except ValueError:
        raise ConfigError("--concepts takes concept ids (integers) separated by commas") from None


@dataclass
class SourceTables:
    """Table clauses built only from catalogue names, each holding only allow-listed columns."""

    tables: dict[str, sa.TableClause] = field(default_factory=dict)
    vocab: dict[str, sa.TableClause] = field(default_factory=dict)
    cohort: sa.TableClause | None = None


def _ids_param(name: str, ids: tuple[int, ...]) -> sa.BindParameter[Any]:
    array: Any = sa.ARRAY(sa.BigInteger)
    return sa.bindparam(name, list(ids), type_=array, unique=True)


def person_filter(src: SourceTables, sel: Selection, person_id: sa.ColumnElement[int]) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses restricting ``person_id`` to the selected persons (values always bound)."""
    out: list[sa.ColumnElement[bool]] = []
    if sel.person_ids is not None:
        out.append(person_id == sa.any_(_ids_param("person_ids", sel.person_ids)))
    if sel.cohort_id is not None:
        if src.cohort is None:
            raise InputError("--cohort-id needs an OHDSI cohort table, and the source has none", "give --cohort-schema")
        c = src.cohort.c
        out.append(
            person_id.in_(
                sa.select(c.subject_id).where(
                    c.cohort_definition_id == sa.bindparam("cohort_id", sel.cohort_id, unique=True)
                )
            )
        )
    if sel.concepts is not None:
        out.append(person_id.in_(_concept_persons(src, sel)))
    if sel.start or sel.end:
        op = src.tables["observation_period"].c
        window = []
        if sel.end:
            window.append(
                op.observation_period_start_date <= sa.bindparam("window_end", sel.end, type_=sa.Date, unique=True)
            )
        if sel.start:
            window.append(
                op.observation_period_end_date >= sa.bindparam("window_start", sel.start, type_=sa.Date, unique=True)
            )
        out.append(person_id.in_(sa.select(op.person_id).where(*window)))
    return out


def _concept_set(src: SourceTables, sel: Selection, column: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    assert sel.concepts is not None
    direct = column == sa.any_(_ids_param("concepts", sel.concepts))
    ancestor = src.vocab.get("concept_ancestor")
    if ancestor is None:
        return direct
    a = ancestor.c
    below = sa.select(a.descendant_concept_id).where(
        a.ancestor_concept_id == sa.any_(_ids_param("concepts", sel.concepts))
    )
    return sa.or_(direct, column.in_(below))


def _concept_persons(src: SourceTables, sel: Selection) -> sa.CompoundSelect[tuple[int]]:
    parts = []
    for table, column in CONCEPT_DOMAINS.items():
        t = src.tables.get(table)
        if t is None or column not in t.c:
            continue
        where = [_concept_set(src, sel, t.c[column]), *_event_window(table, t, sel)]
        parts.append(sa.select(t.c.person_id).where(*where))
    if not parts:
        raise InputError(
            "--concepts needs at least one of the condition, drug, procedure, measurement or observation tables"
        )
    return sa.union(*parts)


def _event_window(table: str, t: sa.TableClause, sel: Selection) -> list[sa.ColumnElement[bool]]:
    if table not in cdm.EVENT_TABLES or not (sel.start or sel.end):
        return []
    start = t.c[cdm.EVENT_TABLES[table][1]]
    out = []
    if sel.start:
        out.append(start >= sa.bindparam("window_start", sel.start, type_=sa.Date, unique=True))
    if sel.end:
        out.append(start <= sa.bindparam("window_end", sel.end, type_=sa.Date, unique=True))
    return out


def table_query(src: SourceTables, sel: Selection, table: str) -> sa.Select[tuple[object, ...]]:
    """SELECT of one CDM table's allow-listed columns, restricted to the selection."""
    t = src.tables[table]
    where = [*person_filter(src, sel, t.c.person_id), *_event_window(table, t, sel)]
    if table == "observation_period" and (sel.start or sel.end):
        if sel.end:
            where.append(
                t.c.observation_period_start_date <= sa.bindparam("window_end", sel.end, type_=sa.Date, unique=True)
            )
        if sel.start:
            where.append(
                t.c.observation_period_end_date >= sa.bindparam("window_start", sel.start, type_=sa.Date, unique=True)
            )
    return sa.select(*t.c).where(*where)
