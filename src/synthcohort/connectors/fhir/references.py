"""Reference resolution while reading: urn:uuid inside a Bundle, relative ``Type/id``, ``#contained``.

FHIR ids never enter the store: each referenced or defined Patient/Encounter gets a fresh dense
store id on first sight. Conditional references and unknown bundle-local targets resolve to None
(the interpreter counts the record as an orphan); a target that is never defined in the input
is found after reading and counted as an orphan too.
"""

from __future__ import annotations

from typing import Any

_HISTORY = "/_history/"


def _type_and_id(reference: str) -> tuple[str, str] | None:
    """``Type/id`` (relative or at the end of an absolute URL), without a ``_history`` suffix."""
    if _HISTORY in reference:
        reference = reference.split(_HISTORY, 1)[0]
    if "://" in reference:
        reference = reference.split("://", 1)[1]
        parts = reference.split("/")
        if len(parts) < 3:
            return None
        rtype, rid = parts[-2], parts[-1]
    else:
        rtype, _, rid = reference.partition("/")
    if not rtype[:1].isupper() or not rid:
        return None
    return rtype, rid


class References:
    """Store ids by FHIR identity, and the current resource's bundle and contained resources."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.medications: dict[str, dict[str, Any]] = {}
        self.bundle: dict[str, tuple[str, dict[str, Any]]] | None = None
        self.current_key = ""
        self.current: dict[str, Any] = {}

    # -- identity ------------------------------------------------------------------
    def _id(self, key: str) -> int:
        ident = self.ids.get(key)
        if ident is None:
            ident = self.ids[key] = len(self.ids) + 1
        return ident

    def key_of(self, resource: dict[str, Any], where: str, index: int | None = None) -> str:
        """``Type/id``; a resource without an id is named by where it was read (``where#index`` in a bundle)."""
        rid = resource.get("id")
        rtype = resource.get("resourceType")
        if isinstance(rid, str) and rid:
            return f"{rtype}/{rid}"
        return f"{rtype}/#{where}" if index is None else f"{rtype}/#{where}#{index}"

    def enter(self, resource: dict[str, Any], key: str) -> None:
        self.current = resource
        self.current_key = key

    # -- Context protocol ------------------------------------------------------------
    def self_id(self, to: str) -> int | None:
        return self._id(self.current_key)

    def _key(self, reference: Any) -> str | None:
        if not isinstance(reference, dict):
            return None
        ref = reference.get("reference")
        if not isinstance(ref, str) or not ref or "?" in ref or ref.startswith("#"):
            return None
        bundle = self.bundle
        if bundle is not None:
            local = bundle.get(ref)
            if local is not None:
                return local[0]
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            return None
        parsed = _type_and_id(ref)
        return f"{parsed[0]}/{parsed[1]}" if parsed else None

    def ref_id(self, reference: Any, to: str) -> int | None:
        key = self._key(reference)
        if key is None or not key.startswith(to) or key[len(to) : len(to) + 1] != "/":
            return None
        ident = self.ids.get(key)
        if ident is None:
            ident = self.ids[key] = len(self.ids) + 1
        return ident

    def deref(self, reference: Any) -> dict[str, Any] | None:
        if not isinstance(reference, dict):
            return None
        ref = reference.get("reference")
        if not isinstance(ref, str):
            return None
        if ref.startswith("#"):
            for item in self.current.get("contained") or ():
                if isinstance(item, dict) and item.get("id") == ref[1:]:
                    return item
            return None
        if self.bundle is not None and ref in self.bundle:
            return self.bundle[ref][1]
        key = self._key(reference)
        return self.medications.get(key) if key else None

    def remember_medication(self, key: str, resource: dict[str, Any]) -> None:
        """Keep only a Medication's code, for MedicationRequest.medicationReference."""
        if "code" in resource:
            self.medications[key] = {"code": resource["code"]}
