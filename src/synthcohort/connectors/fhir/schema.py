"""The official HL7 FHIR R4 JSON schema as a check of single resources, compiled (jsonschema-rs).

Each resource is checked against its own type's definition (the schema's top-level ``oneOf`` over 146
types gives the same verdict more slowly and with poorer messages); a type's validator is compiled
once, on first use. Messages name the element and the schema rule broken, never the value.

The schema ships with the package (``synthcohort/data/fhir.schema.json.gz``, see the README there for its
source, license and checksum) and is what ``R4Schema.bundled()`` loads; a file given by the user overrides it.
"""

from __future__ import annotations

import gzip
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from synthcohort.errors import InputError

R4_SCHEMA_ID = "http://hl7.org/fhir/json-schema/4.0"
BUNDLED_FILE = "fhir.schema.json.gz"  # in the package synthcohort.data
_HINT = (
    "pass the official FHIR R4 JSON schema: fhir.schema.json, its .gz, or the fhir.schema.json.zip that HL7 "
    "publishes with the R4 specification"
)


def _read(path: Path) -> bytes:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("fhir.schema.json")]
            if not names:
                raise InputError(f"{path} holds no fhir.schema.json", _HINT)
            return archive.read(names[0])
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def _location(rtype: str, instance_path: list[str | int]) -> str:
    return rtype + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in instance_path)


class R4Schema:
    """Validators for the resource types of the official R4 schema, built lazily per type."""

    def __init__(self, schema: dict[str, Any]) -> None:
        if schema.get("id") != R4_SCHEMA_ID or not isinstance(schema.get("definitions"), dict):
            raise InputError(f"not the FHIR R4 JSON schema (id {schema.get('id')!r}, expected {R4_SCHEMA_ID})", _HINT)
        self.definitions: dict[str, Any] = schema["definitions"]
        self.resource_types = frozenset(
            ref["$ref"].rsplit("/", 1)[-1] for ref in schema.get("oneOf", []) if isinstance(ref, dict)
        )
        self._validators: dict[str, Any] = {}

    @classmethod
    def load(cls, path: str | Path) -> R4Schema:
        path = Path(path)
        try:
            data = _read(path)
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"cannot read the FHIR schema {path}: {exc.__class__.__name__}", _HINT) from exc
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: bytes, name: str) -> R4Schema:
        try:
            schema = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"the FHIR schema {name} is not valid JSON", _HINT) from exc
        if not isinstance(schema, dict):
            raise InputError(f"the FHIR schema {name} is not a JSON object", _HINT)
        return cls(schema)

    @staticmethod
    @cache
    def bundled() -> R4Schema:
        """The official R4 schema shipped with the package (read once per process; validators compile lazily)."""
        packed = resources.files("synthcohort.data").joinpath(BUNDLED_FILE).read_bytes()
        return R4Schema.parse(gzip.decompress(packed), f"synthcohort/data/{BUNDLED_FILE}")

    def _validator(self, rtype: str) -> Any:
        validator = self._validators.get(rtype)
        if validator is None:
            import jsonschema_rs

            validator = jsonschema_rs.Draft6Validator(
                {"$ref": f"#/definitions/{rtype}", "definitions": self.definitions}
            )
            self._validators[rtype] = validator
        return validator

    def errors(self, resource: dict[str, Any]) -> list[str]:
        """Every way ``resource`` breaks the schema, each as 'location: rule (schema path)'."""
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or rtype not in self.resource_types:
            return ["resourceType: not a resource type of the R4 schema"]
        validator = self._validator(rtype)
        if validator.is_valid(resource):
            return []
        out = []
        for err in validator.iter_errors(resource):
            where = _location(rtype, list(err.instance_path))
            rule = "/".join(str(p) for p in err.schema_path)
            kind = err.kind.as_dict()
            if "property" in kind and rule.endswith("required"):
                out.append(f"{where}: required element {kind['property']} is missing ({rule})")
            elif "unexpected" in kind:
                out.append(f"{where}: elements not in the definition: {', '.join(kind['unexpected'])} ({rule})")
            else:
                out.append(f"{where}: breaks '{err.schema_path[-1]}' ({rule})")
        return out
