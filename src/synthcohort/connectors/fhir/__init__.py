"""FHIR R4 connector: Bundle and Bulk NDJSON reader, NDJSON and transaction-Bundle writer."""
