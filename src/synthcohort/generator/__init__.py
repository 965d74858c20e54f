"""Synthetic cohort generators: the engine contract, the native engine, the SDV engine, safeguards."""

from __future__ import annotations

from synthcohort.generator.base import ENGINES, Engine, engine_class, load_model

__all__ = ["ENGINES", "Engine", "engine_class", "load_model"]
