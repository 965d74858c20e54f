"""Is a resource R4 as the rules expect? Other-version markers, modifier extensions, unknown elements."""

from __future__ import annotations

import importlib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from synthcohort.mappings.rules import version_markers

# Element names of the resource types the rules read, written by tools/gen_r4_elements.py from the
# fhir.resources models: importing those models costs a third of a second, more than reading thousands
# of resources. tests/test_r4_elements.py checks the file against the models.
ELEMENTS_FILE = "r4_elements.json"

_SHAPES = {
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "boolean": lambda v: isinstance(v, bool),
    "present": lambda v: True,
}


def _module_name(resource_type: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", resource_type).lower().replace("_", "")


@cache
def _packaged_elements() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(
        resources.files("synthcohort.mappings").joinpath(ELEMENTS_FILE).read_text("utf-8")
    )
    return data


@cache
def known_elements(resource_type: str) -> frozenset[str] | None:
    """Top-level element names of an R4(B) resource type (None: unknown type)."""
    packaged = _packaged_elements().get(resource_type)
    if packaged is not None:
        return frozenset(packaged)
    return model_elements(resource_type)


def model_elements(resource_type: str) -> frozenset[str] | None:
    """Top-level element names of an R4(B) resource type, from the fhir.resources models (None: unknown type)."""
    try:
        module = importlib.import_module(f"fhir.resources.R4B.{_module_name(resource_type)}")
    except ImportError:
        return None
    model = getattr(module, resource_type, None)
    if model is None:
        return None
    names = {"resourceType"}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        names.add(alias)
        names.add(alias.lstrip("_"))
    names |= {"_" + n for n in list(names)}
    return frozenset(names)


def other_version(resource: dict[str, Any]) -> str | None:
    """``STU3`` or ``R5`` when the resource carries an element shape R4 does not have."""
    for marker in version_markers().get(resource.get("resourceType", ""), ()):
        value = resource.get(marker.path)
        if value is not None and _SHAPES[marker.shape](value):
            return marker.version
    return None


def unknown_elements(resource: dict[str, Any]) -> list[str]:
    known = known_elements(resource.get("resourceType", ""))
    if known is None:
        return []
    return [k for k in resource if k not in known]
