"""The write side of the interpreter: compile the OMOP -> FHIR templates into row -> resource builders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from synthcohort.mappings.rules import WriteRule

_CALL = re.compile(r"=(\w+)\((.*)\)")

Row = dict[str, Any]
Builder = Callable[[Row, "WriteContext"], Any]


class WriteContext(Protocol):
    """What the writer offers templates: references to exported resources, codings of concepts."""

    def reference(self, resource_type: str, store_id: Any) -> dict[str, str] | None: ...

    def coding(self, concept_id: Any) -> dict[str, str] | None: ...

    def vocabulary(self, concept_id: Any) -> str | None: ...


def _codeable(ctx: WriteContext, *concept_ids: Any) -> dict[str, Any] | None:
    codings: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for cid in concept_ids:
        coding = ctx.coding(cid)
        if coding is not None and (coding["system"], coding["code"]) not in seen:
            seen.add((coding["system"], coding["code"]))
            codings.append(coding)
    return {"coding": codings} if codings else None


def _birthdate(y: Any, m: Any, d: Any) -> str | None:
    if y is None:
        return None
    if m is None:
        return f"{int(y):04d}"
    if d is None:
        return f"{int(y):04d}-{int(m):02d}"
    return f"{int(y):04d}-{int(m):02d}-{int(d):02d}"


def _number(v: Any) -> Any:
    if v is None:
        return None
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _function(name: str, args: list[str], lookup: dict[str, dict[str, Any]]) -> Builder:
    """One template function; dates arrive already formatted as FHIR strings (see the writer)."""
    if name == "ref":
        rtype, col = args
        return lambda row, ctx: ctx.reference(rtype, row.get(col))
    if name == "codeable":
        return lambda row, ctx: _codeable(ctx, *(row.get(a) for a in args))
    if name == "coding":
        (col,) = args
        return lambda row, ctx: ctx.coding(row.get(col))
    if name in ("datetime", "date"):
        return lambda row, ctx: next((row[a] for a in args if row.get(a) is not None), None)
    if name == "number":
        (col,) = args
        return lambda row, ctx: _number(row.get(col))
    if name == "integer":
        (col,) = args
        return lambda row, ctx: int(row[col]) if row.get(col) is not None else None
    if name == "birthdate":
        y, m, d = args
        return lambda row, ctx: _birthdate(row.get(y), row.get(m), row.get(d))
    if name == "quantity":
        value_col, unit_cols = args[0], args[1:]

        def quantity(row: Row, ctx: WriteContext) -> dict[str, Any] | None:
            value = _number(row.get(value_col))
            if value is None:
                return None
            out: dict[str, Any] = {"value": value}
            for col in unit_cols:
                unit = ctx.coding(row.get(col))
                if unit is not None and unit["system"] == "http://unitsofmeasure.org":
                    out.update(unit=unit["code"], system=unit["system"], code=unit["code"])
                    break
            return out

        return quantity
    if name in ("lookup", "lookup_present"):
        col, table_name = args[0], args[1]
        table = lookup[table_name]
        default = args[2] if len(args) > 2 else None
        if name == "lookup_present":
            return lambda row, ctx: table["present" if row.get(col) is not None else "absent"]
        fallback = table.get(default, default) if default is not None else None
        return lambda row, ctx: table.get(str(row.get(col)), fallback)
    raise ValueError(f"unknown template function {name}")


def _compile(node: Any, lookup: dict[str, dict[str, Any]]) -> Builder:
    if isinstance(node, str) and node.startswith("="):
        m = _CALL.fullmatch(node)
        if m is None:
            raise ValueError(f"bad template call {node!r}")
        args = [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
        return _function(m.group(1), args, lookup)
    if isinstance(node, dict):
        parts = [(k.lstrip("!"), k.startswith("!"), _compile(v, lookup)) for k, v in node.items()]

        def build_dict(row: Row, ctx: WriteContext) -> dict[str, Any] | None:
            out: dict[str, Any] = {}
            for key, required, builder in parts:
                value = builder(row, ctx)
                if value is None:
                    if required:
                        return None
                    continue
                out[key] = value
            return out or None

        return build_dict
    if isinstance(node, list):
        items = [_compile(v, lookup) for v in node]

        def build_list(row: Row, ctx: WriteContext) -> list[Any] | None:
            out = [v for v in (b(row, ctx) for b in items) if v is not None]
            return out or None

        return build_list
    return lambda row, ctx: node


@dataclass
class ResourceTemplate:
    """A compiled write rule: picks the resource type for a row, then builds it."""

    rule: WriteRule
    builders: dict[str, Builder] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.builders[self.rule.resource] = _compile(self.rule.template, self.rule.lookup)
        for rtype, template in self.rule.templates.items():
            self.builders[rtype] = _compile(template, self.rule.lookup)

    def resource_type(self, row: Row, ctx: WriteContext) -> str:
        for choice in self.rule.choose:
            if "vocabulary" in choice:
                if ctx.vocabulary(row.get(choice["vocabulary"])) in choice["in"]:
                    return str(choice["resource"])
            elif row.get(choice["column"]) in choice["in"]:
                return str(choice["resource"])
        return self.rule.resource

    def build(self, row: Row, ctx: WriteContext) -> tuple[str, dict[str, Any] | None]:
        rtype = self.resource_type(row, ctx)
        return rtype, self.builders[rtype](row, ctx)

    @property
    def resource_types(self) -> list[str]:
        return list(self.builders)
