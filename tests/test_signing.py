"""Signed pickles: unsigned, altered, foreign-key and swapped files are refused with a ModelError."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from synthcohort.errors import ModelError
from synthcohort.signing import dump_signed, load_signed, signature_path


class _Boom:
    """Unpickling this would run code: it must never be reached for an unverified file."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/synthcohort-pwned",))


@pytest.fixture(autouse=True)
def _key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "keys" / "installation.key"))


def test_round_trip_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "model" / "engine.pkl"
    dump_signed({"weights": [1, 2, 3]}, path)
    assert load_signed(path) == {"weights": [1, 2, 3]}
    for p in (path, signature_path(path), tmp_path / "keys" / "installation.key"):
        assert p.stat().st_mode & 0o077 == 0
    # the key is kept outside the model folder and never written into it
    key_hex = (tmp_path / "keys" / "installation.key").read_text().strip()
    assert all(key_hex not in f.read_bytes().decode("latin-1") for f in path.parent.iterdir())


def test_unsigned_pickle_refused_before_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "engine.pkl"
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ModelError, match="not signed"):
        load_signed(path)
    assert not Path("/tmp/synthcohort-pwned").exists()


def test_tampered_pickle_refused(tmp_path: Path) -> None:
    path = tmp_path / "engine.pkl"
    dump_signed({"a": 1}, path)
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ModelError, match="altered after it was signed"):
        load_signed(path)
    assert not Path("/tmp/synthcohort-pwned").exists()


def test_signed_by_another_installation_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "engine.pkl"
    dump_signed({"a": 1}, path)
    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "other.key"))
    with pytest.raises(ModelError, match="another installation") as info:
        load_signed(path)
    assert info.value.exit_code == 6


def test_signature_of_another_file_or_garbage_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pkl", tmp_path / "b.pkl"
    dump_signed(1, a)
    dump_signed(2, b)
    signature_path(b).write_bytes(signature_path(a).read_bytes())
    with pytest.raises(ModelError, match="another file"):
        load_signed(b)
    signature_path(b).write_bytes(b"{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_signed(b)
    signature_path(b).write_bytes(b'{"algorithm": "none", "file": "b.pkl", "mac": ""}')
    with pytest.raises(ModelError, match="not a HMAC-SHA256"):
        load_signed(b)


def test_symlinked_model_file_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.pkl"
    dump_signed(1, real)
    link = tmp_path / "link.pkl"
    os.symlink(real, link)
    os.symlink(signature_path(real), signature_path(link))
    with pytest.raises(ModelError, match="symbolic link"):
        load_signed(link)


def test_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    from synthcohort.errors import ConfigError
    from synthcohort.keys import installation_key

    key = tmp_path / "keys" / "installation.key"
    key.parent.mkdir()
    key.write_text("not hex at all")
    with pytest.raises(ConfigError, match="damaged"):
        installation_key()


def test_key_created_once_when_processes_race(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "from synthcohort.keys import installation_key; print(installation_key().hex())"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(keys) == 1 and len(next(iter(keys))) == 64
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["installation.key"]
