"""A disk-room check before sampling: refuse a run that cannot fit where it would be written."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from synthcohort.errors import TargetError
from synthcohort.text import plural

# Bytes a stored clinical row takes in a DuckDB store, on the generous side.
BYTES_PER_ROW = 40


def check_room(record: dict[str, Any], n: int, output: str | Path) -> None:
    rows_per_person = float(record.get("rows_per_person", 300.0))
    need = int(n * max(rows_per_person, 1.0) * BYTES_PER_ROW)
    folder = Path(output).resolve().parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        raise TargetError(
            f"writing {plural(n, 'person')} needs about {need / 1e9:,.1f} GB "
            f"and {folder} has {free / 1e9:,.1f} GB free",
            "ask for fewer persons or write to a larger disk",
        )
