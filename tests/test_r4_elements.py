"""The packaged R4 element names equal the fhir.resources models (regenerate with tools/gen_r4_elements.py)."""

from __future__ import annotations

import importlib.util

from synthcohort.mappings.conformance import known_elements, model_elements, unknown_elements
from synthcohort.mappings.reading import mapped_resource_types
from tests.conftest import ROOT


def test_packaged_elements_match_the_models() -> None:
    spec = importlib.util.spec_from_file_location("gen_r4_elements", ROOT / "tools" / "gen_r4_elements.py")
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.TARGET.read_text("utf-8") == tool.render(), "run python tools/gen_r4_elements.py"
    for rtype in mapped_resource_types():
        assert known_elements(rtype) == model_elements(rtype), rtype


def test_types_not_packaged_still_come_from_the_models() -> None:
    assert known_elements("Claim") == model_elements("Claim")
    assert known_elements("NoSuchType") is None
    assert unknown_elements({"resourceType": "Observation", "status": "final", "valueFoo": 1}) == ["valueFoo"]
