"""Counts in messages take the singular for one."""

from __future__ import annotations

import pytest

from synthcohort.cli.export_fhir import skip_text
from synthcohort.text import plural


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0 records"), (1, "1 record"), (2, "2 records"), (1_000_000, "1,000,000 records")],
)
def test_plural_takes_the_singular_for_one(n: int, expected: str) -> None:
    assert plural(n, "record") == expected


def test_plural_takes_an_irregular_form() -> None:
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


def test_writer_skips_read_right_for_one() -> None:
    assert skip_text("measurement:no_code", 1) == "1 measurement row without a code"
    assert skip_text("measurement:no_code", 3) == "3 measurement rows without a code"
    assert skip_text("reference_dropped", 1) == "1 reference dropped (its target is not in the store)"
    assert skip_text("reference_dropped", 2) == "2 references dropped (their target is not in the store)"
