"""The pipeline's stages: each calls one part's library functions and reports progress through a bar."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthcohort import __version__
from synthcohort.cohort import CohortStore
from synthcohort.errors import ConfigError
from synthcohort.pipeline.config import CohortConfig, OutputConfig, PipelineConfig, SourceConfig
from synthcohort.pipeline.progress import BarFactory, StageBar
from synthcohort.secrets import password_from

if TYPE_CHECKING:
    from synthcohort.evaluation.api import EvaluationResult
    from synthcohort.generator.base import Engine, SampleResult

log = logging.getLogger(__name__)
FHIR_MODEL_SAMPLE = 10  # every resource gets the own rules and the R4 JSON schema; every 10th also the model


@dataclass
class Workdir:
    """Where a run keeps its intermediate stores and model (real data: owner-only)."""

    root: Path

    @property
    def cohort(self) -> Path:
        return self.root / "cohort.duckdb"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic.duckdb"


@dataclass
class ExtractResult:
    persons: int
    rows: dict[str, int]
    report: dict[str, Any] = field(default_factory=dict)


def _selection(cohort: CohortConfig) -> Any:
    from synthcohort.connectors.omop.selection import Selection, read_person_ids

    def day(text: str | None, what: str) -> dt.date | None:
        if text is None:
            return None
        try:
            return dt.date.fromisoformat(str(text))
        except ValueError:
            raise ConfigError(f"[cohort] {what} must be a date written YYYY-MM-DD") from None

    ids = read_person_ids(cohort.person_ids) if cohort.person_ids else None
    return Selection(
        person_ids=ids,
        cohort_id=cohort.cohort_id,
        concepts=tuple(cohort.concepts) or None,
        start=day(cohort.start, "start"),
        end=day(cohort.end, "end"),
    )


def extract(cfg: PipelineConfig, work: Workdir, bars: BarFactory) -> ExtractResult:
    """Read the real cohort into the workdir's cohort store (rebuilt on every run)."""
    src: SourceConfig = cfg.source
    unit = "resources" if src.kind == "fhir" else "rows"
    with CohortStore.building(work.cohort, overwrite=True) as store, bars("extract", None, unit) as bar:

        def tick(table: str, n: int) -> None:
            bar.advance(n, f"extract {table}")

        report: Any
        if src.kind == "omop":
            selection = _selection(cfg.cohort)
            if src.url:
                from synthcohort.connectors.omop.sql_source import read_database

                with password_from(src.password_env):
                    report = read_database(
                        src.url,
                        store,
                        schema=src.schema,
                        vocab_schema=src.vocab_schema,
                        cohort_schema=src.cohort_schema,
                        selection=selection,
                        progress=tick,
                    )
            else:
                from synthcohort.connectors.omop.csv_source import extract_csv_folder

                report = extract_csv_folder(str(src.path), store, selection=selection, progress=tick)
            details = report.as_dict()
        else:
            details = _extract_fhir(src, store, bar)
        store.set_meta("kind", "real")
        store.set_meta("created_by", f"synthcohort {__version__}")
        counts = store.counts()
    return ExtractResult(counts["person"], counts, details)


def _extract_fhir(src: SourceConfig, store: CohortStore, bar: StageBar) -> dict[str, Any]:
    from synthcohort.connectors.fhir.reader import check_tolerance, read_fhir
    from synthcohort.connectors.omop.database_vocabulary import open_vocabulary

    with password_from(src.password_env):
        vocabulary = open_vocabulary(src.vocab, src.vocab_schema) if src.vocab else None
    try:
        report = read_fhir(str(src.path), store, vocabulary=vocabulary, progress=lambda n: bar.advance(n))
    finally:
        if vocabulary is not None:
            vocabulary.close()
    store.set_meta("source_kind", "fhir")
    check_tolerance(report, src.skip_tolerance)
    details: dict[str, Any] = report.to_dict()
    return details


def fit(cfg: PipelineConfig, work: Workdir, bars: BarFactory) -> Engine:
    """Split off the control set, learn, save the model directory (plain data) in the workdir."""
    from synthcohort.generator import engine_class

    m = cfg.model
    engine = engine_class(m.engine)(k=m.k, holdout=m.holdout, seed=m.seed, min_leaf=m.min_leaf)
    with bars("fit", None, "steps") as bar:
        engine.fit(work.cohort, progress=lambda what, done, total: bar.update(done, total, f"fit {what}"))
    engine.save(work.model, overwrite=True)
    return engine


def generate(cfg: PipelineConfig, engine: Engine, work: Workdir, bars: BarFactory) -> SampleResult:
    """Sample the synthetic store; n defaults to the size of the training set."""
    n = cfg.generate.n or int(engine.record.get("persons_learned") or 0)
    with bars("generate", n, "persons") as bar:
        return engine.sample(
            n,
            work.synthetic,
            seed=cfg.generate.seed,
            where=list(cfg.generate.where),
            overwrite=True,
            progress=lambda what, done, total: bar.update(done, total, f"generate {what}"),
        )


def evaluate(cfg: PipelineConfig, work: Workdir, bars: BarFactory) -> EvaluationResult:
    """Measure the synthetic store against the training and held-out control stores."""
    from synthcohort.evaluation.api import EvaluationConfig
    from synthcohort.evaluation.api import evaluate as run_evaluation

    e = cfg.evaluate
    config = EvaluationConfig(
        target=None if e.target is None else str(e.target),
        exposure=[str(x) for x in e.exposure] or None,
        outcome=[str(x) for x in e.outcome] or None,
        gate_overrides=dict(e.gates),
        accept_risk=e.accept_risk,
        seed=e.seed,
    )
    steps = ("reading stores", "fidelity", "utility", "study evidence", "privacy")
    with bars("evaluate", len(steps), "steps") as bar:
        return run_evaluation(work.cohort, work.synthetic, None, config, progress=lambda what: bar.advance(1, what))


def export(
    output: OutputConfig,
    store: CohortStore,
    target: str,
    bars: BarFactory,
    total: int,
    *,
    overwrite: bool,
    run_id: str,
) -> dict[str, int]:
    """Write the synthetic store to one output (``target`` is a staging path or the database URL)."""
    label = f"export {output.kind}"
    if output.kind == "omop":
        from synthcohort.connectors.omop.writer import write_omop

        with bars(label, total, "rows") as bar, password_from(output.password_env):
            result = write_omop(
                store,
                target,
                schema=output.schema,
                fmt=output.format if output.path else None,
                overwrite=overwrite,
                progress=lambda table, n: bar.advance(n, f"{label} {table}"),
            )
        return dict(result.rows)
    from synthcohort.connectors.fhir.writer import FhirWriter

    with bars(label, store.person_count(), "persons") as bar:
        writer = FhirWriter(
            store,
            fmt=output.format or "ndjson",
            gz=output.gzip,
            seed=run_id,
            progress=lambda n: bar.advance(n),
        )
        report = writer.write(target, overwrite=overwrite)
    return dict(sorted(report.written.items()))


def validate(output: OutputConfig, target: str, staging: Path | None, bars: BarFactory) -> dict[str, Any]:
    """Check a written output (before it is published, when staged); a violation fails the run."""
    from synthcohort.errors import ValidationFailed

    where = str(staging) if staging is not None else target
    with bars(f"validate {output.kind}", None, "checks"):
        if output.kind == "omop":
            from synthcohort.connectors.omop.validate import validate_omop

            with password_from(output.password_env):
                omop = validate_omop(where, schema=output.schema if staging is None else None)
            summary = {"ok": omop.ok, "checks": len(omop.checks), "violations": omop.violations}
            failed = [c.name for c in omop.failed()]
        else:
            from synthcohort.connectors.fhir.validate import validate_fhir

            fhir = validate_fhir(where, models=True, model_sample=FHIR_MODEL_SAMPLE)
            summary = {
                "ok": fhir.ok,
                "resources": sum(fhir.counts.values()),
                "models_checked": fhir.model_checked,
                "schema_checked": fhir.schema_checked,
                "errors": sum(fhir.error_counts.values()),
            }
            failed = sorted(fhir.error_counts)
    if not summary["ok"]:
        raise ValidationFailed(
            f"the {output.kind.upper()} output failed validation ({', '.join(failed[:5])}); nothing was published",
            "this is a fault of the tool: report it with the run record",
        )
    return summary
