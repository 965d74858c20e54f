"""The read side of the interpreter: the FHIR -> OMOP rules of one resource type, compiled once into closures.

Each rule becomes a template row (constants filled in) and one step per column; each step reads its
paths and writes its staging cells. Rows are plain lists in the order of the table's staging layout
(:func:`staging_layout`), so the stager turns them into Arrow columns without per-row dictionaries.
Paths are read in the order the rules give, stopping where the rule stops: the notes (empty values,
dropped links, ...) and the order in which store ids are handed out do not depend on the compilation.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

from synthcohort.mappings.paths import EmptyCounter, Getter, compile_path
from synthcohort.mappings.rules import (
    ColumnRule,
    Condition,
    ReadRule,
    RuleError,
    all_rules,
    code_systems,
    read_rules_by_resource,
)

# A code worth keeping: printable ASCII without spaces, at most 50 characters (concept_code is varchar(50)).
# Free text (spaces, long strings) is never modelled.
_TOKEN = re.compile(r"[!-~]{1,50}")
_SYSTEM = re.compile(r"(https?://|urn:(oid|uuid|iso):)[!-~]{1,240}")

# Staged strings are interned: rows then hold one copy of each repeated code, system or time instead of
# pinning the strings of every parsed document, whose memory is freed and reused in one piece.
intern = sys.intern

SKIP_FOR_REQUIRED = {"ref": "orphan", "coding": "no_code", "date": "no_date", "map": "invalid_value"}
# Staging columns every table has after its mapped columns: resource type, resource number, row number.
ROW_META = (("_rtype", "VARCHAR"), ("_res", "BIGINT"), ("_seq", "BIGINT"))


class Context(Protocol):
    """What the reader offers the interpreter: reference resolution, nothing else."""

    def ref_id(self, reference: Any, to: str) -> int | None: ...

    def self_id(self, to: str) -> int | None: ...

    def deref(self, reference: Any) -> dict[str, Any] | None: ...


class Notes:
    """Counts of things noticed while mapping that did not cost a record."""

    def __init__(self) -> None:
        self.empty = EmptyCounter()
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def staging_columns(rule_columns: list[ColumnRule]) -> list[tuple[str, str]]:
    """Staging columns (name, DuckDB type) for a table's column rules; codings and dates stay raw."""
    out: dict[str, str] = {}
    for c in rule_columns:
        if c.kind == "coding":
            out[f"{c.column}__sys"] = "VARCHAR"
            out[f"{c.column}__code"] = "VARCHAR"
        elif c.kind == "date":
            out[f"{c.column}__raw"] = "VARCHAR"
        elif c.kind == "number":
            out[c.column] = "DOUBLE"
        else:
            out[c.column] = "BIGINT"
    return list(out.items())


@cache
def table_columns(table: str) -> tuple[ColumnRule, ...]:
    """The column rules of a table's read rules, one per OMOP column (the first rule naming it wins)."""
    cols: dict[str, ColumnRule] = {}
    for r in all_rules()[table].read:
        for c in r.columns:
            cols.setdefault(c.column, c)
    return tuple(cols.values())


@cache
def staging_layout(table: str) -> tuple[tuple[str, str], ...]:
    """(name, DuckDB type) of every staging column of ``table``, in the order of a mapped row."""
    return (*staging_columns(list(table_columns(table))), *ROW_META)


# A value reader: (resource, item of an ``each`` rule, context, empty counter) -> the values found.
Values = Callable[[dict[str, Any], Any, Context, EmptyCounter], list[Any]]
# A condition: (resource, item, context, empty counter, this resource's cache of conditions) -> holds?
Test = Callable[[dict[str, Any], Any, Context, EmptyCounter, dict[Any, bool]], bool]
# A column step: reads its paths, writes its cells of the row; returns a skip reason when it fails.
Step = Callable[[dict[str, Any], Any, Context, "Notes", list[Any]], str | None]


def _path_values(path: str) -> Values:
    """Compile ``path``: ``.x`` reads the item of an ``each`` rule, ``a->b`` follows a reference."""
    relative = path.startswith(".")
    if relative:
        path = path[1:]
    if "->" in path:
        ref_path, target_path = path.split("->", 1)
        get_ref, get_target = compile_path(ref_path), compile_path(target_path)

        def follow(resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter) -> list[Any]:
            out: list[Any] = []
            for ref in get_ref(item if relative else resource, empty):
                target = ctx.deref(ref)
                if target is not None:
                    out.extend(get_target(target, empty))
            return out

        return follow
    get: Getter = compile_path(path)
    if relative:
        return lambda resource, item, ctx, empty: get(item, empty)
    return lambda resource, item, ctx, empty: get(resource, empty)


def _values(paths: tuple[str, ...]) -> Values:
    """The values of the first of ``paths`` that has any (``@self`` is not a path: it reads nothing)."""
    readers = [_path_values(p) for p in paths if p != "@self"]
    if len(readers) == 1:
        return readers[0]

    def first(resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter) -> list[Any]:
        values: list[Any] = []
        for read in readers:
            values = read(resource, item, ctx, empty)
            if values:
                break
        return values

    return first


_TEST_SLOTS: dict[tuple[str, frozenset[str] | None], int] = {}


def _test(c: Condition) -> Test:
    """A compiled condition; one that reads only the resource (no item, no reference) is cached per resource."""
    read, wanted = _path_values(c.path), c.values

    def holds(resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter) -> bool:
        found = read(resource, item, ctx, empty)
        if wanted is None:
            return bool(found)
        return any(isinstance(v, str) and v in wanted for v in found)

    if c.path.startswith(".") or "->" in c.path:
        return lambda resource, item, ctx, empty, cache: holds(resource, item, ctx, empty)
    # the same condition in several rules is read once per resource
    key = _TEST_SLOTS.setdefault((c.path, c.values), len(_TEST_SLOTS))

    def cached(resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter, cache: dict[Any, bool]) -> bool:
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = holds(resource, item, ctx, empty)
        return hit

    return cached


def pick_coding(candidates: list[Any], notes: Notes, known: dict[str, str] | None = None) -> tuple[str, str] | None:
    """The (system, code) to keep: a known system first, else a plain local one; never a display."""
    if known is None:
        known = code_systems().by_uri
    fallback: tuple[str, str] | None = None
    for cand in candidates:
        if not isinstance(cand, dict):
            continue
        codings = cand.get("coding") if "coding" in cand else [cand]
        for coding in codings if isinstance(codings, list) else ():
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if not isinstance(code, str) or not code:
                continue
            if not isinstance(system, str) or not system:
                notes.add("coding_without_system")
                continue
            if not _TOKEN.fullmatch(code):
                notes.add("code_not_modelled")
                continue
            if system in known:
                return system, code
            if fallback is None and _SYSTEM.fullmatch(system):
                fallback = (system, code)
    return fallback


def _step(col: ColumnRule, slot: dict[str, int]) -> Step:
    """The step of one column rule; ``slot`` gives the row index of each staging column."""
    kind, required = col.kind, col.required
    fail = SKIP_FOR_REQUIRED[kind] if required else None
    read = _values(col.paths)
    if kind == "ref":
        i, to = slot[col.column], col.to
        if col.paths == ("@self",):

            def self_ref(resource: dict[str, Any], item: Any, ctx: Context, notes: Notes, row: list[Any]) -> str | None:
                ident = row[i] = ctx.self_id(to)
                return fail if ident is None else None

            return self_ref

        def ref(resource: dict[str, Any], item: Any, ctx: Context, notes: Notes, row: list[Any]) -> str | None:
            values = read(resource, item, ctx, notes.empty)
            ident = None
            for v in values:
                ident = ctx.ref_id(v, to)
                if ident is not None:
                    row[i] = ident
                    return None
            if values and not required:
                notes.add("link_dropped")
            return fail

        return ref
    if kind == "coding":
        i_sys, i_code = slot[f"{col.column}__sys"], slot[f"{col.column}__code"]
        known = code_systems().by_uri

        def coding(resource: dict[str, Any], item: Any, ctx: Context, notes: Notes, row: list[Any]) -> str | None:
            picked = pick_coding(read(resource, item, ctx, notes.empty), notes, known)
            if picked is None:
                return fail
            row[i_sys], row[i_code] = intern(picked[0]), intern(picked[1])
            return None

        return coding
    if kind == "date":
        i = slot[f"{col.column}__raw"]

        def date(resource: dict[str, Any], item: Any, ctx: Context, notes: Notes, row: list[Any]) -> str | None:
            for v in read(resource, item, ctx, notes.empty):
                if isinstance(v, str):
                    row[i] = intern(v)
                    return None
            return fail

        return date
    if kind == "number":
        i = slot[col.column]

        def number(resource: dict[str, Any], item: Any, ctx: Context, notes: Notes, row: list[Any]) -> str | None:
            for v in read(resource, item, ctx, notes.empty):
                if isinstance(v, int | float) and not isinstance(v, bool):
                    row[i] = float(v)
                    return None
            return fail

        return number
    # map: a string looked up in the rule's table, else the default
    i, mapping, default = slot[col.column], col.mapping, col.default

    def lookup(resource: dict[str, Any], item: Any, ctx: Context, notes: Notes, row: list[Any]) -> str | None:
        value = default
        for v in read(resource, item, ctx, notes.empty):
            if isinstance(v, str):
                value = mapping.get(v, default)
                break
        row[i] = value
        return fail if value is None else None

    return lookup


class _CompiledRule:
    def __init__(self, rule: ReadRule) -> None:
        self.table = rule.table
        self.each = compile_path(rule.each) if rule.each else None
        self.when = [_test(c) for c in rule.when]
        self.unless = [_test(c) for c in rule.unless]
        layout = staging_layout(rule.table)
        slot = {name: i for i, (name, _) in enumerate(layout)}
        for c in rule.columns:
            if any(name not in slot for name, _ in staging_columns([c])):
                raise RuleError(f"{rule.table}: {c.column} is read as a {c.kind} here and as another kind elsewhere")
        self.template: list[Any] = [None] * len(layout)
        for c in rule.columns:
            if c.kind == "const":
                self.template[slot[c.column]] = c.const
        self.steps = [_step(c, slot) for c in rule.columns if c.kind != "const"]

    def applies(
        self, resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter, cache: dict[Any, bool]
    ) -> bool:
        for w in self.when:
            if not w(resource, item, ctx, empty, cache):
                return False
        return not self.unless or not all(u(resource, item, ctx, empty, cache) for u in self.unless)

    def row(self, resource: dict[str, Any], item: Any, ctx: Context, notes: Notes) -> tuple[list[Any], str | None]:
        row = self.template.copy()
        for step in self.steps:
            failed = step(resource, item, ctx, notes, row)
            if failed:
                return row, failed
        return row, None


class ResourceMapper:
    """All read rules of one resource type, compiled; ``map`` gives rows per table or a skip reason."""

    def __init__(self, rules: tuple[ReadRule, ...]) -> None:
        self.rules = [_CompiledRule(r) for r in rules]
        seen: set[tuple[str, frozenset[str] | None]] = set()
        skips: list[tuple[Test, str]] = []
        for r in rules:
            for c in r.skip:
                if (c.path, c.values) not in seen:
                    seen.add((c.path, c.values))
                    skips.append((_test(c), c.reason or "status_excluded"))
        self.skips = skips

    def map(self, resource: dict[str, Any], ctx: Context, notes: Notes) -> tuple[list[tuple[str, list[Any]]], str]:
        empty = notes.empty
        cache: dict[Any, bool] = {}
        for test, reason in self.skips:
            if test(resource, resource, ctx, empty, cache):
                return [], reason
        rows: list[tuple[str, list[Any]]] = []
        for rule in self.rules:
            if rule.each is None:
                if rule.applies(resource, resource, ctx, empty, cache):
                    row, failed = rule.row(resource, resource, ctx, notes)
                    if failed:
                        return [], failed
                    rows.append((rule.table, row))
                continue
            for item in rule.each(resource, empty):
                if rule.applies(resource, item, ctx, empty, cache):
                    row, failed = rule.row(resource, item, ctx, notes)
                    if failed:
                        notes.add(f"{rule.table}_item_{failed}")
                        continue
                    rows.append((rule.table, row))
        return rows, "" if rows else "no_rule"


_MAPPERS: dict[str, ResourceMapper] = {}


def mapper_for(resource_type: str) -> ResourceMapper | None:
    """The compiled mapper of a resource type, or None when no rule reads it."""
    m = _MAPPERS.get(resource_type)
    if m is None:
        rules = read_rules_by_resource().get(resource_type)
        if rules is None:
            return None
        m = _MAPPERS[resource_type] = ResourceMapper(rules)
    return m


def mapped_resource_types() -> frozenset[str]:
    return frozenset(read_rules_by_resource())
