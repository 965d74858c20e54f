"""Connectors: one sub-package per standard, each a reader and a writer of cohort stores."""
