"""PIPELINE.toml: parsed and validated before any data is touched; secrets come from the environment."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synthcohort.errors import ConfigError

MAX_PATIENTS = 50_000_000
ENGINES = ("native", "sdv")
RUN_KEYS = {"workdir", "outdir", "overwrite", "validate"}


@dataclass(frozen=True)
class SourceConfig:
    kind: str  # omop | fhir
    path: str | None = None  # a CSV folder (omop) or a FHIR file/folder
    url: str | None = None  # a SQLAlchemy URL without password (omop)
    schema: str | None = None
    vocab_schema: str | None = None
    vocab: str | None = None  # vocabulary source for FHIR (Athena folder, store, database URL)
    cohort_schema: str | None = None  # where the OHDSI cohort table lives (default: the CDM schema)
    password_env: str | None = None  # name of the environment variable holding the password
    skip_tolerance: int = 0  # FHIR: faulty records accepted before the run fails (all are counted)


@dataclass(frozen=True)
class CohortConfig:
    person_ids: str | None = None
    cohort_id: int | None = None
    concepts: tuple[int, ...] = ()
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    engine: str = "native"
    holdout: float = 0.2
    seed: int = 0
    k: int = 11
    min_leaf: int = 11


@dataclass(frozen=True)
class GenerateConfig:
    n: int | None = None  # default: the size of the training set
    seed: int = 0
    where: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvaluateConfig:
    enabled: bool = True
    gates: dict[str, float] = field(default_factory=dict)
    accept_risk: str | None = None
    target: int | str | None = None  # the prediction target of the utility figure (a concept id)
    exposure: tuple[int | str, ...] = ()
    outcome: tuple[int | str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class OutputConfig:
    kind: str  # omop | fhir
    path: str | None = None  # a folder (omop csv/parquet, fhir)
    url: str | None = None  # a SQLAlchemy URL (omop)
    schema: str | None = None
    format: str | None = None  # omop: csv | parquet ; fhir: ndjson | bundle
    gzip: bool = False
    password_env: str | None = None


@dataclass(frozen=True)
class PipelineConfig:
    workdir: Path  # intermediate stores and the model (real data: keep it private)
    outdir: Path  # the run record, the report and its figures
    source: SourceConfig
    cohort: CohortConfig
    model: ModelConfig
    generate: GenerateConfig
    evaluate: EvaluateConfig
    outputs: tuple[OutputConfig, ...]
    overwrite: bool = False
    validate: bool = True  # check every output before it is published
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _section(raw: dict[str, Any], name: str, cls: Any, where: str) -> Any:
    data = raw.get(name, {})
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] in {where} must be a table")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [{name}] of {where}: {', '.join(unknown)}", f"allowed: {', '.join(sorted(known))}"
        )
    for key, value in data.items():
        if isinstance(value, list):
            data = {**data, key: tuple(value)}
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"[{name}] in {where}: {exc}") from None


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be a whole number, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ConfigError(f"{what} must be between {lo:,} and {hi:,}")
    return value


def load(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read and validate a pipeline file; relative paths are taken from the file's folder."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no pipeline file at {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p.name} is not valid TOML: {exc}") from None
    return from_dict(raw, p.resolve().parent, p.name)


def from_dict(raw: dict[str, Any], base: Path, where: str = "the pipeline") -> PipelineConfig:
    """Validate a parsed pipeline (a TOML document as a dict); relative paths are taken from ``base``."""
    known_sections = {"run", "source", "cohort", "model", "generate", "evaluate", "output"}
    unknown = sorted(set(raw) - known_sections)
    if unknown:
        raise ConfigError(
            f"unknown section(s) in {where}: {', '.join(unknown)}", f"allowed: {', '.join(sorted(known_sections))}"
        )
    run = raw.get("run", {})
    base = base.resolve()
    if not isinstance(run, dict):
        raise ConfigError(f"[run] in {where} must be a table")
    unknown_run = sorted(set(run) - RUN_KEYS)
    if unknown_run:
        raise ConfigError(
            f"unknown key(s) in [run] of {where}: {', '.join(unknown_run)}", f"allowed: {', '.join(sorted(RUN_KEYS))}"
        )
    if not isinstance(raw.get("output", []), list):
        raise ConfigError(f"write each output of {where} as [[output]] (an array of tables), not [output]")
    source = _section(raw, "source", SourceConfig, where) if "source" in raw else None
    if source is None:
        raise ConfigError(f"{where} has no [source]", "add [source] with kind = 'omop' or 'fhir' and a path or url")
    cfg = PipelineConfig(
        workdir=base / str(run.get("workdir", "synthcohort-work")),
        outdir=base / str(run.get("outdir", "synthcohort-out")),
        source=_resolve_paths(source, base),
        cohort=_resolve_person_ids(_section(raw, "cohort", CohortConfig, where), base),
        model=_section(raw, "model", ModelConfig, where),
        generate=_section(raw, "generate", GenerateConfig, where),
        evaluate=_section(raw, "evaluate", EvaluateConfig, where),
        outputs=tuple(
            _resolve_paths(_section({"output": o}, "output", OutputConfig, where), base) for o in raw.get("output", [])
        ),
        overwrite=bool(run.get("overwrite", False)),
        validate=bool(run.get("validate", True)),
        raw=raw,
    )
    _validate(cfg, where)
    return cfg


def _resolve_person_ids(cohort: CohortConfig, base: Path) -> CohortConfig:
    if cohort.person_ids is None or Path(cohort.person_ids).is_absolute():
        return cohort
    return replace(cohort, person_ids=str((base / cohort.person_ids).resolve()))


def _resolve_paths(section: Any, base: Path) -> Any:
    """Relative folder and file paths, and DuckDB file URLs, are taken from the pipeline file's folder."""
    fields = {k: getattr(section, k) for k in section.__dataclass_fields__}
    for key in ("path", "url", "vocab"):  # vocab: an Athena folder, a DuckDB file or a database URL
        value = fields.get(key)
        if not isinstance(value, str):
            continue
        if value.startswith("duckdb:///"):
            database = value[len("duckdb:///") :]
            if database and database != ":memory:" and not Path(database).is_absolute():
                fields[key] = f"duckdb:///{(base / database).resolve()}"
        elif key != "url" and "://" not in value and not Path(value).is_absolute():
            fields[key] = str((base / value).resolve())
    return type(section)(**fields)


def _validate(cfg: PipelineConfig, where: str) -> None:
    src = cfg.source
    if src.kind not in ("omop", "fhir"):
        raise ConfigError(f"[source] kind must be 'omop' or 'fhir' in {where}")
    if bool(src.path) == bool(src.url):
        raise ConfigError(f"[source] needs exactly one of path or url in {where}")
    if src.kind == "fhir" and src.url:
        raise ConfigError("a FHIR source is a file or folder: give [source] path")
    if src.kind == "fhir" and src.vocab_schema and "://" not in (src.vocab or ""):
        raise ConfigError("[source] vocab_schema of a FHIR source needs vocab to be a database URL")
    if cfg.model.engine not in ENGINES:
        raise ConfigError(f"[model] engine must be one of {', '.join(ENGINES)}")
    holdout = cfg.model.holdout
    if not isinstance(holdout, int | float) or isinstance(holdout, bool) or math.isnan(holdout) or not 0 < holdout < 1:
        raise ConfigError("[model] holdout must be a number strictly between 0 and 1")
    _int(cfg.model.seed, "[model] seed", 0, 2**32 - 1)
    _int(cfg.model.k, "[model] k", 1, 10_000)
    _int(src.skip_tolerance, "[source] skip_tolerance", 0, 2**62)
    _int(cfg.model.min_leaf, "[model] min_leaf", 5, 10_000)
    _int(cfg.generate.seed, "[generate] seed", 0, 2**32 - 1)
    _int(cfg.evaluate.seed, "[evaluate] seed", 0, 2**32 - 1)
    risk = cfg.evaluate.accept_risk
    if risk is not None and (not isinstance(risk, str) or not risk.strip()):
        raise ConfigError("[evaluate] accept_risk must be a non-empty text: the reason the risk is accepted")
    target = cfg.evaluate.target
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | str) or not str(target)):
        raise ConfigError("[evaluate] target must be a concept id")
    if bool(cfg.evaluate.exposure) != bool(cfg.evaluate.outcome):
        raise ConfigError("[evaluate] exposure and outcome go together", "give both concept sets, or neither")
    if cfg.generate.n is not None:
        _int(cfg.generate.n, "[generate] n", 1, MAX_PATIENTS)
    for name, value in cfg.evaluate.gates.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise ConfigError(f"[evaluate] gate {name} must be a non-negative number")
    if not cfg.outputs:
        raise ConfigError(f"{where} has no [[output]]", "add at least one [[output]] with kind = 'omop' or 'fhir'")
    for out in cfg.outputs:
        if out.kind not in ("omop", "fhir"):
            raise ConfigError("[[output]] kind must be 'omop' or 'fhir'")
        if bool(out.path) == bool(out.url):
            raise ConfigError("[[output]] needs exactly one of path or url")
        if out.kind == "fhir" and out.format not in (None, "ndjson", "bundle"):
            raise ConfigError("a FHIR [[output]] format is 'ndjson' or 'bundle'")
        if out.kind == "omop" and out.path and out.format not in (None, "csv", "parquet"):
            raise ConfigError("an OMOP folder [[output]] format is 'csv' or 'parquet'")
    _check_places(cfg)
    from synthcohort.secrets import parse_url

    sections: list[SourceConfig | OutputConfig] = [src, *cfg.outputs]
    for section in sections:
        url = section.url or (
            section.vocab if isinstance(section, SourceConfig) and "://" in (section.vocab or "") else None
        )
        if url:
            parse_url(url)
            if section.password_env and url.startswith("duckdb:"):
                raise ConfigError("a DuckDB file has no password: remove password_env from its section")
        env = section.password_env
        if env and env not in os.environ:
            raise ConfigError(
                f"the environment variable {env} named by password_env is not set", f"export {env}=... before the run"
            )


def _check_places(cfg: PipelineConfig) -> None:
    """No output may be, or hold, the working folder, the record folder or another output."""
    work, rec = cfg.workdir.resolve(), cfg.outdir.resolve()
    folders = [Path(o.path).resolve() for o in cfg.outputs if o.path]
    if work == rec:
        raise ConfigError("[run] workdir and outdir must be different folders", "the workdir holds real data")
    if rec.is_relative_to(work):
        raise ConfigError("[run] outdir must not be inside the workdir", "the workdir holds real data")
    for i, folder in enumerate(folders):
        if folder in (work, rec) or work.is_relative_to(folder) or rec.is_relative_to(folder):
            raise ConfigError(
                f"the [[output]] folder {folder.name} would hold the workdir or the run record",
                "give each output its own folder, e.g. inside outdir",
            )
        if folder.is_relative_to(work):
            raise ConfigError(f"the [[output]] folder {folder.name} is inside the workdir", "the workdir is scratch")
        if any(folder == other or folder.is_relative_to(other) for other in folders[:i] + folders[i + 1 :]):
            raise ConfigError(f"two [[output]] sections write to {folder.name}", "give each output its own folder")


def masked(cfg: PipelineConfig) -> dict[str, Any]:
    """The raw config for the run record; nothing secret is in it by construction, URLs are masked anyway."""
    from synthcohort.secrets import mask_url

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return mask_url(value) if isinstance(value, str) else value

    return walk(cfg.raw)  # type: ignore[no-any-return]
