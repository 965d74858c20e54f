"""Declarative FHIR R4 <-> OMOP CDM v5.4 rules (data files), their interpreter and vocabulary resolution."""
