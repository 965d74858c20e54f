"""Pipeline config: where things go (workdir, outdir, outputs), DuckDB URLs, the shipped examples, secrets."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from synthcohort.errors import ConfigError
from synthcohort.pipeline.config import from_dict, load
from synthcohort.pipeline.runner import _prepare_folders
from synthcohort.secrets import password_from, resolve_password

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


def _raw(**run: object) -> dict[str, object]:
    return {
        "run": {"workdir": "work", "outdir": "out", **run},
        "source": {"kind": "omop", "path": "csv"},
        "output": [{"kind": "omop", "url": "duckdb:///out/omop.duckdb"}, {"kind": "fhir", "path": "out/fhir"}],
    }


def test_relative_places_follow_the_pipeline_file(tmp_path: Path) -> None:
    cfg = from_dict(_raw(), tmp_path)
    assert cfg.workdir == tmp_path / "work" and cfg.outdir == tmp_path / "out"
    assert cfg.outputs[0].url == f"duckdb:///{tmp_path / 'out' / 'omop.duckdb'}"
    assert cfg.outputs[1].path == str(tmp_path / "out" / "fhir")
    assert cfg.source.path == str(tmp_path / "csv")


def test_a_run_clears_its_workdir_of_intermediate_stores_and_splits_only(tmp_path: Path) -> None:
    """The workdir is the run's own: the stores a run rebuilds and the cohort's split stores, under their
    current names and the names older versions gave them, go with their write-ahead logs; nothing else does."""
    cfg = from_dict(_raw(), tmp_path)
    scratch = [
        "cohort.duckdb",
        "synthetic.duckdb",
        "cohort.split-s5-h0.2.train.duckdb",
        "cohort.split-s5-h0.2.control.duckdb",
        "cohort.split-s5-h0.2.control.duckdb.wal",
        "cohort.train.duckdb",
        "cohort.train.duckdb.wal",
        "cohort.control.duckdb",
    ]
    kept = ["model", "notes.txt", "other.train.duckdb", "cohort.duckdb.bak"]
    cfg.workdir.mkdir()
    for name in scratch + kept:
        (cfg.workdir / name).touch()
    _prepare_folders(cfg)
    assert sorted(p.name for p in cfg.workdir.iterdir()) == sorted(kept)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"run": {"workdir": "same", "outdir": "same"}}, "different folders"),
        ({"run": {"workdir": "w", "outdir": "w/out"}}, "inside the workdir"),
        ({"output": [{"kind": "fhir", "path": "out"}]}, "would hold"),
        ({"output": [{"kind": "fhir", "path": "work/fhir"}]}, "inside the workdir"),
        ({"output": [{"kind": "fhir", "path": "x"}, {"kind": "omop", "path": "x/omop"}]}, "two"),
        ({"output": {"kind": "fhir", "path": "x"}}, r"\[\[output\]\]"),
        ({"run": {"workdir": "w", "keep": True}}, "unknown key"),
    ],
)
def test_bad_places_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    raw = {**_raw(), **change}
    with pytest.raises(ConfigError, match=message):
        from_dict(raw, tmp_path)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_are_valid(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDM_PASSWORD", "SYNTH_PASSWORD"):
        monkeypatch.setenv(name, "canary-secret-value")
    cfg = load(example)
    assert cfg.outputs
    assert "canary-secret-value" not in example.read_text(encoding="utf-8")
    assert tomllib.loads(example.read_text(encoding="utf-8"))  # plain TOML, documented in comments


def test_three_examples_cover_the_main_uses() -> None:
    kinds = set()
    for example in EXAMPLES:
        raw = tomllib.loads(example.read_text(encoding="utf-8"))
        kinds.add((raw["source"]["kind"], tuple(sorted({o["kind"] for o in raw["output"]}))))
    assert {("omop", ("omop",)), ("omop", ("fhir",)), ("fhir", ("omop",))} <= kinds


def test_password_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTHCOHORT_DB_PASSWORD", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("MY_CDM_PW", "from-named-variable")
    url = make_url("postgresql+psycopg://reader@db/cdm")
    assert resolve_password(url).password is None
    with password_from("MY_CDM_PW"):
        assert resolve_password(url).password == "from-named-variable"
    assert resolve_password(url).password is None
