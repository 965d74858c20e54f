"""Helpers for the FHIR tests: code multisets and the official R4 JSON schema check."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import orjson

# The element holding each clinical type's code(s), as the mapping rules read them.
CODE_ELEMENTS = {
    "Condition": ("code",),
    "Procedure": ("code",),
    "Observation": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "Encounter": ("class", "type"),
}


def codes(resource: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for element in CODE_ELEMENTS.get(resource["resourceType"], ()):
        value = resource.get(element)
        for cc in value if isinstance(value, list) else [value] if value else []:
            for c in cc.get("coding", [cc]):
                if c.get("system") and c.get("code"):
                    out.append((c["system"], c["code"]))
    return out


def iter_output(folder: Path) -> Any:
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            data = fh.read()
        if ".ndjson" in path.name:
            for line in data.splitlines():
                yield orjson.loads(line)
        else:
            bundle = orjson.loads(data)
            for entry in bundle["entry"]:
                yield entry["resource"]


@cache
def _schema(schema_path: Path) -> dict[str, Any]:
    with gzip.open(schema_path, "rt", encoding="utf-8") as fh:
        return dict(json.load(fh))


@cache
def schema_validator(schema_path: Path, resource_type: str) -> Any:
    """A validator for one resource type's definition (the whole schema's oneOf is needlessly slow)."""
    import jsonschema

    schema = _schema(schema_path)
    return jsonschema.Draft6Validator({"$ref": f"#/definitions/{resource_type}", "definitions": schema["definitions"]})


def schema_errors(schema_path: Path, resources: list[dict[str, Any]]) -> Counter[str]:
    """Errors of each resource against the official R4 JSON schema (by resourceType definition)."""
    errors: Counter[str] = Counter()
    for r in resources:
        for err in schema_validator(schema_path, r["resourceType"]).iter_errors(r):
            errors[f"{r['resourceType']}: {err.message[:120]}"] += 1
    return errors
