"""Database secrets: passwords from the environment, a libpq service/pgpass file or a prompt; URLs masked."""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import os
import re
from collections.abc import Callable, Iterator

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from synthcohort.errors import ConfigError

PASSWORD_ENV = "SYNTHCOHORT_DB_PASSWORD"
# The variable a pipeline section names with password_env; consulted first while set.
_PASSWORD_FROM: contextvars.ContextVar[str | None] = contextvars.ContextVar("password_from", default=None)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")


def mask_url(text: str) -> str:
    """Replace any password inside URLs found in ``text`` with ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)


def parse_url(raw: str) -> URL:
    """Parse a SQLAlchemy URL; a password written inside it is refused (it would sit in shell history)."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {mask_url(raw)}", "write e.g. postgresql://user@host/db") from None
    if url.password:
        raise ConfigError(
            "a password was given inside the database URL",
            f"remove it from the URL and set {PASSWORD_ENV}, PGPASSWORD, a ~/.pgpass entry or a libpq service",
        )
    return url


_FILE_DATABASES = frozenset({"duckdb", "sqlite"})


def resolve_password(url: URL, *, prompt: bool = False, ask: Callable[[str], str] = getpass.getpass) -> URL:
    """Fill the password from the environment or, on request, a prompt; libpq reads pgpass/service itself.

    File databases (DuckDB, SQLite) take no password: their URLs are returned as they are.
    """
    if url.get_backend_name() in _FILE_DATABASES:
        return url
    named = _PASSWORD_FROM.get()
    for name in (*((named,) if named else ()), PASSWORD_ENV, "PGPASSWORD"):
        value = os.environ.get(name)
        if value:
            return url.set(password=value)
    if prompt:
        return url.set(password=ask(f"password for {url.username or 'the database user'}: "))
    return url  # libpq consults PGPASSFILE / ~/.pgpass and PGSERVICE on its own


@contextlib.contextmanager
def password_from(env: str | None) -> Iterator[None]:
    """Within the block, :func:`resolve_password` reads the password from the variable ``env`` first."""
    token = _PASSWORD_FROM.set(env)
    try:
        yield
    finally:
        _PASSWORD_FROM.reset(token)


def display_url(url: URL) -> str:
    """A URL safe to print or log."""
    return url.render_as_string(hide_password=True)
