"""The installation key: a secret kept outside models and outputs, for keyed fingerprints and signatures."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_ENV = "SYNTHCOHORT_KEY_FILE"


def key_path() -> Path:
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "synthcohort" / "installation.key"


def installation_key() -> bytes:
    """This installation's 32-byte key, created (owner-only) on first use."""
    path = key_path()
    if path.is_file():
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex())
    return key


def keyed_digest(data: bytes, key: bytes | None = None) -> str:
    """HMAC-SHA256 of ``data`` under the installation key (hex)."""
    return hmac.new(key if key is not None else installation_key(), data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str, key: bytes | None = None) -> bool:
    return hmac.compare_digest(keyed_digest(data, key), signature)
