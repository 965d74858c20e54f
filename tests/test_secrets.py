"""Passwords never come from a URL argument and never show in output."""

from __future__ import annotations

import pytest

from synthcohort.errors import ConfigError
from synthcohort.secrets import display_url, mask_url, parse_url, resolve_password


def test_password_in_url_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as info:
        parse_url("postgresql://alice:canary-pw-123@db/cdm")
    assert "canary-pw-123" not in str(info.value)


def test_password_from_environment_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_DB_PASSWORD", "canary-pw-123")
    url = resolve_password(parse_url("postgresql+psycopg://alice@db/cdm"))
    assert url.password == "canary-pw-123"
    assert "canary-pw-123" not in display_url(url)
    assert "canary-pw-123" not in mask_url(f"failed to reach {url.render_as_string(hide_password=False)}")


def test_prompt_used_only_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTHCOHORT_DB_PASSWORD", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = parse_url("postgresql+psycopg://alice@db/cdm")
    assert resolve_password(url).password is None
    assert resolve_password(url, prompt=True, ask=lambda _: "typed").password == "typed"


def test_file_databases_ignore_password_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "canary-pw-123")
    url = resolve_password(parse_url("duckdb:///warehouse.duckdb"))
    assert url.password is None
