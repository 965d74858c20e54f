"""Fresh FHIR ids derived from a seed: the same function in Python and in DuckDB SQL."""

from __future__ import annotations

import hashlib

_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def fhir_uuid(text: str) -> str:
    """A version-4-shaped UUID made of the MD5 of ``text`` (fresh for the output, reproducible from the seed)."""
    h = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def uuid_sql(md5_hex_sql: str) -> str:
    """SQL of :func:`fhir_uuid` from the SQL of the text's MD5 in hex (a column, so that it is computed once)."""
    h = md5_hex_sql
    variant = f"translate(substr({h}, 17, 1), '0123456789abcdef', '89ab89ab89ab89ab')"
    return (
        f"substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-4' || substr({h}, 14, 3) || '-' || {variant} || "
        f"substr({h}, 18, 3) || '-' || substr({h}, 21, 12)"
    )
