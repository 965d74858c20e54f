"""Conditions for conditional generation (``--where sex=F``, ``age=40-60``, ``condition=201826+``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthcohort.errors import ConfigError
from synthcohort.generator.chunk import CONCEPT_COLUMN, Chunk
from synthcohort.generator.safeguards import year_of

DOMAIN_TABLES = {
    "condition": "condition_occurrence",
    "drug": "drug_exposure",
    "procedure": "procedure_occurrence",
    "measurement": "measurement",
    "observation": "observation",
    "visit": "visit_occurrence",
}
SEX = {"f": 8532, "female": 8532, "m": 8507, "male": 8507}
_RE = re.compile(r"^\s*([a-z_]+)\s*=\s*(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Condition:
    """One condition: a demographic (sex, age, race, ethnicity) or a concept held in a domain."""

    field: str
    low: int = 0
    high: int = 0
    concept: int = 0
    descendants: bool = False

    def __str__(self) -> str:
        if self.field == "age":
            return f"age={self.low}-{self.high}"
        if self.field in DOMAIN_TABLES:
            return f"{self.field}={self.concept}{'+' if self.descendants else ''}"
        return f"{self.field}={self.concept}"


def parse(texts: tuple[str, ...] | list[str]) -> list[Condition]:
    """Parse ``--where`` texts; a bad one is a ConfigError raised before any data is read."""
    out: list[Condition] = []
    for text in texts:
        m = _RE.match(text)
        if not m:
            raise ConfigError(f"cannot read --where {text!r}", "write FIELD=VALUE, e.g. sex=F, age=40-60")
        name, value = m.group(1).lower(), m.group(2)
        if name == "sex":
            if value.lower() not in SEX:
                raise ConfigError(f"--where sex={value}: unknown sex", "use sex=F or sex=M")
            out.append(Condition("gender", concept=SEX[value.lower()]))
        elif name == "age":
            am = re.fullmatch(r"(\d{1,3})(?:\s*-\s*(\d{1,3}))?", value)
            if not am:
                raise ConfigError(f"--where age={value}: not an age range", "write age=40-60 or age=65")
            lo, hi = int(am.group(1)), int(am.group(2) or am.group(1))
            if lo > hi:
                raise ConfigError(f"--where age={value}: the range is empty", "write the lower age first")
            out.append(Condition("age", low=lo, high=hi))
        elif name in ("race", "ethnicity") or name in DOMAIN_TABLES:
            cm = re.fullmatch(r"(\d{1,12})(\+?)", value)
            if not cm:
                raise ConfigError(f"--where {name}={value}: not a concept id", f"write {name}=<OMOP concept_id>[+]")
            if cm.group(2) and name not in DOMAIN_TABLES:
                raise ConfigError(f"--where {name}={value}: '+' applies to clinical concepts only")
            out.append(Condition(name, concept=int(cm.group(1)), descendants=bool(cm.group(2))))
        else:
            raise ConfigError(
                f"--where {name}: unknown field",
                "use sex, age, race, ethnicity, condition, drug, procedure, measurement, observation or visit",
            )
    return out


def expand(conditions: list[Condition], ancestors: pd.DataFrame) -> dict[Condition, set[int]]:
    """The concept ids each concept condition accepts (itself, plus descendants when asked)."""
    out: dict[Condition, set[int]] = {}
    for cond in conditions:
        ids = {cond.concept}
        if cond.descendants and len(ancestors):
            hit = ancestors["ancestor_concept_id"] == cond.concept
            ids |= set(ancestors.loc[hit, "descendant_concept_id"].astype("int64"))
        out[cond] = ids
    return out


def matches(chunk: Chunk, conditions: list[Condition], accepted: dict[Condition, set[int]]) -> np.ndarray:
    """Local ids of the chunk's persons that satisfy every condition."""
    person = chunk["person"]
    ok = np.ones(len(person), dtype=bool)
    ids = person["person_id"].to_numpy()
    for cond in conditions:
        if cond.field == "gender":
            ok &= person["gender_concept_id"].to_numpy() == cond.concept
        elif cond.field == "age":  # at the end of observation, as the model draws it
            end = chunk["observation_period"].groupby("person_id")["observation_period_end_date"].max()
            end_day = end.reindex(person["person_id"]).to_numpy(dtype="int64")
            age = year_of(end_day) - year_of(person["birth_day"].to_numpy(dtype="int64"))
            ok &= (age >= cond.low) & (age <= cond.high)
        elif cond.field in ("race", "ethnicity"):
            ok &= person[f"{cond.field}_concept_id"].to_numpy() == cond.concept
        else:
            table = DOMAIN_TABLES[cond.field]
            df = chunk.get(table)
            if df is None:
                ok &= False
                continue
            hit = df.loc[df[CONCEPT_COLUMN[table]].isin(accepted[cond]), "person_id"].unique()
            ok &= np.isin(ids, hit)
    return ids[ok]
