"""Fixtures for the bad-input suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_inputs.inputs import write_omop_csv


@pytest.fixture
def omop_csv(tmp_path: Path) -> Path:
    return write_omop_csv(tmp_path / "omop-in")
