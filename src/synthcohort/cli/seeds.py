"""Seed parsing shared by the commands that take ``--seed``."""

from __future__ import annotations

from synthcohort.errors import ConfigError


def parse_seed(text: str) -> int:
    """A seed is a whole number from 0 to 2**63-1; anything else is refused before any data is read."""
    value = text.strip()
    if not value.isdigit() or int(value) >= 2**63:
        raise ConfigError(f"--seed must be a whole number from 0 to 2**63-1, not {text!r}")
    return int(value)
