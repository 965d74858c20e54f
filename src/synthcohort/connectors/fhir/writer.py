"""Write a cohort store as FHIR R4: Bulk NDJSON (one file per type) or one transaction Bundle per patient.

Every resource is labelled (meta.security HTEST, the project's data-origin tag); ids are fresh,
derived from a seed (same store + seed => same bytes); every reference resolves inside the output;
codings carry the vocabulary's system, code and display, never a display from source data.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from synthcohort import __version__, cdm
from synthcohort.cohort import CohortStore
from synthcohort.errors import ConfigError
from synthcohort.mappings.rules import LOCAL_CONCEPT_BASE, all_rules, code_systems
from synthcohort.mappings.writing import ResourceTemplate
from synthcohort.outputs import FILE_MODE, atomic_output_dir

log = logging.getLogger(__name__)

TAG_SYSTEM = "https://synthcohort.org/CodeSystem/data-origin"
HTEST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST", "display": "test health data"}
_TABLE_OF = {"Patient": "person", "Encounter": "visit_occurrence"}
FORMATS = ("ndjson", "bundle")


@dataclass
class ExportReport:
    written: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "written": dict(sorted(self.written.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "files": len(self.files),
            "bytes": self.bytes,
        }


class _Context:
    """Fresh ids, references and codings for the templates (see mappings.writing.WriteContext)."""

    def __init__(self, seed: str, codings: dict[int, dict[str, str]], vocab: dict[int, str], urn: bool) -> None:
        self.seed = seed
        self.codings = codings
        self.vocab = vocab
        self.urn = urn
        self.refs: dict[tuple[str, Any], dict[str, str]] = {}
        self.dropped_links = 0

    def fhir_id(self, table: str, store_id: Any) -> str:
        return _uuid(f"{self.seed}|{table}|{store_id}")

    def set_known(self, persons: list[Any], visits: list[Any]) -> None:
        """The persons and visits of the current chunk: the only targets a reference may name."""
        prefix = "urn:uuid:" if self.urn else None
        self.refs = {}
        for rtype, table, ids in (("Patient", "person", persons), ("Encounter", "visit_occurrence", visits)):
            for store_id in ids:
                rid = self.fhir_id(table, store_id)
                self.refs[(rtype, store_id)] = {"reference": f"{prefix}{rid}" if prefix else f"{rtype}/{rid}"}

    def reference(self, resource_type: str, store_id: Any) -> dict[str, str] | None:
        if store_id is None:
            return None
        ref = self.refs.get((resource_type, store_id))
        if ref is None:
            self.dropped_links += 1
        return ref

    def coding(self, concept_id: Any) -> dict[str, str] | None:
        return self.codings.get(concept_id) if concept_id else None

    def vocabulary(self, concept_id: Any) -> str | None:
        return self.vocab.get(concept_id) if concept_id else None


def _codings(store: CohortStore) -> tuple[dict[int, dict[str, str]], dict[int, str]]:
    """concept_id -> FHIR coding, for concepts whose vocabulary has a known system URI (or a local one)."""
    uris = code_systems().uri_of
    rows = store.con.execute(
        "SELECT c.concept_id, c.vocabulary_id, c.concept_code, c.concept_name, v.vocabulary_reference "
        "FROM concept c LEFT JOIN vocabulary v ON v.vocabulary_id = c.vocabulary_id"
    ).fetchall()
    codings: dict[int, dict[str, str]] = {}
    vocab: dict[int, str] = {}
    for cid, vocabulary_id, code, name, reference in rows:
        vocab[cid] = vocabulary_id
        system = uris.get(vocabulary_id)
        if system is None and cid >= LOCAL_CONCEPT_BASE and reference:
            system = reference
        if system is None or not code:
            continue
        coding = {"system": system, "code": str(code)}
        if cid < LOCAL_CONCEPT_BASE and name:
            coding["display"] = str(name)
        codings[cid] = coding
    return codings, vocab


def _fhir_strings(table: pa.Table) -> pa.Table:
    """Dates as FHIR date strings, timestamps as dateTimes in UTC with the zone written out."""
    for i, f in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_date(f.type):
            table = table.set_column(i, f.name, pc.strftime(col.cast(pa.timestamp("s"), safe=False), format="%Y-%m-%d"))
        elif pa.types.is_timestamp(f.type):
            seconds = col.cast(pa.timestamp("s"), safe=False)  # fractions of a second are dropped
            table = table.set_column(i, f.name, pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S+00:00"))
    return table


class _Sink:
    """Output files under the temporary folder; gzip with a zero mtime so bytes are reproducible."""

    def __init__(self, root: Path, gz: bool) -> None:
        self.root = root
        self.gz = gz
        self.files: dict[str, tuple[IO[bytes], IO[bytes]]] = {}
        self.bytes = 0

    def open(self, name: str) -> IO[bytes]:
        handle = self.files.get(name)
        if handle is None:
            path = self.root / (name + (".gz" if self.gz else ""))
            path.parent.mkdir(parents=True, exist_ok=True)
            raw: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()
            os.chmod(path, FILE_MODE)
            out: IO[bytes] = raw
            if self.gz:
                out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)  # type: ignore[assignment]
            handle = self.files[name] = (out, raw)
        return handle[0]

    def write(self, name: str, data: bytes) -> None:
        self.bytes += len(data)
        self.open(name).write(data)

    def write_file(self, name: str, data: bytes) -> None:
        """A whole file at once (one Bundle)."""
        self.write(name, data)
        out, raw = self.files.pop(name)
        out.close()
        if out is not raw:
            raw.close()

    def close(self) -> list[str]:
        for out, raw in self.files.values():
            out.close()
            if out is not raw:
                raw.close()
        names = sorted(self.files)
        self.files.clear()
        return names


class FhirWriter:
    """Streams a store into FHIR R4 files, person chunk by person chunk."""

    def __init__(
        self,
        store: CohortStore,
        *,
        fmt: str = "ndjson",
        gz: bool = False,
        seed: int | str = 0,
        chunk_size: int = 2_000,
        recorded: dt.datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown FHIR output format {fmt!r}", "use ndjson or bundle")
        self.store = store
        self.fmt = fmt
        self.gz = gz
        self.seed = str(seed)
        self.chunk_size = chunk_size
        self.progress = progress
        self.recorded = recorded or _default_recorded(store)
        kind = store.get_meta("kind") or "unspecified"
        self.meta = {"security": [HTEST], "tag": [{"system": TAG_SYSTEM, "code": kind}]}
        self.templates = {t: ResourceTemplate(r.write) for t, r in all_rules().items() if r.write is not None}
        self.report = ExportReport()
        self.report.run_id = _uuid(f"{self.seed}|{store.content_digest()}|{__version__}")

    def write(self, outdir: str | Path, *, overwrite: bool = False) -> ExportReport:
        codings, vocab = _codings(self.store)
        ctx = _Context(self.seed, codings, vocab, urn=self.fmt == "bundle")
        with atomic_output_dir(outdir, overwrite=overwrite) as tmp:
            sink = _Sink(tmp, self.gz)
            try:
                patients: list[str] = []
                bundle_no = 0
                for chunk in self.store.iter_person_chunks(self.chunk_size):
                    per_person = self._chunk(chunk, ctx, patients)
                    if self.fmt == "ndjson":
                        for rtype, lines in per_person.items():
                            sink.write(f"{rtype}.ndjson", b"".join(lines))
                    else:
                        for bundle in per_person.values():
                            bundle_no += 1
                            sink.write_file(f"bundles/bundle-{bundle_no:07d}.json", b"".join(bundle))
                    if self.progress:
                        self.progress(chunk["person"].num_rows)
                self._provenance(sink, ctx, patients)
            finally:
                sink.close()
            self.report.bytes = sink.bytes
            self.report.files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        if ctx.dropped_links:
            self.report.skipped["reference_dropped"] += ctx.dropped_links
        return self.report

    # -- resources -----------------------------------------------------------------
    def _chunk(self, chunk: dict[str, pa.Table], ctx: _Context, patients: list[str]) -> dict[Any, list[bytes]]:
        """Resources of one chunk: per resource type (NDJSON lines) or per person (a Bundle's bytes)."""
        rows = {t: _fhir_strings(chunk[t]).to_pylist() for t in (*self.templates, "death") if t in chunk}
        visits = [r["visit_occurrence_id"] for r in rows.get("visit_occurrence", [])]
        ctx.set_known([r["person_id"] for r in rows["person"]], visits)
        deaths = {r["person_id"]: r for r in rows.get("death", [])}
        by_person: dict[Any, list[tuple[str, str, dict[str, Any]]]] = {}
        for table, template in self.templates.items():
            pk = cdm.table(table).primary_key or "person_id"
            for row in rows.get(table, []):
                if table == "person" and row["person_id"] in deaths:
                    death = deaths[row["person_id"]]
                    row = {**row, "death_date": death["death_date"], "death_datetime": death["death_datetime"]}
                rtype, body = template.build(row, ctx)
                if body is None:
                    self.report.skipped[f"{table}:no_code"] += 1
                    continue
                rid = ctx.fhir_id(table, row[pk])
                resource = {"resourceType": rtype, "id": rid, "meta": self.meta, **body}
                by_person.setdefault(row["person_id"], []).append((rtype, rid, resource))
                self.report.written[rtype] += 1
                if rtype == "Patient":
                    patients.append(rid)
        if self.fmt == "ndjson":
            lines: dict[Any, list[bytes]] = {}
            for items in by_person.values():
                for rtype, _, resource in items:
                    lines.setdefault(rtype, []).append(orjson.dumps(resource) + b"\n")
            return lines
        bundles: dict[Any, list[bytes]] = {}
        for person_id, items in by_person.items():
            bundle = {
                "resourceType": "Bundle",
                "id": ctx.fhir_id("bundle", person_id),
                "meta": self.meta,
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": f"urn:uuid:{rid}",
                        "resource": res,
                        "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
                    }
                    for rtype, rid, res in items
                ],
            }
            bundles[person_id] = [orjson.dumps(bundle, option=orjson.OPT_APPEND_NEWLINE)]
        return bundles

    def _provenance(self, sink: _Sink, ctx: _Context, patients: list[str]) -> None:
        device_id = _uuid(f"{self.report.run_id}|device")
        device = {
            "resourceType": "Device",
            "id": device_id,
            "meta": self.meta,
            "deviceName": [{"name": "synthcohort", "type": "manufacturer-name"}],
            "version": [{"value": __version__}],
        }
        targets = [{"reference": f"Patient/{p}"} for p in patients] or [{"reference": f"Device/{device_id}"}]
        provenance = {
            "resourceType": "Provenance",
            "id": self.report.run_id,
            "meta": self.meta,
            "target": targets,
            "recorded": self.recorded.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "CREATE",
                        "display": "create",
                    }
                ]
            },
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "assembler",
                                "display": "Assembler",
                            }
                        ]
                    },
                    "who": {"reference": f"Device/{device_id}"},
                }
            ],
        }
        self.report.written["Device"] += 1
        self.report.written["Provenance"] += 1
        if self.fmt == "ndjson":
            sink.write("Device.ndjson", orjson.dumps(device) + b"\n")
            sink.write("Provenance.ndjson", orjson.dumps(provenance) + b"\n")
            return
        bundle = {
            "resourceType": "Bundle",
            "id": _uuid(f"{self.report.run_id}|bundle"),
            "meta": self.meta,
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{r['id']}",
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in (device, provenance)
            ],
        }
        sink.write_file("provenance.json", orjson.dumps(bundle, option=orjson.OPT_APPEND_NEWLINE))


def _uuid(text: str) -> str:
    """A version-4-shaped UUID derived from ``text`` (fresh for the output, reproducible from the seed)."""
    h = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _default_recorded(store: CohortStore) -> dt.datetime:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else the store's last event day: same store, same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC)
    _, last = store.date_range()
    day = last.date() if isinstance(last, dt.datetime) else last
    if not isinstance(day, dt.date):
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def write_fhir(
    store: CohortStore,
    outdir: str | Path,
    *,
    fmt: str = "ndjson",
    gz: bool = False,
    seed: int | str = 0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write ``store`` as FHIR R4 under ``outdir`` (appears atomically); returns counts per resource type."""
    return FhirWriter(store, fmt=fmt, gz=gz, seed=seed, progress=progress).write(outdir, overwrite=overwrite)
