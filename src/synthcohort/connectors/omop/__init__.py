"""OMOP CDM v5.4 connector: CSV/Parquet folders and SQLAlchemy databases, in and out."""
