"""Read FHIR R4 Bundles, single resources and Bulk NDJSON into a cohort store, accounting for every record."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.references import References
from synthcohort.connectors.fhir.report import BENIGN_REASONS, NO_TYPE, RunReport
from synthcohort.connectors.fhir.sources import (
    DecompressionCapExceeded,
    Limits,
    Source,
    discover,
    iter_lines,
    read_capped,
)
from synthcohort.connectors.fhir.staging import Stager
from synthcohort.errors import SkipToleranceExceeded
from synthcohort.mappings.conformance import known_elements, other_version, unknown_elements
from synthcohort.mappings.reading import Notes, ResourceMapper, mapper_for
from synthcohort.mappings.rules import version_markers
from synthcohort.mappings.vocabulary import Vocabulary
from synthcohort.text import plural

log = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"
Progress = Callable[[int], None]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsed JSON makes no cycles, and collections cost a lot."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _TypePlan(NamedTuple):
    """What the reader needs to know of one resource type, looked up once."""

    rtype: str  # the type's name, one string object for all its rows
    mapper: ResourceMapper | None
    markers: bool  # the type has markers of other FHIR versions
    elements: frozenset[str] | None  # R4 element names (mapped types only)


class FhirReader:
    """Streams FHIR input into a cohort store through the mapping rules; returns a :class:`RunReport`."""

    def __init__(
        self,
        store: CohortStore,
        *,
        vocabulary: Vocabulary | None = None,
        limits: Limits | None = None,
        today: dt.date | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.vocabulary = vocabulary
        self.limits = limits or Limits()
        self.today = today or dt.date.today()
        self.progress = progress
        self.report = RunReport(vocabulary=vocabulary.description if vocabulary else None)
        self.refs = References()
        self.notes = Notes()
        self.deleted: set[str] = set()
        self.stager = Stager(store)
        self.res_seq = 0
        self.warned_elements: set[tuple[str, str]] = set()
        self.plans: dict[str, _TypePlan] = {}

    # -- public ----------------------------------------------------------------------
    def read(self, path: str | Path) -> RunReport:
        sources = discover(path, self.limits)
        self.report.files = len(sources)
        with gc_paused():
            for source in sources:
                self._read_source(source)
        self.stager.finalize(self.report, self.vocabulary, self.today)
        self.report.notes.update(self.notes.counts)
        if self.notes.empty.count:
            self.report.notes["empty_value"] += self.notes.empty.count
        return self.report

    # -- sources ---------------------------------------------------------------------
    def _read_source(self, source: Source) -> None:
        log.info("reading %s", source.name)
        try:
            with source.opener() as stream:
                if source.kind == "ndjson":
                    self._read_ndjson(source, stream)
                else:
                    self._read_json(source, stream)
        except DecompressionCapExceeded:
            self._fault(NO_TYPE, "decompression_cap")
            self.report.warn(
                f"{source.name}: stopped at the decompression cap ({self.limits.decompressed_bytes} bytes)"
            )
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as exc:
            # A damaged compressed stream or archive member: counted, never a crash.
            self._fault(NO_TYPE, "unreadable_file")
            self.report.warn(f"{source.name}: cannot be read ({type(exc).__name__})")

    def _fault(self, rtype: str, reason: str) -> None:
        self.report.read[rtype] += 1
        self.report.skip(rtype, reason)

    def _parse(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return _DecodeError

    def _read_ndjson(self, source: Source, stream: Any) -> None:
        for number, line in iter_lines(stream, self.limits.line_bytes):
            if line is None:
                self._fault(NO_TYPE, "line_too_long")
                self.report.warn(
                    f"{source.name}:{number}: line longer than {self.limits.line_bytes} bytes; file stopped"
                )
                return
            if number == 1 and line.startswith(BOM):
                line = line[3:]
            if not line.strip():
                continue
            self._record(self._parse(line), source, f"{source.name}:{number}")

    def _read_json(self, source: Source, stream: Any) -> None:
        data = read_capped(stream, self.limits.json_file_bytes)
        if data is None:
            self._fault(NO_TYPE, "file_too_large")
            self.report.warn(f"{source.name}: larger than {self.limits.json_file_bytes} bytes; not read")
            return
        self._record(self._parse(data.removeprefix(BOM)), source, source.name)

    # -- records ---------------------------------------------------------------------
    def _record(self, obj: Any, source: Source, where: str) -> None:
        if obj is _DecodeError:
            self._fault(NO_TYPE, "json_decode")
            log.debug("%s: not valid JSON", where)
            return
        if not isinstance(obj, dict):
            self._fault(NO_TYPE, "not_object")
            return
        rtype = obj.get("resourceType")
        if not isinstance(rtype, str):
            self._fault(NO_TYPE, "not_resource")
            return
        if source.role == "deleted":
            self._deletions(obj, where)
        elif rtype == "Bundle":
            self._bundle(obj, source, where)
        else:
            self._resource(obj, None)

    def _deletions(self, obj: dict[str, Any], where: str) -> None:
        entries = obj.get("entry") if obj.get("resourceType") == "Bundle" else None
        if not isinstance(entries, list):
            self._fault(str(obj.get("resourceType")), "not_deletion")
            return
        for entry in entries:
            request = entry.get("request") if isinstance(entry, dict) else None
            url = request.get("url") if isinstance(request, dict) else None
            if isinstance(url, str) and request.get("method") == "DELETE":  # type: ignore[union-attr]
                self.deleted.add(url.split("?", 1)[0].strip("/"))
                self.report.notes["deletions"] += 1
            else:
                self._fault("Bundle.entry", "not_deletion")

    def _bundle(self, bundle: dict[str, Any], source: Source, where: str) -> None:
        btype = bundle.get("type")
        links = bundle.get("link") or []
        if btype == "searchset" and any(isinstance(lk, dict) and lk.get("relation") == "next" for lk in links):
            self.report.notes["incomplete_searchset"] += 1
            self.report.warn(f"{where}: a searchset page with a 'next' link: incomplete result, not a whole cohort")
        entries = bundle.get("entry")
        if not isinstance(entries, list):
            self.report.notes["empty_bundle"] += 1
            return
        local: dict[str, tuple[str, dict[str, Any]]] = {}
        keys: list[str | None] = []
        key_of = self.refs.key_of
        for i, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                key = key_of(resource, where, i)
                full = entry.get("fullUrl")
                if isinstance(full, str) and full:
                    local[full] = (key, resource)
                local.setdefault(key, (key, resource))
                keys.append(key)
            else:
                keys.append(None)
        self.refs.bundle = local
        try:
            for entry, entry_key in zip(entries, keys, strict=True):
                if entry_key is None:
                    request = entry.get("request") if isinstance(entry, dict) else None
                    if isinstance(request, dict) and request.get("method") == "DELETE":
                        self.report.notes["bundle_delete_requests"] += 1
                    else:
                        self._fault(NO_TYPE, "not_resource")
                    continue
                resource = entry["resource"]
                rtype = resource.get("resourceType")
                if not isinstance(rtype, str):
                    self._fault(NO_TYPE, "not_resource")
                    continue
                if rtype == "Bundle":
                    self._fault(rtype, "nested_bundle")
                    continue
                self._resource(resource, entry_key)
        finally:
            self.refs.bundle = None

    def _resource(self, resource: dict[str, Any], key: str | None) -> None:
        report = self.report
        rtype = resource["resourceType"]
        report.read[rtype] += 1
        self.res_seq += 1
        if self.progress is not None and self.res_seq % 5000 == 0:
            self.progress(5000)
        plan = self.plans.get(rtype) or self._plan(rtype)
        if rtype == "OperationOutcome":
            self._outcome(resource)
            report.skip(rtype, "operation_outcome")
            return
        if plan.markers and other_version(resource):
            report.skip(rtype, "fhir_version")
            return
        key = key or self.refs.key_of(resource, str(self.res_seq))
        if key in self.deleted:
            report.skip(rtype, "deleted")
            return
        mapper = plan.mapper
        if mapper is None:
            if rtype == "Medication":
                self.refs.remember_medication(key, resource)
                report.skip(rtype, "referenced_only")
            else:
                report.skip(rtype, "unsupported_type")
            return
        if resource.get("modifierExtension"):
            report.skip(rtype, "unknown_modifier")
            return
        if plan.elements is not None and not plan.elements.issuperset(resource):
            for element in unknown_elements(resource):
                report.notes["unknown_element"] += 1
                if (rtype, element) not in self.warned_elements:
                    self.warned_elements.add((rtype, element))
                    report.warn(f"{rtype} has an element R4 does not define: {element!r} (ignored)")
        self.refs.enter(resource, key)
        rows, reason = mapper.map(resource, self.refs, self.notes)
        if reason:
            report.skip(rtype, reason)
            return
        report.mapped[rtype] += 1
        add, res = self.stager.add, self.res_seq
        for table, row in rows:
            add(table, row, plan.rtype, res)

    def _plan(self, rtype: str) -> _TypePlan:
        mapper = mapper_for(rtype)
        plan = self.plans[rtype] = _TypePlan(
            rtype, mapper, bool(version_markers().get(rtype)), known_elements(rtype) if mapper else None
        )
        return plan

    def _outcome(self, resource: dict[str, Any]) -> None:
        for issue in resource.get("issue") or ():
            if isinstance(issue, dict):
                self.report.server_errors[f"{issue.get('severity', 'unknown')}:{issue.get('code', 'unknown')}"] += 1
        self.report.warn("the input holds OperationOutcome records (server errors during the export)")


class _DecodeErrorType:
    pass


_DecodeError = _DecodeErrorType()


def read_fhir(
    path: str | Path,
    store: CohortStore,
    *,
    vocabulary: Vocabulary | None = None,
    limits: Limits | None = None,
    today: dt.date | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Read ``path`` into ``store`` and return the run report (check it with :func:`check_tolerance`)."""
    return FhirReader(store, vocabulary=vocabulary, limits=limits, today=today, progress=progress).read(path)


def check_tolerance(report: RunReport, skip_tolerance: int = 0) -> None:
    """Raise :class:`SkipToleranceExceeded` when the faults (not the benign skips) pass the tolerance."""
    if report.faults <= skip_tolerance:
        return
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(report.by_reason().items()) if n and r not in BENIGN_REASONS)
    were = "was" if report.faults == 1 else "were"
    raise SkipToleranceExceeded(
        f"{plural(report.faults, 'record')} {were} skipped ({reasons}), more than the tolerance of {skip_tolerance}",
        "fix the input, or pass --skip-tolerance N (or --allow-skips) to accept them",
    )
