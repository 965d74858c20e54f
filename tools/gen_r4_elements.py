"""Write src/synthcohort/mappings/r4_elements.json: the element names of every resource type the read rules name.

Usage: python tools/gen_r4_elements.py   (after changing the rules or upgrading fhir.resources)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from synthcohort.mappings.conformance import ELEMENTS_FILE, model_elements  # noqa: E402
from synthcohort.mappings.reading import mapped_resource_types  # noqa: E402

TARGET = ROOT / "src" / "synthcohort" / "mappings" / ELEMENTS_FILE


def render() -> str:
    elements = {}
    for rtype in sorted(mapped_resource_types()):
        names = model_elements(rtype)
        if names is None:
            raise SystemExit(f"fhir.resources has no R4B model for {rtype}")
        elements[rtype] = sorted(names)
    return json.dumps(elements, indent=1) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
