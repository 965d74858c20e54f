"""Validate FHIR R4 output: fhir.resources (R4B) models, the official R4 JSON schema (the copy shipped with
the package unless another file is given) and the project's own checks, every error located.

Own checks: references resolve inside the output (urn:uuid within its Bundle, ``Type/id`` across the
output), ids unique per type, no empty strings / arrays / objects / nulls, dateTimes with a time
carry a zone, every resource labelled (meta.security HTEST and the data-origin tag), one
Provenance per export. Messages name the location and the rule, never a value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from synthcohort.connectors.fhir.schema import R4Schema
from synthcohort.connectors.fhir.sources import Limits, Source, discover, iter_lines, read_capped
from synthcohort.connectors.fhir.writer import HTEST, TAG_SYSTEM

_DATETIME_WITH_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T")
_ZONE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/.*)?")


@dataclass
class ValidationResult:
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    error_counts: Counter[str] = field(default_factory=Counter)
    model_checked: int = 0
    schema_checked: int = 0
    max_errors: int = 1000

    def error(self, where: str, rule: str, message: str) -> None:
        self.error_counts[rule] += 1
        if len(self.errors) < self.max_errors:
            self.errors.append((where, f"{rule}: {message}"))

    @property
    def ok(self) -> bool:
        return not self.error_counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "resources": sum(self.counts.values()),
            "by_type": dict(sorted(self.counts.items())),
            "model_checked": self.model_checked,
            "schema_checked": self.schema_checked,
            "errors": sum(self.error_counts.values()),
            "errors_by_rule": dict(sorted(self.error_counts.items())),
            "first_errors": [{"at": w, "error": m} for w, m in self.errors[:50]],
        }


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


class FhirValidator:
    def __init__(
        self, *, models: bool = True, model_sample: int = 1, schema: R4Schema | None = None, schema_check: bool = True
    ) -> None:
        self.models = models
        self.model_sample = max(1, model_sample)
        self.schema = (schema if schema is not None else R4Schema.bundled()) if schema_check else None
        self.result = ValidationResult()
        self.defined: set[tuple[str, str]] = set()
        self.pending: list[tuple[str, str, str]] = []  # (where, type, id) of relative references
        self.seen = 0

    def validate(self, path: str | Path) -> ValidationResult:
        for source in discover(path, Limits()):
            self._source(source)
        for where, rtype, rid in self.pending:
            if (rtype, rid) not in self.defined:
                self.result.error(where, "reference", f"{rtype}/<id> does not resolve inside the output")
        if self.result.counts.get("Provenance", 0) != 1:
            self.result.error(
                str(path), "provenance", f"{self.result.counts.get('Provenance', 0)} Provenance resources, expected 1"
            )
        return self.result

    def _source(self, source: Source) -> None:
        with source.opener() as stream:
            if source.kind == "ndjson":
                for number, line in iter_lines(stream, Limits().line_bytes):
                    where = f"{source.name}:{number}"
                    if line is None:
                        self.result.error(where, "json", "line too long")
                        return
                    if line.strip():
                        self._top(line, where)
            else:
                data = read_capped(stream, Limits().json_file_bytes)
                if data is None:
                    self.result.error(source.name, "json", "file too large")
                else:
                    self._top(data, source.name)

    def _top(self, data: bytes, where: str) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.result.error(where, "json", "not valid JSON")
            return
        if not isinstance(obj, dict):
            self.result.error(where, "json", "not a JSON object")
            return
        if obj.get("resourceType") == "Bundle":
            self._bundle(obj, where)
        else:
            self._resource(obj, where, None)

    def _bundle(self, bundle: dict[str, Any], where: str) -> None:
        self._labels(bundle, where)
        full_urls: set[str] = set()
        for entry in bundle.get("entry") or []:
            full = entry.get("fullUrl") if isinstance(entry, dict) else None
            if isinstance(full, str):
                if full in full_urls:
                    self.result.error(where, "bundle", "duplicate fullUrl")
                full_urls.add(full)
        if bundle.get("type") in ("transaction", "batch"):
            for i, entry in enumerate(bundle.get("entry") or []):
                request = entry.get("request") if isinstance(entry, dict) else None
                if not (isinstance(request, dict) and request.get("method") and request.get("url")):
                    self.result.error(f"{where} entry {i}", "bundle", "transaction entry without request")
        shell = {k: v for k, v in bundle.items() if k != "entry"}
        if self.models:
            self._model(shell, where)
        self._schema(shell, where)
        for i, entry in enumerate(bundle.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                self._resource(resource, f"{where} entry {i}", full_urls)
            else:
                self.result.error(f"{where} entry {i}", "bundle", "entry without resource")

    def _labels(self, resource: dict[str, Any], where: str) -> None:
        meta = resource.get("meta") or {}
        security = meta.get("security") or []
        tags = meta.get("tag") or []
        if not any(s.get("system") == HTEST["system"] and s.get("code") == "HTEST" for s in security):
            self.result.error(where, "label", "meta.security lacks v3-ActReason#HTEST")
        if not any(t.get("system") == TAG_SYSTEM for t in tags):
            self.result.error(where, "label", "meta.tag lacks the data-origin tag")

    def _model(self, resource: dict[str, Any], where: str) -> None:
        from fhir.resources.R4B import get_fhir_model_class
        from pydantic import ValidationError

        self.result.model_checked += 1
        rtype = str(resource.get("resourceType"))
        try:
            model = get_fhir_model_class(rtype)
        except KeyError:
            self.result.error(where, "model", "unknown resourceType")
            return
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
                self.result.error(where, "model", f"{rtype}{loc}: {err['msg']}")

    def _schema(self, resource: dict[str, Any], where: str) -> None:
        if self.schema is None:
            return
        self.result.schema_checked += 1
        for message in self.schema.errors(resource):
            self.result.error(where, "schema", message)

    def _resource(self, resource: dict[str, Any], where: str, full_urls: set[str] | None) -> None:
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            self.result.error(where, "resource", "no resourceType")
            return
        self.result.counts[rtype] += 1
        self.seen += 1
        rid = resource.get("id")
        if not isinstance(rid, str) or not _ID.fullmatch(rid):
            self.result.error(where, "id", "missing or invalid id")
        elif (rtype, rid) in self.defined:
            self.result.error(where, "id", f"id not unique among {rtype}")
        else:
            self.defined.add((rtype, rid))
        self._labels(resource, where)
        for path, value in _walk(resource, rtype):
            if value is None or value == "" or value == [] or value == {}:
                self.result.error(where, "empty", f"{path} is empty")
            elif isinstance(value, str):
                if path.endswith(".reference"):
                    self._reference(value, where, path, full_urls)
                elif _DATETIME_WITH_TIME.match(value) and not _ZONE.search(value):
                    self.result.error(where, "zone", f"{path} has a time without a zone")
        if self.models and self.seen % self.model_sample == 0:
            self._model(resource, where)
        self._schema(resource, where)

    def _reference(self, ref: str, where: str, path: str, full_urls: set[str] | None) -> None:
        if ref.startswith("urn:uuid:"):
            if full_urls is None or ref not in full_urls:
                self.result.error(where, "reference", f"{path} does not resolve inside its Bundle")
            return
        m = _REF.fullmatch(ref)
        if m is None:
            self.result.error(where, "reference", f"{path} is not a Type/id or urn:uuid reference")
            return
        self.pending.append((f"{where} {path}", m.group(1), m.group(2)))


def validate_fhir(
    path: str | Path,
    *,
    models: bool = True,
    model_sample: int = 1,
    schema: R4Schema | str | Path | None = None,
    schema_check: bool = True,
) -> ValidationResult:
    """Check every resource under ``path`` (NDJSON, Bundles); ``model_sample`` = k checks every k-th model;
    every resource and Bundle is checked against the official R4 JSON schema: ``schema`` (loaded, or its
    file), else the copy shipped with the package (``schema_check=False``: none, to measure the rest)."""
    if schema is not None and not isinstance(schema, R4Schema):
        schema = R4Schema.load(schema)
    return FhirValidator(models=models, model_sample=model_sample, schema=schema, schema_check=schema_check).validate(
        path
    )
