"""PIPELINE.toml validation happens before any data is touched (bad input 31) and keeps secrets out."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthcohort.errors import ConfigError
from synthcohort.pipeline.config import load, masked

GOOD = """
[run]
workdir = "out"

[source]
kind = "omop"
url = "postgresql+psycopg://cdm_reader@127.0.0.1/test"
schema = "cdm"
password_env = "CDM_PW"

[model]
seed = 3

[generate]
n = 500
seed = 9

[[output]]
kind = "fhir"
path = "fhir-out"
format = "ndjson"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDM_PW", "canary-secret")
    cfg = load(_write(tmp_path, GOOD))
    assert cfg.workdir == tmp_path.resolve() / "out"
    assert cfg.outputs[0].path == str(tmp_path.resolve() / "fhir-out")
    assert cfg.generate.n == 500 and cfg.model.seed == 3
    assert "canary-secret" not in repr(masked(cfg))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("n = 500", "n = 0", "between"),
        ("n = 500", "n = 1000000000000", "between"),
        ("seed = 9", 'seed = "nine"', "whole number"),
        ("[model]\nseed = 3", "[model]\nseed = 3\nholdout = nan", "holdout"),
        ('kind = "fhir"', 'kind = "csv"', "kind"),
        ('schema = "cdm"', 'schema = "cdm"\nshema = "typo"', "unknown key"),
        ("cdm_reader@", "cdm_reader:canary-secret@", "password was given"),
        ('password_env = "CDM_PW"', 'password_env = "NOT_SET_ANYWHERE"', "not set"),
    ],
)
def test_bad_values_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, message: str
) -> None:
    monkeypatch.setenv("CDM_PW", "x")
    with pytest.raises(ConfigError, match=message) as info:
        load(_write(tmp_path, GOOD.replace(old, new)))
    assert "canary-secret" not in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(_write(tmp_path, "[source\n"))
    with pytest.raises(ConfigError, match="no pipeline file"):
        load(tmp_path / "absent.toml")


FHIR_SOURCE = """[source]
kind = "fhir"
path = "bundles"
vocab = "athena"
"""
GOOD_FHIR = GOOD[: GOOD.index("[source]")] + FHIR_SOURCE + GOOD[GOOD.index("[model]") :]


def test_fhir_vocabulary_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative vocabulary folder or DuckDB file is the pipeline folder's; a database URL is kept as written."""
    monkeypatch.chdir("/")
    assert load(_write(tmp_path, GOOD_FHIR)).source.vocab == str(tmp_path.resolve() / "athena")
    cfg = load(_write(tmp_path, GOOD_FHIR.replace('"athena"', '"duckdb:///vocab.duckdb"')))
    assert cfg.source.vocab == f"duckdb:///{tmp_path.resolve() / 'vocab.duckdb'}"
    url = "postgresql://reader@127.0.0.1/test"
    monkeypatch.setenv("VOCAB_PW", "x")
    text = GOOD_FHIR.replace('"athena"', f'"{url}"\nvocab_schema = "vocab"\npassword_env = "VOCAB_PW"')
    cfg = load(_write(tmp_path, text))
    assert (cfg.source.vocab, cfg.source.vocab_schema) == (url, "vocab")


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ('"postgresql://reader:canary-secret@127.0.0.1/test"', "password was given"),
        ('"athena"\nvocab_schema = "vocab"', "needs vocab to be a database URL"),
        ('"duckdb:///vocab.duckdb"\npassword_env = "CDM_PW"', "DuckDB file has no password"),
    ],
)
def test_fhir_vocabulary_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new: str, message: str) -> None:
    monkeypatch.setenv("CDM_PW", "x")
    with pytest.raises(ConfigError, match=message) as info:
        load(_write(tmp_path, GOOD_FHIR.replace('"athena"', new)))
    assert "canary-secret" not in str(info.value)
