"""``synthcohort run``: extract -> fit -> generate -> evaluate -> export from one config, with a run record."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from synthcohort.cohort import CohortStore
from synthcohort.errors import GateFailed, SynthcohortError
from synthcohort.keys import keyed_digest
from synthcohort.outputs import DIR_MODE
from synthcohort.pipeline import stages
from synthcohort.pipeline.config import OutputConfig, PipelineConfig, masked
from synthcohort.pipeline.progress import BarFactory, null_bars
from synthcohort.pipeline.run_record import RunRecord, versions
from synthcohort.pipeline.staging import describe_target, display_target, duckdb_file, precheck, stage
from synthcohort.pipeline.summary import metrics_summary

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
METRICS_NAME = "metrics.json"
# intermediate files a run rebuilds in its workdir, with the cohort's split stores (nothing else there is touched)
_SCRATCH = ("cohort.duckdb", "synthetic.duckdb")


@dataclass
class RunResult:
    status: str
    manifest: Path
    report: Path | None
    outputs: list[str] = field(default_factory=list)
    persons: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def _timed(record: RunRecord, name: str) -> Iterator[dict[str, Any]]:
    entry: dict[str, Any] = {"status": "running"}
    record.stages[name] = entry
    start = time.perf_counter()
    log.info("stage %s started", name)
    try:
        yield entry
    except KeyboardInterrupt:
        entry["status"] = "interrupted"
        raise
    except BaseException:
        entry["status"] = "failed"
        raise
    finally:
        entry["seconds"] = round(time.perf_counter() - start, 2)
    entry["status"] = "done"
    log.info("stage %s done in %.1f s", name, entry["seconds"])


def _prepare_folders(cfg: PipelineConfig) -> stages.Workdir:
    from synthcohort.generator.split import old_split_paths, split_stores

    for folder in (cfg.workdir, cfg.outdir):
        folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    cfg.workdir.chmod(DIR_MODE)  # it holds real patients
    cohort = cfg.workdir / "cohort.duckdb"
    # the split under the names older versions gave it too: copies of real patients no run reads any more
    scratch = [cfg.workdir / name for name in _SCRATCH] + split_stores(cohort) + [*old_split_paths(cohort).values()]
    for path in scratch:
        for leftover in (path, Path(f"{path}.wal")):
            leftover.unlink(missing_ok=True)
    return stages.Workdir(cfg.workdir)


def _fingerprint(store_path: Path) -> dict[str, Any]:
    """Counts and a keyed hash of the input cohort's content: it names the input without revealing it."""
    with CohortStore.open(store_path) as store:
        counts = store.counts()
        digest = store.content_digest()
    return {
        "persons": counts["person"],
        "rows": {k: v for k, v in counts.items() if v},
        "content_hmac_sha256": keyed_digest(digest.encode("ascii")),
        "keyed_with": "this installation's key (SYNTHCOHORT_KEY_FILE)",
    }


def run_id(cfg: PipelineConfig, fingerprint: dict[str, Any]) -> str:
    """The same job on the same input with the same versions has the same id (it goes into the outputs)."""
    job = {k: v for k, v in masked(cfg).items() if k not in ("run", "output")}  # not where things go
    payload = orjson.dumps(
        {"config": job, "input": fingerprint["content_hmac_sha256"], "versions": versions()},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()[:32]


def run(cfg: PipelineConfig, *, bars: BarFactory = null_bars) -> RunResult:
    """Run the whole pipeline. The run record is written whatever happens (succeeded, failed, interrupted)."""
    for output in cfg.outputs:
        precheck(output, cfg.overwrite)
    work = _prepare_folders(cfg)
    record = RunRecord(
        config=masked(cfg),
        seeds={"model": cfg.model.seed, "generate": cfg.generate.seed, "evaluate": cfg.evaluate.seed},
    )
    result = RunResult("running", cfg.outdir / "run-manifest.json", None)
    try:
        _run_stages(cfg, work, record, result, bars)
    except KeyboardInterrupt:
        result.status = "interrupted"
        record.write(cfg.outdir, "interrupted")
        raise
    except GateFailed as exc:
        result.status = "gate-failed"
        record.error = exc.message
        record.write(cfg.outdir, "gate-failed")
        raise
    except SynthcohortError as exc:
        result.status = "failed"
        record.error = exc.message  # messages carry no patient value and no secret
        record.write(cfg.outdir, "failed")
        raise
    except BaseException:
        result.status = "failed"
        record.write(cfg.outdir, "failed")
        raise
    result.status = "succeeded"
    record.write(cfg.outdir, "succeeded")
    return result


def _run_stages(
    cfg: PipelineConfig, work: stages.Workdir, record: RunRecord, result: RunResult, bars: BarFactory
) -> None:
    with _timed(record, "extract") as entry:
        extracted = stages.extract(cfg, work, bars)
        entry.update(persons=extracted.persons, report=extracted.report)
    record.input_fingerprint = _fingerprint(work.cohort)
    record.run_id = run_id(cfg, record.input_fingerprint)
    result.persons["real"] = extracted.persons
    with _timed(record, "fit") as entry:
        engine = stages.fit(cfg, work, bars)
        entry.update(engine=cfg.model.engine, persons_learned=engine.record.get("persons_learned"))
        entry["safeguards"] = engine.record.get("safeguards", {})
    with _timed(record, "generate") as entry:
        sampled = stages.generate(cfg, engine, work, bars)
        entry.update(persons=sampled.persons, safeguards=sampled.counts)
    result.persons["synthetic"] = sampled.persons
    if cfg.evaluate.enabled:
        with _timed(record, "evaluate") as entry:
            evaluation = stages.evaluate(cfg, work, bars)
            result.report = _write_report(evaluation, cfg.outdir)
            entry["report"] = REPORT_NAME
        record.gates = {
            "passed": evaluation.passed,
            "accepted_risk": evaluation.accept_risk,
            "results": _gate_dicts(evaluation),
        }
        record.metrics = metrics_summary(evaluation.figures)
        if evaluation.failed and not evaluation.accept_risk:
            names = ", ".join(g.name for g in evaluation.failed)
            raise GateFailed(
                f"gate(s) failed: {names}; nothing was exported",
                f"read {result.report}; if the data controller accepts the risk, set [evaluate] accept_risk = 'reason'",
            )
    else:
        record.gates = {"passed": None, "note": "evaluation disabled in the config: nothing was measured"}
    with _timed(record, "export") as entry:
        record.outputs = _export(cfg, work, bars, result, record.run_id or "")
        entry["outputs"] = len(record.outputs)


def _gate_dicts(evaluation: Any) -> list[dict[str, Any]]:
    from synthcohort.evaluation import gates

    return gates.as_dicts(evaluation.gates)  # type: ignore[no-any-return]


def _write_report(evaluation: Any, outdir: Path) -> Path:
    from synthcohort.evaluation.report import write_report

    report = outdir / REPORT_NAME
    write_report(evaluation, report, outdir / METRICS_NAME)
    return report


def _is_server(output: OutputConfig) -> bool:
    return output.url is not None and duckdb_file(output) is None


def _export(
    cfg: PipelineConfig, work: stages.Workdir, bars: BarFactory, result: RunResult, run_id: str
) -> list[dict[str, Any]]:
    """Every output is written under a temporary name; all appear together when the last writer is done."""
    from synthcohort.connectors.omop.writer import rows_to_write

    # folder and DuckDB-file targets first; server databases (one transaction each) last
    order = sorted(range(len(cfg.outputs)), key=lambda i: _is_server(cfg.outputs[i]))
    records: list[dict[str, Any]] = [{} for _ in cfg.outputs]
    with CohortStore.open(work.synthetic) as store, contextlib.ExitStack() as stack:
        total = rows_to_write(store)
        for i in order:
            output = cfg.outputs[i]
            staged = stage(stack, output, cfg.overwrite)
            rows = stages.export(output, store, staged.target, bars, total, overwrite=cfg.overwrite, run_id=run_id)
            staged.record.update(target=describe_target(output, cfg.outdir), rows=rows)
            if cfg.validate:
                staged.record["validation"] = stages.validate(output, staged.target, staged.staging, bars)
            staged.describe_files()
            records[i] = staged.record
    result.outputs = [display_target(o) for o in cfg.outputs]
    return records
