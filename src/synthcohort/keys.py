"""The installation key: a secret kept outside models and outputs, for keyed fingerprints and signatures."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path

from synthcohort.errors import ConfigError

KEY_ENV = "SYNTHCOHORT_KEY_FILE"
log = logging.getLogger(__name__)


def key_path() -> Path:
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "synthcohort" / "installation.key"


def _read(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError):
        key = b""
    except OSError as exc:
        raise ConfigError(f"cannot read the installation key {path}: {exc.strerror}") from None
    if len(key) != 32:
        raise ConfigError(
            f"the installation key file {path} is damaged",
            "restore it from a backup; with a new key, SDV models must be fitted again",
        )
    if path.stat().st_mode & 0o077:
        log.warning("the installation key %s is readable by other users; run: chmod 600 %s", path, path)
    return key


def installation_key() -> bytes:
    """This installation's 32-byte key, created (owner-only) on first use; safe when processes race to create it."""
    path = key_path()
    if path.is_file():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".installation.key.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_bytes(32).hex())
        with contextlib.suppress(FileExistsError):  # another process made one first: use that one
            os.link(tmp, path)  # the key appears complete, never half-written
    finally:
        os.unlink(tmp)
    return _read(path)


def keyed_digest(data: bytes, key: bytes | None = None) -> str:
    """HMAC-SHA256 of ``data`` under the installation key (hex)."""
    return hmac.new(key if key is not None else installation_key(), data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str, key: bytes | None = None) -> bool:
    return hmac.compare_digest(keyed_digest(data, key), signature)
