"""The read side of the interpreter: apply the FHIR -> OMOP rules of one resource type to a resource."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from synthcohort.mappings.paths import EmptyCounter, compile_path
from synthcohort.mappings.rules import ColumnRule, Condition, ReadRule, code_systems, read_rules_by_resource

# A code worth keeping: printable ASCII without spaces, at most 50 characters (concept_code is varchar(50)).
# Free text (spaces, long strings) is never modelled.
_TOKEN = re.compile(r"[!-~]{1,50}")
_SYSTEM = re.compile(r"(https?://|urn:(oid|uuid|iso):)[!-~]{1,240}")

SKIP_FOR_REQUIRED = {"ref": "orphan", "coding": "no_code", "date": "no_date", "map": "invalid_value"}


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


PathFn = Callable[[dict[str, Any], Any, Context, EmptyCounter], list[Any]]
# A compiled path: (0, getter) reads the resource, (1, getter) the current item, (2, fn) follows a reference.
CompiledPath = tuple[int, Any]


def _path_getter(path: str) -> CompiledPath:
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

        return 2, follow
    return (1 if relative else 0), compile_path(path)


def _get(compiled: CompiledPath, resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter) -> list[Any]:
    mode, fn = compiled
    if mode == 0:
        return fn(resource, empty)  # type: ignore[no-any-return]
    if mode == 1:
        return fn(item, empty)  # type: ignore[no-any-return]
    return fn(resource, item, ctx, empty)  # type: ignore[no-any-return]


class _Test:
    """A compiled condition; tests on the resource (not on an item) are cached per resource."""

    def __init__(self, c: Condition) -> None:
        self.key = (c.path, c.values)
        self.path = _path_getter(c.path)
        self.values = c.values
        self.cacheable = self.path[0] == 0

    def __call__(
        self, resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter, cache: dict[Any, bool]
    ) -> bool:
        if self.cacheable:
            hit = cache.get(self.key)
            if hit is not None:
                return hit
        found = _get(self.path, resource, item, ctx, empty)
        values = self.values
        result = bool(found) if values is None else any(isinstance(v, str) and v in values for v in found)
        if self.cacheable:
            cache[self.key] = result
        return result


def pick_coding(candidates: list[Any], notes: Notes) -> tuple[str, str] | None:
    """The (system, code) to keep: a known system first, else a plain local one; never a display."""
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


class _CompiledRule:
    def __init__(self, rule: ReadRule) -> None:
        self.table = rule.table
        self.each = compile_path(rule.each) if rule.each else None
        self.when = [_Test(c) for c in rule.when]
        self.unless = [_Test(c) for c in rule.unless]
        self.columns = [(c, [_path_getter(p) for p in c.paths if p != "@self"]) for c in rule.columns]

    def applies(
        self, resource: dict[str, Any], item: Any, ctx: Context, empty: EmptyCounter, cache: dict[Any, bool]
    ) -> bool:
        for w in self.when:
            if not w(resource, item, ctx, empty, cache):
                return False
        if not self.unless:
            return True
        return not all(u(resource, item, ctx, empty, cache) for u in self.unless)

    def row(self, resource: dict[str, Any], item: Any, ctx: Context, notes: Notes) -> tuple[dict[str, Any], str | None]:
        empty = notes.empty
        row: dict[str, Any] = {}
        for col, getters in self.columns:
            kind = col.kind
            if kind == "const":
                row[col.column] = col.const
                continue
            values: list[Any] = []
            for mode, fn in getters:
                if mode == 0:
                    values = fn(resource, empty)
                elif mode == 1:
                    values = fn(item, empty)
                else:
                    values = fn(resource, item, ctx, empty)
                if values:
                    break
            if kind == "ref":
                ident = ctx.self_id(col.to) if col.paths == ("@self",) else None
                if col.paths != ("@self",):
                    for v in values:
                        ident = ctx.ref_id(v, col.to)
                        if ident is not None:
                            break
                    if ident is None and values and not col.required:
                        notes.add("link_dropped")
                row[col.column] = ident
                value: Any = ident
            elif kind == "coding":
                picked = pick_coding(values, notes)
                row[f"{col.column}__sys"], row[f"{col.column}__code"] = picked or (None, None)
                value = picked
            elif kind == "date":
                value = next((v for v in values if isinstance(v, str)), None)
                row[f"{col.column}__raw"] = value
            elif kind == "number":
                value = next((float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)), None)
                row[col.column] = value
            else:  # map
                raw = next((v for v in values if isinstance(v, str)), None)
                value = col.mapping.get(raw, col.default) if raw is not None else col.default
                row[col.column] = value
            if value is None and col.required:
                return row, SKIP_FOR_REQUIRED[kind]
        return row, None


class ResourceMapper:
    """All read rules of one resource type, compiled; ``map`` gives rows per table or a skip reason."""

    def __init__(self, rules: tuple[ReadRule, ...]) -> None:
        self.rules = [_CompiledRule(r) for r in rules]
        seen: set[tuple[str, frozenset[str] | None]] = set()
        skips: list[tuple[_Test, str]] = []
        for r in rules:
            for c in r.skip:
                if (c.path, c.values) not in seen:
                    seen.add((c.path, c.values))
                    skips.append((_Test(c), c.reason or "status_excluded"))
        self.skips = skips

    def map(self, resource: dict[str, Any], ctx: Context, notes: Notes) -> tuple[list[tuple[str, dict[str, Any]]], str]:
        empty = notes.empty
        cache: dict[Any, bool] = {}
        for test, reason in self.skips:
            if test(resource, resource, ctx, empty, cache):
                return [], reason
        rows: list[tuple[str, dict[str, Any]]] = []
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
