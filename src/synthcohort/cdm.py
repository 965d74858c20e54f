"""The OMOP CDM v5.4 table spec (generated from the official CSV) and the hub's column policy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import pyarrow as pa
import pyarrow.csv as pacsv

CLINICAL_TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
)
# The order clinical tables are read and written in: persons before what points at them, deaths before the
# events checked against them.
LOAD_ORDER = ("person", "death", *(t for t in CLINICAL_TABLES if t not in ("person", "death")))
VOCABULARY_TABLES = ("concept", "concept_ancestor", "concept_relationship", "vocabulary")
METADATA_TABLES = ("cdm_source",)

# Event tables: (table, concept column, start date column, end date column or None).
EVENT_TABLES: dict[str, tuple[str, str, str | None]] = {
    "visit_occurrence": ("visit_concept_id", "visit_start_date", "visit_end_date"),
    "condition_occurrence": ("condition_concept_id", "condition_start_date", "condition_end_date"),
    "drug_exposure": ("drug_concept_id", "drug_exposure_start_date", "drug_exposure_end_date"),
    "procedure_occurrence": ("procedure_concept_id", "procedure_date", "procedure_end_date"),
    "measurement": ("measurement_concept_id", "measurement_date", None),
    "observation": ("observation_concept_id", "observation_date", None),
}

# Columns that never enter the cohort store: identifiers of people, places and staff,
# links to tables out of scope, and free text.
_NEVER_STORED_NAMES = frozenset(
    {
        "location_id",
        "provider_id",
        "care_site_id",
        "visit_detail_id",
        "preceding_visit_occurrence_id",
        "admitted_from_concept_id",
        "discharged_to_concept_id",
        "sig",
        "lot_number",
        "stop_reason",
        "value_as_string",
        "measurement_event_id",
        "observation_event_id",
        "meas_event_field_concept_id",
        "obs_event_field_concept_id",
        "unique_device_id",
    }
)

# Source values a reader may fill only with a code of a known code system (the FHIR reader
# knows the system of every coding). The OMOP reader never selects them: an OMOP source
# value may hold a hospital id or free text and nothing says which.
CODE_SOURCE_VALUES: dict[str, frozenset[str]] = {
    "condition_occurrence": frozenset({"condition_source_value"}),
    "drug_exposure": frozenset({"drug_source_value"}),
    "procedure_occurrence": frozenset({"procedure_source_value"}),
    "measurement": frozenset({"measurement_source_value", "unit_source_value"}),
    "observation": frozenset({"observation_source_value", "unit_source_value"}),
}

_DUCKDB_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # CDM datatype as in the spec: integer, float, date, datetime, varchar(n)
    required: bool
    primary_key: bool
    references: tuple[str, str] | None

    @property
    def duckdb_type(self) -> str:
        return _DUCKDB_TYPES.get(self.type, "VARCHAR")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def primary_key(self) -> str | None:
        return next((c.name for c in self.columns if c.primary_key), None)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name}.{name}")

    @property
    def stored_columns(self) -> list[str]:
        """Columns the cohort store may hold; every other column stays NULL."""
        if self.name not in CLINICAL_TABLES:
            return self.column_names
        allowed_codes = CODE_SOURCE_VALUES.get(self.name, frozenset())
        return [
            c.name
            for c in self.columns
            if c.name not in _NEVER_STORED_NAMES and (not c.name.endswith("_source_value") or c.name in allowed_codes)
        ]

    @property
    def omop_readable_columns(self) -> list[str]:
        """Columns the OMOP reader selects from a CDM database (an allow-list)."""
        codes = CODE_SOURCE_VALUES.get(self.name, frozenset())
        return [c for c in self.stored_columns if c not in codes]


@cache
def cdm_tables() -> dict[str, Table]:
    """All tables in scope, in dependency order (person first), from the packaged spec."""
    raw = json.loads(resources.files("synthcohort.data").joinpath("cdm54.json").read_text("utf-8"))
    tables: dict[str, Table] = {}
    for name, spec in raw["tables"].items():
        columns = tuple(
            Column(
                name=c["name"],
                type=c["type"],
                required=c["required"],
                primary_key=c["primary_key"],
                references=tuple(c["references"]) if "references" in c else None,  # type: ignore[arg-type]
            )
            for c in spec["columns"]
        )
        tables[name] = Table(name, columns)
    return tables


def table(name: str) -> Table:
    return cdm_tables()[name]


@cache
def base_concepts() -> pa.Table:
    """OMOP's own fixed concepts (No matching concept, genders, races, visit and type concepts, CDM version)."""
    raw = resources.files("synthcohort.data").joinpath("omop_base_concepts.csv").read_bytes()
    types = {c.name: pa.int64() if c.type == "integer" else pa.string() for c in table("concept").columns}
    types.update(valid_start_date=pa.date32(), valid_end_date=pa.date32())
    opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    return pacsv.read_csv(pa.BufferReader(raw), convert_options=opts)
