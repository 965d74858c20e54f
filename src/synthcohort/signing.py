"""Signed pickles: a model file loads only when this installation's key signed it (HMAC beside the file)."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import pickle
from pathlib import Path
from typing import Any

import orjson

from synthcohort.errors import ModelError
from synthcohort.keys import installation_key, key_path, keyed_digest
from synthcohort.outputs import atomic_file

SIGNATURE_SUFFIX = ".sig"
ALGORITHM = "HMAC-SHA256"
# A pickle file is never read past this size (a model of a cohort is far smaller).
MAX_SIGNED_BYTES = 4 << 30


def signature_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + SIGNATURE_SUFFIX)


def key_id(key: bytes) -> str:
    """A public, one-way name for a key: tells 'signed elsewhere' from 'altered' without revealing it."""
    return hashlib.sha256(b"synthcohort-key-id\x00" + key).hexdigest()[:16]


def _read(path: Path, what: str) -> bytes:
    if path.is_symlink():
        raise ModelError(f"the {what} {path.name} is a symbolic link", "give the model folder itself, not links to it")
    try:
        size = path.stat().st_size
        if size > MAX_SIGNED_BYTES:
            raise ModelError(f"the {what} {path.name} is larger than {MAX_SIGNED_BYTES:,} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"the {what} {path.name} is missing", "fit the model again on this installation") from None
    except OSError as exc:
        raise ModelError(f"cannot read the {what} {path.name}: {exc.strerror}") from None


def sign_bytes(data: bytes, path: str | os.PathLike[str], key: bytes | None = None) -> Path:
    """Write ``data`` to ``path`` and its signature beside it (both owner-only, both atomic)."""
    key = key if key is not None else installation_key()
    target = Path(path)
    with atomic_file(target) as fh:
        fh.write(data)
    record = {"algorithm": ALGORITHM, "file": target.name, "key_id": key_id(key), "mac": keyed_digest(data, key)}
    sig = signature_path(target)
    with atomic_file(sig) as fh:
        fh.write(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    return sig


def sign_file(path: str | os.PathLike[str], key: bytes | None = None) -> Path:
    """Sign a file another library has just written (its bytes are read back and signed as they are)."""
    target = Path(path)
    return sign_bytes(_read(target, "model file"), target, key)


def verified_bytes(path: str | os.PathLike[str], key: bytes | None = None) -> bytes:
    """The bytes of ``path`` once its signature checks out; a :class:`ModelError` saying why otherwise.

    The file is read once and the same bytes are checked and returned, so nothing can swap it in between.
    """
    target = Path(path)
    sig_file = signature_path(target)
    if not sig_file.exists() and not sig_file.is_symlink():
        raise ModelError(
            f"the model file {target.name} is not signed: refusing to load it",
            "a pickled model loads only when this installation signed it; fit it again here",
        )
    try:
        record = orjson.loads(_read(sig_file, "signature"))
    except orjson.JSONDecodeError:
        raise ModelError(f"the signature of {target.name} is unreadable: refusing to load the model") from None
    if not isinstance(record, dict) or record.get("algorithm") != ALGORITHM or not isinstance(record.get("mac"), str):
        raise ModelError(f"the signature of {target.name} is not a {ALGORITHM} signature: refusing to load the model")
    if record.get("file") != target.name:
        raise ModelError(f"the signature beside {target.name} is for another file: refusing to load the model")
    data = _read(target, "model file")
    key = key if key is not None else installation_key()
    if record.get("key_id") != key_id(key):
        raise ModelError(
            f"the model file {target.name} was signed by another installation: refusing to load it",
            f"fit it again here, or use the key file that signed it ({key_path()} / SYNTHCOHORT_KEY_FILE)",
        )
    if not hmac.compare_digest(keyed_digest(data, key), str(record["mac"])):
        raise ModelError(
            f"the model file {target.name} was altered after it was signed: refusing to load it",
            "fit the model again; do not load model files from untrusted places",
        )
    return data


def dump_signed(obj: Any, path: str | os.PathLike[str], key: bytes | None = None) -> Path:
    """Pickle ``obj`` to ``path`` and sign it."""
    return sign_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), path, key)


def load_signed(path: str | os.PathLike[str], key: bytes | None = None) -> Any:
    """Unpickle ``path`` only after its signature checks out under this installation's key."""
    data = verified_bytes(path, key)
    try:
        return pickle.load(io.BytesIO(data))  # noqa: S301 - bytes verified above
    except Exception as exc:
        raise ModelError(f"the model file {Path(path).name} cannot be loaded: {type(exc).__name__}") from None
