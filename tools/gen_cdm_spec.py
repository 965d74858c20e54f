"""Generate src/synthcohort/data/cdm54.json from the official OHDSI CDM v5.4 field-level CSV.

Usage: python tools/gen_cdm_spec.py [PATH_TO_OMOP_CDMv5.4_Field_Level.csv]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from synthcohort import cdm

# The tables the package keeps (clinical, metadata, vocabulary), as synthcohort.cdm names them.
TABLES_IN_SCOPE = (*cdm.CLINICAL_TABLES, *cdm.METADATA_TABLES, *cdm.VOCABULARY_TABLES)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT.parent / "shared" / "spec" / "omop-cdm-5.4" / "OMOP_CDMv5.4_Field_Level.csv"
OUT = ROOT / "src" / "synthcohort" / "data" / "cdm54.json"


def build(spec_csv: Path) -> dict[str, object]:
    tables: dict[str, dict[str, object]] = {t: {"columns": []} for t in TABLES_IN_SCOPE}
    with spec_csv.open(encoding="utf-8", errors="replace", newline="") as fh:
        for row in csv.DictReader(fh):
            table = row["cdmTableName"].strip().lower()
            if table not in tables:
                continue
            column = {
                "name": row["cdmFieldName"].strip().lower(),
                "type": row["cdmDatatype"].strip().lower(),
                "required": row["isRequired"].strip() == "Yes",
                "primary_key": row["isPrimaryKey"].strip() == "Yes",
            }
            if row["isForeignKey"].strip() == "Yes":
                column["references"] = [
                    row["fkTableName"].strip().lower(),
                    row["fkFieldName"].strip().lower(),
                ]
            tables[table]["columns"].append(column)  # type: ignore[union-attr]
    return {"cdm_version": "5.4", "source": "OHDSI OMOP_CDMv5.4_Field_Level.csv", "tables": tables}


def main() -> None:
    spec = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SPEC
    OUT.write_text(json.dumps(build(spec), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
