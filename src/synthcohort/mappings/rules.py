"""Load the mapping rule files (one TOML per OMOP table) and the code-system table, as plain objects."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from synthcohort import cdm

# The tables a rule file maps, in load order; observation_period has none: it is derived from the events.
MAPPED_TABLES = tuple(t for t in cdm.LOAD_ORDER if t != "observation_period")

# Elements a rule may never name: they hold identifiers, names, contact details, pictures or free text.
FORBIDDEN_ELEMENTS = frozenset(
    {
        "identifier",
        "name",
        "telecom",
        "address",
        "photo",
        "contact",
        "text",
        "note",
        "attachment",
        "content",
        "valueString",
        "valueAttachment",
        "display",
        "description",
        "comment",
        "link",
    }
)

# Local code systems get a vocabulary_id of this prefix + a hash of the URI (vocabulary_id is varchar(20)).
LOCAL_VOCABULARY_PREFIX = "SC-"
LOCAL_CONCEPT_BASE = 2_000_000_000


class RuleError(ValueError):
    """A mapping rule file is malformed (a packaging error, never a user error)."""


@dataclass(frozen=True)
class Condition:
    path: str
    values: frozenset[str] | None  # None: presence test
    reason: str = ""


@dataclass(frozen=True)
class ColumnRule:
    column: str
    kind: str  # ref | coding | date | number | map | const
    paths: tuple[str, ...] = ()
    required: bool = False
    to: str = ""
    source_concept: str | None = None
    source_value: str | None = None
    datetime: str | None = None
    mapping: dict[str, int] = field(default_factory=dict)
    default: Any = None
    const: Any = None


@dataclass(frozen=True)
class ReadRule:
    table: str
    resource: str
    each: str | None
    when: tuple[Condition, ...]
    unless: tuple[Condition, ...]
    skip: tuple[Condition, ...]
    columns: tuple[ColumnRule, ...]


@dataclass(frozen=True)
class WriteRule:
    table: str
    resource: str
    template: dict[str, Any]
    templates: dict[str, dict[str, Any]]
    choose: tuple[dict[str, Any], ...]
    lookup: dict[str, dict[str, Any]]
    join: str | None


@dataclass(frozen=True)
class TableRules:
    table: str
    read: tuple[ReadRule, ...]
    write: WriteRule | None
    derive: dict[str, str]


def _check_path(path: str, where: str) -> None:
    from synthcohort.mappings.paths import parse_path

    for name, _ in parse_path(path.lstrip(".").replace("->", ".")):
        if name in FORBIDDEN_ELEMENTS:
            raise RuleError(f"{where}: element '{name}' may not be read (identifying or free text)")


def _conditions(raw: list[dict[str, Any]], where: str) -> tuple[Condition, ...]:
    out = []
    for c in raw:
        _check_path(c["path"], where)
        values = frozenset(str(v) for v in c["in"]) if "in" in c else None
        out.append(Condition(c["path"], values, c.get("reason", "")))
    return tuple(out)


def _column(table: str, name: str, spec: dict[str, Any], where: str) -> ColumnRule:
    columns = set(cdm.table(table).column_names)
    for col in (name, spec.get("source_concept"), spec.get("source_value"), spec.get("datetime")):
        if col is not None and col not in columns:
            raise RuleError(f"{where}: {table} has no column {col}")
    kind = next((k for k in ("ref", "coding", "date", "number", "const", "path") if k in spec), None)
    if kind is None:
        raise RuleError(f"{where}: column {name} has no rule")
    raw_paths = spec.get(kind, ())
    paths = tuple(raw_paths) if isinstance(raw_paths, list) else (raw_paths,)
    if kind != "const":
        for p in paths:
            if p != "@self":
                _check_path(str(p), where)
    return ColumnRule(
        column=name,
        kind="map" if kind == "path" else kind,
        paths=tuple(str(p) for p in paths) if kind != "const" else (),
        required=bool(spec.get("required", False)),
        to=spec.get("to", ""),
        source_concept=spec.get("source_concept"),
        source_value=spec.get("source_value"),
        datetime=spec.get("datetime"),
        mapping={str(k): int(v) for k, v in spec.get("map", {}).items()},
        default=spec.get("default"),
        const=spec.get("const"),
    )


def _load_table(table: str) -> TableRules:
    text = resources.files("synthcohort.mappings").joinpath("rules", f"{table}.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    if raw.get("table") != table:
        raise RuleError(f"{table}.toml: table must be {table!r}")
    reads = []
    for i, r in enumerate(raw.get("read", [])):
        where = f"{table}.toml read[{i}]"
        reads.append(
            ReadRule(
                table=table,
                resource=r["resource"],
                each=r.get("each"),
                when=_conditions(r.get("when", []), where),
                unless=_conditions(r.get("unless", []), where),
                skip=_conditions(r.get("skip", []), where),
                columns=tuple(_column(table, k, v, where) for k, v in r["columns"].items()),
            )
        )
    w = raw.get("write")
    write = (
        WriteRule(
            table=table,
            resource=w["resource"],
            template=w.get("template", {}),
            templates=w.get("templates", {}),
            choose=tuple(w.get("choose", [])),
            lookup={k: {str(kk): vv for kk, vv in v.items()} for k, v in w.get("lookup", {}).items()},
            join=w.get("join"),
        )
        if w
        else None
    )
    return TableRules(table, tuple(reads), write, dict(raw.get("derive", {})))


@cache
def all_rules() -> dict[str, TableRules]:
    return {t: _load_table(t) for t in MAPPED_TABLES}


@cache
def read_rules_by_resource() -> dict[str, tuple[ReadRule, ...]]:
    out: dict[str, list[ReadRule]] = {}
    for rules in all_rules().values():
        for r in rules.read:
            out.setdefault(r.resource, []).append(r)
    return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True)
class CodeSystems:
    by_uri: dict[str, str]
    uri_of: dict[str, str]

    def vocabulary_of(self, uri: str) -> str:
        """The OMOP vocabulary_id for a system URI; local systems get a stable ``SC-<hash>`` id."""
        known = self.by_uri.get(uri)
        if known is not None:
            return known
        return LOCAL_VOCABULARY_PREFIX + hashlib.sha256(uri.encode()).hexdigest()[:12]


@cache
def code_systems() -> CodeSystems:
    text = resources.files("synthcohort.mappings").joinpath("systems.toml").read_text("utf-8")
    by_uri: dict[str, str] = {}
    uri_of: dict[str, str] = {}
    for s in tomllib.loads(text)["system"]:
        uri_of[s["vocabulary_id"]] = s["uri"][0]
        for u in s["uri"]:
            by_uri[u] = s["vocabulary_id"]
    return CodeSystems(by_uri, uri_of)


@dataclass(frozen=True)
class VersionMarker:
    path: str
    shape: str
    version: str


@cache
def version_markers() -> dict[str, tuple[VersionMarker, ...]]:
    text = resources.files("synthcohort.mappings").joinpath("fhir_versions.toml").read_text("utf-8")
    out: dict[str, list[VersionMarker]] = {}
    for m in tomllib.loads(text)["marker"]:
        out.setdefault(m["resource"], []).append(VersionMarker(m["path"], m["shape"], m["version"]))
    return {k: tuple(v) for k, v in out.items()}
