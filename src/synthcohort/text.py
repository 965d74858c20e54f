"""Small helpers for the words of user-facing messages."""

from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun: ``plural(1, "record")`` is "1 record", ``plural(2_000, "record")`` "2,000 records".

    ``nouns`` is the plural form when it is not ``noun`` + "s" (``plural(n, "entry", "entries")``).
    """
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"
