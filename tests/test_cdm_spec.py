"""The packaged CDM v5.4 spec equals what the official OHDSI files say."""

from __future__ import annotations

import importlib.util
import re

from synthcohort import cdm
from tests.conftest import ROOT, shared_path


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cdm_spec", ROOT / "tools" / "gen_cdm_spec.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packaged_spec_matches_official_field_level_csv() -> None:
    official = shared_path("spec", "omop-cdm-5.4", "OMOP_CDMv5.4_Field_Level.csv")
    built = _generator().build(official)
    for name, table in cdm.cdm_tables().items():
        expected = built["tables"][name]["columns"]
        assert [c["name"] for c in expected] == table.column_names, name
        for col, exp in zip(table.columns, expected, strict=True):
            assert col.type == exp["type"]
            assert col.required == exp["required"]
            assert col.primary_key == exp["primary_key"]
            assert col.references == (tuple(exp["references"]) if "references" in exp else None)


def test_packaged_spec_matches_official_postgres_ddl() -> None:
    ddl = shared_path(
        "spec",
        "omop-cdm-5.4",
        "ddl",
        "postgresql",
        "OMOP_CDMv5.4_postgresql_5.4_ddl.sql".replace("OMOP_CDMv5.4_", "OMOPCDM_"),
    )
    text = ddl.read_text(encoding="utf-8")
    for name, table in cdm.cdm_tables().items():
        block = re.search(rf"CREATE TABLE @cdmDatabaseSchema\.{name} \((.*?)\);", text, re.S | re.I)
        assert block, name
        cols = [line.strip().split()[0] for line in block.group(1).strip().splitlines() if line.strip()]
        assert cols == table.column_names, name
        required = {line.strip().split()[0] for line in block.group(1).splitlines() if "NOT NULL" in line}
        assert required == {c.name for c in table.columns if c.required}, name


def test_privacy_allow_list_excludes_identifiers_and_free_text() -> None:
    person = cdm.table("person")
    assert "person_source_value" not in person.stored_columns
    assert "location_id" not in person.stored_columns
    drug = cdm.table("drug_exposure")
    assert not {"sig", "lot_number", "stop_reason"} & set(drug.stored_columns)
    assert "drug_source_value" in drug.stored_columns  # a code, filled only by readers that know the system
    assert "drug_source_value" not in drug.omop_readable_columns
    assert "visit_source_value" not in cdm.table("visit_occurrence").stored_columns
    assert "value_as_string" not in cdm.table("observation").stored_columns
