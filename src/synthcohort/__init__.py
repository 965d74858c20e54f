"""synthcohort: synthetic patient cohorts from OMOP CDM and FHIR R4 data."""

from __future__ import annotations

__version__ = "0.1.0"
