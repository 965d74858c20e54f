"""The write side of the interpreter: compile each OMOP -> FHIR template once into DuckDB SQL.

A compiled template is, per resource type, one SQL expression that renders the resource's
members as JSON text (keys in template order), or NULL when the row gives no resource (a
required member is absent). Constants are rendered once by orjson; the per-row values are
dates, numbers and fragments the writer renders beforehand with orjson (codings, references),
so no row string needs JSON escaping in SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from synthcohort.mappings.rules import RuleError, WriteRule

_CALL = re.compile(r"=(\w+)\((.*)\)")
UCUM = "http://unitsofmeasure.org"
TRUE = "TRUE"


class SqlSources(Protocol):
    """What the writer's query offers a template: row columns, joined concepts, references."""

    def column(self, name: str) -> tuple[str, str]:
        """SQL of a column of the row and its CDM datatype (integer, float, date, datetime, varchar(n))."""
        ...

    def concept(self, column: str) -> str:
        """Alias of the concept row joined on ``column``: .coding (JSON text), .key, .ucum, .vocabulary_id."""
        ...

    def reference(self, resource_type: str, column: str) -> str:
        """SQL of the JSON text of a reference to the row named by ``column``; NULL when it is not exported."""
        ...


@dataclass(frozen=True)
class Value:
    """A compiled template node: SQL of its JSON text, and SQL that is true when it is present (not NULL)."""

    sql: str
    present: str = TRUE
    text: str | None = None  # the JSON text, when the node is a constant

    @property
    def nullable(self) -> bool:
        return self.present != TRUE


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def constant(value: Any) -> Value:
    text = orjson.dumps(value).decode()
    return Value(literal(text), TRUE, text)


def concat(parts: list[str | Value]) -> Value:
    """Concatenate JSON pieces (plain strings are JSON text); NULL when a nullable part is NULL."""
    merged: list[str | Value] = []
    for part in parts:
        text = part if isinstance(part, str) else part.text
        if text is not None and merged and isinstance(merged[-1], str):
            merged[-1] += text
        else:
            merged.append(text if text is not None else part)
    if len(merged) == 1 and isinstance(merged[0], str):
        return Value(literal(merged[0]), TRUE, merged[0])
    sql = " || ".join(literal(p) if isinstance(p, str) else p.sql for p in merged)
    present = [p.present for p in merged if isinstance(p, Value) and p.nullable]
    return Value(sql, " AND ".join(f"({p})" for p in present) or TRUE)


def _comma_separated(items: list[Value]) -> Value:
    parts: list[str | Value] = []
    for i, item in enumerate(items):
        parts.extend([","] if i else [])
        parts.append(item)
    return concat(parts)


def joined(items: list[Value], open_: str, close: str) -> Value | None:
    """``open_`` + the present items separated by commas + ``close``; absent when no item is present."""
    if not items:
        return None
    if not any(i.nullable for i in items):
        return concat([open_, _comma_separated(items), close])
    args: list[Value] = []
    run: list[Value] = []
    for item in items:
        if item.nullable:
            if run:
                args.append(_comma_separated(run))
                run = []
            args.append(item)
        else:
            run.append(item)
    if run:
        args.append(_comma_separated(run))
    inner = f"concat_ws(',', {', '.join(a.sql for a in args)})"
    if any(not a.nullable for a in args):
        return concat([open_, Value(inner), close])
    # Not nullif(inner, ''): DuckDB expands it to a CASE holding ``inner`` twice, which doubles at every level.
    present = " OR ".join(f"({a.present})" for a in args)
    return Value(f"CASE WHEN {present} THEN {concat([open_, Value(inner), close]).sql} END", present)


def _date(sql: str, cdm_type: str) -> str:
    if cdm_type == "date":
        return f"strftime({sql}, '%Y-%m-%d')"
    if cdm_type == "datetime":  # UTC; fractions of a second are dropped
        return f"strftime({sql}, '%Y-%m-%dT%H:%M:%S+00:00')"
    raise RuleError(f"date functions need date or datetime columns, not {cdm_type}")


def number_sql(d: str) -> str:
    """A DOUBLE as orjson writes the float (an integer when whole), NULL unless finite.

    DuckDB writes doubles as Python's repr does; orjson differs only below 1e-4: 1e-05 <= |x| <
    1e-04 positionally (0.000012), smaller ones without the exponent's leading zero (1e-7).
    """
    positional = f"regexp_replace(CAST({d} AS VARCHAR), '^(-?)(\\d)\\.?(\\d*)e-05$', '\\10.0000\\2\\3')"
    small = f"regexp_replace({positional}, 'e-0', 'e-')"
    return (
        f"CASE WHEN {d} = trunc({d}) AND abs({d}) < 9007199254740992 THEN CAST(CAST({d} AS BIGINT) AS VARCHAR) "
        f"WHEN abs({d}) < 1e-4 THEN {small} WHEN isfinite({d}) THEN CAST({d} AS VARCHAR) END"
    )


def _double(sources: SqlSources, column: str) -> str:
    sql, cdm_type = sources.column(column)
    return sql if cdm_type == "float" else f"CAST({sql} AS DOUBLE)"


def _number(sources: SqlSources, column: str) -> Value:
    d = _double(sources, column)
    return Value(number_sql(d), f"coalesce(isfinite({d}), false)")


def _quoted(sql: str, present: str) -> Value:
    return Value(f"'\"' || {sql} || '\"'", present)


def _codeable(sources: SqlSources, columns: list[str]) -> Value | None:
    aliases = [sources.concept(c) for c in columns]
    items = []
    for i, a in enumerate(aliases):
        earlier = " OR ".join(f"{a}.key = {b}.key" for b in aliases[:i])
        sql = f"CASE WHEN {earlier} THEN NULL ELSE {a}.coding END" if earlier else f"{a}.coding"
        items.append(Value(sql, f"{a}.coding IS NOT NULL"))
    return joined(items, '{"coding":[', "]}")


def _lookup(sources: SqlSources, args: list[str], lookup: dict[str, dict[str, Any]], present_only: bool) -> Value:
    sql, cdm_type = sources.column(args[0])
    table = lookup[args[1]]
    if present_only:
        when_present, when_absent = constant(table["present"]), constant(table["absent"])
        return Value(f"CASE WHEN {sql} IS NOT NULL THEN {when_present.sql} ELSE {when_absent.sql} END")
    if cdm_type not in ("integer",) and not cdm_type.startswith("varchar"):
        raise RuleError(f"lookup needs an integer or text column, not {cdm_type}")
    key = f"CAST({sql} AS VARCHAR)"
    cases = " ".join(f"WHEN {literal(k)} THEN {constant(v).sql}" for k, v in table.items())
    if len(args) > 2:
        fallback = constant(table.get(args[2], args[2]))
        return Value(f"CASE {key} {cases} ELSE {fallback.sql} END")
    keys = ", ".join(literal(k) for k in table)
    return Value(f"CASE {key} {cases} END", f"{key} IN ({keys})")


def _quantity(sources: SqlSources, args: list[str]) -> Value:
    value = _number(sources, args[0])
    units = ", ".join(f"',' || {sources.concept(c)}.ucum" for c in args[1:])
    unit = f"coalesce({units}, '')" if units else "''"
    return Value(f"'{{\"value\":' || {value.sql} || {unit} || '}}'", value.present)


def _birthdate(sources: SqlSources, args: list[str]) -> Value:
    y, m, d = (sources.column(a)[0] for a in args)
    text = (
        f"CASE WHEN {m} IS NULL THEN printf('%04d', {y}) WHEN {d} IS NULL THEN printf('%04d-%02d', {y}, {m}) "
        f"ELSE printf('%04d-%02d-%02d', {y}, {m}, {d}) END"
    )
    return _quoted(text, f"{y} IS NOT NULL")


def _integer(sources: SqlSources, column: str) -> Value:
    sql, cdm_type = sources.column(column)
    if cdm_type == "integer":
        return Value(f"CAST({sql} AS VARCHAR)", f"{sql} IS NOT NULL")
    d = _double(sources, column)
    return Value(f"CAST(CAST(trunc({d}) AS BIGINT) AS VARCHAR)", f"coalesce(isfinite({d}), false)")


def _function(name: str, args: list[str], lookup: dict[str, dict[str, Any]], sources: SqlSources) -> Value | None:
    """One template function as SQL."""
    if name == "ref":
        rtype, col = args
        ref = sources.reference(rtype, col)
        return Value(ref, f"{ref} IS NOT NULL")
    if name == "codeable":
        return _codeable(sources, args)
    if name == "coding":
        alias = sources.concept(args[0])
        return Value(f"{alias}.coding", f"{alias}.coding IS NOT NULL")
    if name in ("datetime", "date"):
        cols = [sources.column(a) for a in args]
        dates = ", ".join(_date(sql, t) for sql, t in cols)
        return _quoted(f"coalesce({dates})", " OR ".join(f"{sql} IS NOT NULL" for sql, _ in cols))
    if name == "number":
        return _number(sources, args[0])
    if name == "integer":
        return _integer(sources, args[0])
    if name == "birthdate":
        return _birthdate(sources, args)
    if name == "quantity":
        return _quantity(sources, args)
    if name in ("lookup", "lookup_present"):
        return _lookup(sources, args, lookup, name == "lookup_present")
    raise RuleError(f"unknown template function {name}")


def _node(node: Any, lookup: dict[str, dict[str, Any]], sources: SqlSources) -> Value | None:
    if isinstance(node, str) and node.startswith("="):
        m = _CALL.fullmatch(node)
        if m is None:
            raise RuleError(f"bad template call {node!r}")
        args = [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
        return _function(m.group(1), args, lookup, sources)
    if isinstance(node, dict):
        return _object(node, lookup, sources, "{", "}")
    if isinstance(node, list):
        return joined([v for v in (_node(i, lookup, sources) for i in node) if v is not None], "[", "]")
    return constant(node)


def _object(
    node: dict[str, Any], lookup: dict[str, dict[str, Any]], sources: SqlSources, open_: str, close: str
) -> Value | None:
    """An object's members in template order; ``!key`` members are required (absent: no object)."""
    members: list[Value] = []
    required: list[str] = []
    for key, child in node.items():
        value = _node(child, lookup, sources)
        if value is None:
            if key.startswith("!"):
                return None
            continue
        members.append(concat([orjson.dumps(key.lstrip("!")).decode() + ":", value]))
        if key.startswith("!") and value.nullable:
            required.append(value.present)
    out = joined(members, open_, close)
    if out is None or not required:
        return out
    condition = " AND ".join(f"({r})" for r in required)
    return Value(f"CASE WHEN {condition} THEN {out.sql} END", f"{condition} AND ({out.present})")


@dataclass(frozen=True)
class CompiledRule:
    """A write rule as SQL: the resource type of a row, and per type the JSON text of its members."""

    resource_type: str
    members: dict[str, Value]  # resource type -> members without braces; NULL when the row is not written


def compile_rule(rule: WriteRule, sources: SqlSources) -> CompiledRule:
    templates = {rule.resource: rule.template, **rule.templates}
    members: dict[str, Value] = {}
    for rtype, template in templates.items():
        body = _object(template, rule.lookup, sources, "", "")
        members[rtype] = body if body is not None else Value("NULL", "FALSE")
    cases = []
    for choice in rule.choose:
        values = ", ".join(literal(v) if isinstance(v, str) else str(int(v)) for v in choice["in"])
        if "vocabulary" in choice:
            test = f"{sources.concept(choice['vocabulary'])}.vocabulary_id IN ({values})"
        else:
            test = f"{sources.column(choice['column'])[0]} IN ({values})"
        cases.append(f"WHEN {test} THEN {literal(choice['resource'])}")
    rtype_sql = f"CASE {' '.join(cases)} ELSE {literal(rule.resource)} END" if cases else literal(rule.resource)
    return CompiledRule(rtype_sql, members)
