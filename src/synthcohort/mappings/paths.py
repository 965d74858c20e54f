"""Element paths of the mapping rules: ``a.b.c``, arrays walked, ``extension[url]`` filtered by URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MISSING = object()

Getter = Callable[[Any, "EmptyCounter"], list[Any]]


class EmptyCounter:
    """Counts elements that were present but empty ("" / [] / {} / null): FHIR forbids them; we treat them as absent."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


_CONTAINERS = (str, list, dict)


def _is_empty(value: Any) -> bool:
    # JSON values: null, "", [] and {} are empty; false and 0 are values
    return not value and (value is None or isinstance(value, _CONTAINERS))


def parse_path(expr: str) -> list[tuple[str, str | None]]:
    """Split ``a.extension[http://x/y].b`` into (name, url filter) segments; URLs may hold dots."""
    segments: list[tuple[str, str | None]] = []
    rest = expr
    while rest:
        bracket = rest.find("[")
        dot = rest.find(".")
        if bracket != -1 and (dot == -1 or bracket < dot):
            close = rest.index("]", bracket)
            segments.append((rest[:bracket], rest[bracket + 1 : close]))
            rest = rest[close + 1 :].removeprefix(".")
        elif dot != -1:
            segments.append((rest[:dot], None))
            rest = rest[dot + 1 :]
        else:
            segments.append((rest, None))
            rest = ""
    return segments


def compile_path(expr: str) -> Getter:
    """A function returning every non-empty value found at ``expr`` (lists flattened)."""
    segments = parse_path(expr)

    def walk(obj: Any, empty: EmptyCounter) -> list[Any]:
        current = [obj]
        for name, url in segments:
            found: list[Any] = []
            for item in current:
                if not isinstance(item, dict):
                    continue
                value = item.get(name, _MISSING)
                if value is _MISSING:
                    continue
                if not value and _is_empty(value):
                    empty.count += 1
                    continue
                for v in value if isinstance(value, list) else (value,):
                    if not v and _is_empty(v):
                        empty.count += 1
                    elif url is None or (isinstance(v, dict) and v.get("url") == url):
                        found.append(v)
            if not found:
                return found
            current = found
        return current

    if len(segments) == 1 and segments[0][1] is None:
        name = segments[0][0]

        def one(obj: Any, empty: EmptyCounter) -> list[Any]:
            if not isinstance(obj, dict):
                return []
            value = obj.get(name, _MISSING)
            if value is _MISSING:
                return []
            if not value and _is_empty(value):
                empty.count += 1
                return []
            if isinstance(value, list):
                out = [v for v in value if v or not _is_empty(v)]
                empty.count += len(value) - len(out)
                return out
            return [value]

        return one

    if len(segments) == 2 and segments[0][1] is None and segments[1][1] is None:
        first, second = segments[0][0], segments[1][0]

        def two(obj: Any, empty: EmptyCounter) -> list[Any]:
            if not isinstance(obj, dict):
                return []
            head = obj.get(first)
            if head is None:
                return []
            if isinstance(head, dict):
                value = head.get(second, _MISSING)
                if value is _MISSING:
                    return []
                if not isinstance(value, list) and (value or not _is_empty(value)):
                    return [value]
            return walk(obj, empty)

        return two

    return walk
