"""Write a cohort store as FHIR R4: Bulk NDJSON (one file per type) or one transaction Bundle per patient.

Every resource is labelled (meta.security HTEST, the project's data-origin tag); ids are fresh,
derived from a seed (same store + seed => same bytes); every reference resolves inside the output;
codings carry the vocabulary's system, code and display, never a display from source data.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson
import pyarrow as pa

from synthcohort import __version__
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.ids import fhir_uuid
from synthcohort.connectors.fhir.render import TABLE_OF, load_concepts, references_sql, rows_sql
from synthcohort.errors import ConfigError
from synthcohort.mappings.rules import all_rules
from synthcohort.outputs import FILE_MODE, atomic_output_dir

log = logging.getLogger(__name__)

TAG_SYSTEM = "https://synthcohort.org/CodeSystem/data-origin"
HTEST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST", "display": "test health data"}
FORMATS = ("ndjson", "bundle")
_BATCH_ROWS = 8_192
# Persons per range. A range's rows are rendered in DuckDB and, for Bundles, joined per person by
# string_agg, which cannot spill to disk: 2,000 persons' Bundles (about 0.5 GB of text) do not fit
# the store connection's memory limit (cohort.MEMORY_LIMIT), 250 do with room to spare.
CHUNK_PERSONS = {"ndjson": 2_000, "bundle": 250}
_TARGETS = "<targets>"  # stands for the Provenance's target list until it is streamed in


@dataclass
class ExportReport:
    written: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    files: int = 0
    bytes: int = 0
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "written": dict(sorted(self.written.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "files": self.files,
            "bytes": self.bytes,
        }


class _Sink:
    """Output files under the temporary folder; gzip with a zero mtime so bytes are reproducible."""

    def __init__(self, root: Path, gz: bool) -> None:
        self.root = root
        self.gz = gz
        self.files: dict[str, tuple[IO[bytes], IO[bytes]]] = {}  # open now
        self.opened = 0
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
            self.opened += 1
        return handle[0]

    def write(self, name: str, data: bytes) -> None:
        self.bytes += len(data)
        self.open(name).write(data)

    def write_strings(self, name: str, strings: pa.Array) -> None:
        """The values of a string array without nulls, back to back: one slice of its data buffer."""
        if not (pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type)):
            strings = strings.cast(pa.large_string())
        if len(strings) == 0:
            return
        width = 8 if pa.types.is_large_string(strings.type) else 4
        offsets = memoryview(strings.buffers()[1]).cast("q" if width == 8 else "i")
        start, end = offsets[strings.offset], offsets[strings.offset + len(strings)]
        self.bytes += end - start
        self.open(name).write(memoryview(strings.buffers()[2])[start:end])

    def write_file(self, name: str, data: bytes) -> None:
        """A whole file at once (one Bundle)."""
        self.write(name, data)
        out, raw = self.files.pop(name)
        out.close()
        if out is not raw:
            raw.close()

    def close(self) -> None:
        for out, raw in self.files.values():
            out.close()
            if out is not raw:
                raw.close()
        self.files.clear()


class FhirWriter:
    """Streams a store into FHIR R4 files, person chunk by person chunk."""

    def __init__(
        self,
        store: CohortStore,
        *,
        fmt: str = "ndjson",
        gz: bool = False,
        seed: int | str = 0,
        chunk_size: int | None = None,
        recorded: dt.datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown FHIR output format {fmt!r}", "use ndjson or bundle")
        self.store = store
        self.fmt = fmt
        self.gz = gz
        self.seed = str(seed)
        self.chunk_size = chunk_size or CHUNK_PERSONS[fmt]
        self.progress = progress
        self.recorded = recorded or _default_recorded(store)
        kind = store.get_meta("kind") or "unspecified"
        self.meta = {"security": [HTEST], "tag": [{"system": TAG_SYSTEM, "code": kind}]}
        self.rules = {t: r.write for t, r in all_rules().items() if r.write is not None}
        self.report = ExportReport()
        self.bundle_no = 0
        self.report.run_id = fhir_uuid(f"{self.seed}|{store.content_digest()}|{__version__}")

    def write(self, outdir: str | Path, *, overwrite: bool = False) -> ExportReport:
        urn = self.fmt == "bundle"
        cur = self.store.con.cursor()
        try:
            load_concepts(cur, self.store)
            rows = rows_sql(self.rules, self.seed, self.meta, urn)
            refs = {t: references_sql(self.seed, t, rtype, urn) for rtype, t in TABLE_OF.items()}
            with atomic_output_dir(outdir, overwrite=overwrite) as tmp:
                sink = _Sink(tmp, self.gz)
                try:
                    provenance = self._start_provenance(sink)
                    # The ranges' bounds come from DuckDB: a list of every person id would grow with the
                    # store (1,000,000 ids: about 39 MiB held for the whole export, 92 MiB while fetched).
                    for lo, hi, persons in self.store.person_ranges(self.chunk_size):
                        bounds = {"lo": lo, "hi": hi}
                        for table, sql in refs.items():
                            cur.execute(f"CREATE OR REPLACE TEMP TABLE sc_ref_{table} AS {sql}", bounds)
                        cur.execute(f"CREATE OR REPLACE TEMP TABLE sc_rows AS {rows}", bounds)
                        self._count(cur)
                        provenance.add(self._ids_of(cur, "Patient"))
                        if urn:
                            self._bundles(cur, sink)
                        else:
                            self._ndjson(cur, sink)
                        if self.progress:
                            self.progress(persons)
                    provenance.close()
                finally:
                    sink.close()
                self.report.bytes = sink.bytes
                self.report.files = sink.opened
        finally:
            cur.close()
        return self.report

    # -- resources -----------------------------------------------------------------
    def _count(self, cur: duckdb.DuckDBPyConnection) -> None:
        counts = cur.sql(
            "SELECT tbl, rtype, count(line), count(*) - count(line), sum(dropped) FILTER (WHERE line IS NOT NULL) "
            "FROM sc_rows GROUP BY ALL"
        ).fetchall()
        for table, rtype, written, skipped, dropped in counts:
            if written:
                self.report.written[rtype] += written
            if skipped:
                self.report.skipped[f"{table}:no_code"] += skipped
            if dropped:
                self.report.skipped["reference_dropped"] += dropped

    @staticmethod
    def _ids_of(cur: duckdb.DuckDBPyConnection, rtype: str) -> list[str]:
        sql = "SELECT id FROM sc_rows WHERE rtype = $t AND line IS NOT NULL ORDER BY p, r, k"
        return [r[0] for r in cur.sql(sql, params={"t": rtype}).fetchall()]

    def _ndjson(self, cur: duckdb.DuckDBPyConnection, sink: _Sink) -> None:
        """One file per resource type; lines ordered by person, then table, then the row's key."""
        types = [
            r[0] for r in cur.sql("SELECT DISTINCT rtype FROM sc_rows WHERE line IS NOT NULL ORDER BY 1").fetchall()
        ]
        for rtype in types:
            sql = "SELECT line FROM sc_rows WHERE rtype = $t AND line IS NOT NULL ORDER BY p, r, k"
            for batch in cur.sql(sql, params={"t": rtype}).to_arrow_reader(_BATCH_ROWS):
                sink.write_strings(f"{rtype}.ndjson", batch.column(0))

    def _bundles(self, cur: duckdb.DuckDBPyConnection, sink: _Sink) -> None:
        """One transaction Bundle per person: its resources as entries, PUT to their own ids."""
        head = orjson.dumps({"meta": self.meta, "type": "transaction"}).decode()[1:-1]
        entry = (
            '\'{"fullUrl":"urn:uuid:\' || id || \'","resource":\' || line || '
            '\',"request":{"method":"PUT","url":"\' || rtype || \'/\' || id || \'"}}\''
        )
        sql = (
            f"SELECT p, string_agg({entry}, ',' ORDER BY r, k) AS entries FROM sc_rows "
            "WHERE line IS NOT NULL GROUP BY p ORDER BY p"
        )
        for batch in cur.sql(sql).to_arrow_reader(_BATCH_ROWS):
            for person_id, entries in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                self.bundle_no += 1
                bundle = (
                    f'{{"resourceType":"Bundle","id":"{fhir_uuid(f"{self.seed}|bundle|{person_id}")}",{head},'
                    f'"entry":[{entries}]}}\n'
                )
                sink.write_file(f"bundles/bundle-{self.bundle_no:07d}.json", bundle.encode())

    def _start_provenance(self, sink: _Sink) -> _StreamedProvenance:
        """The run's Device and Provenance; the Provenance's targets (every Patient) follow chunk by chunk."""
        device_id = fhir_uuid(f"{self.report.run_id}|device")
        device = {
            "resourceType": "Device",
            "id": device_id,
            "meta": self.meta,
            "deviceName": [{"name": "synthcohort", "type": "manufacturer-name"}],
            "version": [{"value": __version__}],
        }
        provenance = {
            "resourceType": "Provenance",
            "id": self.report.run_id,
            "meta": self.meta,
            "target": _TARGETS,
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
            name, text = "Provenance.ndjson", orjson.dumps(provenance) + b"\n"
        else:
            bundle = {
                "resourceType": "Bundle",
                "id": fhir_uuid(f"{self.report.run_id}|bundle"),
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
            name, text = "provenance.json", orjson.dumps(bundle, option=orjson.OPT_APPEND_NEWLINE)
        head, tail = text.split(orjson.dumps(_TARGETS))
        return _StreamedProvenance(sink, name, head, tail, fallback=f"Device/{device_id}")


class _StreamedProvenance:
    """One Provenance written as the export goes: its head, the Patient references of each chunk,
    then its tail. No list of every patient is held (a million ids would be hundreds of MB)."""

    def __init__(self, sink: _Sink, name: str, head: bytes, tail: bytes, *, fallback: str) -> None:
        """``fallback``: the reference the Provenance targets when the export holds no patient."""
        self.sink, self.name, self.tail, self.fallback = sink, name, tail, fallback
        self.empty = True
        sink.write(name, head + b"[")

    def add(self, patients: list[str]) -> None:
        if patients:
            refs = orjson.dumps([{"reference": f"Patient/{p}"} for p in patients])[1:-1]
            self.sink.write(self.name, refs if self.empty else b"," + refs)
            self.empty = False

    def close(self) -> None:
        if self.empty:
            self.sink.write(self.name, orjson.dumps({"reference": self.fallback}))
        self.sink.write(self.name, b"]" + self.tail)


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
