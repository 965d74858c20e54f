"""Helpers for the FHIR tests: code multisets, every resource of an output."""

from __future__ import annotations

import gzip
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
