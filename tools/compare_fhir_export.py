"""Check that the FHIR writer of this tree writes what the writer of an earlier commit wrote.

    python tools/compare_fhir_export.py STORE.duckdb [--rev 01571cc] [--seed 5] [--format ndjson|bundle]

Both writers run on the same store and seed (the earlier one from `git archive REV src`, in its
own process). Ids are a function of (seed, table, row key); if REV derived them with another
hash, every id REV wrote is first replaced by the id this tree derives for the same row, then
the files must be byte-identical. Prints what differs and exits 1 if anything does.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

WRITE = """
import json, sys
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.writer import write_fhir
store, out, fmt, seed = sys.argv[1:5]
with CohortStore.open(store) as s:
    print(json.dumps(write_fhir(s, out, fmt=fmt, seed=seed).to_dict()))
"""


def _blake2b_uuid(text: str) -> str:
    """The id function of the writer before ids were computed in SQL."""
    h = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


def _write(src: Path, store: Path, out: Path, fmt: str, seed: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src), "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "")}
    done = subprocess.run(
        [sys.executable, "-c", WRITE, str(store), str(out), fmt, seed], env=env, check=True, capture_output=True
    )
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _id_map(store: Path, seed: str, old_run_id: str, new_run_id: str) -> dict[str, str]:
    """Old id -> new id, for every id either writer derives from the store."""
    from synthcohort import cdm
    from synthcohort.cohort import CohortStore
    from synthcohort.connectors.fhir.ids import fhir_uuid
    from synthcohort.mappings.rules import all_rules

    out = {old_run_id: new_run_id}
    for suffix in ("device", "bundle"):
        out[_blake2b_uuid(f"{old_run_id}|{suffix}")] = fhir_uuid(f"{new_run_id}|{suffix}")
    with CohortStore.open(store) as s:
        tables = [t for t, r in all_rules().items() if r.write is not None]
        for table in [*tables, "bundle"]:
            key = "person_id" if table == "bundle" else cdm.table(table).primary_key or "person_id"
            source = "person" if table == "bundle" else table
            for (value,) in s.con.execute(f'SELECT "{key}" FROM "{source}"').fetchall():
                out[_blake2b_uuid(f"{seed}|{table}|{value}")] = fhir_uuid(f"{seed}|{table}|{value}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--rev", default="01571cc")
    parser.add_argument("--seed", default="5")
    parser.add_argument("--format", default="ndjson", choices=("ndjson", "bundle"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        tmp = Path(work)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "src"], check=True, capture_output=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp / "old", filter="data")
        old = _write(tmp / "old" / "src", args.store, tmp / "out-old", args.format, args.seed)
        new = _write(ROOT / "src", args.store, tmp / "out-new", args.format, args.seed)
        ids = _id_map(args.store, args.seed, str(old.pop("run_id")), str(new.pop("run_id")))
        problems = [] if old == new else [f"reports differ: {old} != {new}"]
        old_files = sorted(p.relative_to(tmp / "out-old") for p in (tmp / "out-old").rglob("*") if p.is_file())
        new_files = sorted(p.relative_to(tmp / "out-new") for p in (tmp / "out-new").rglob("*") if p.is_file())
        if old_files != new_files:
            problems.append(f"files differ: {set(old_files) ^ set(new_files)}")
        size = 0
        for name in old_files:
            text = (tmp / "out-old" / name).read_text()
            text = _UUID.sub(lambda m: ids.get(m.group(0), m.group(0)), text)
            got = (tmp / "out-new" / name).read_text() if (tmp / "out-new" / name).is_file() else ""
            size += len(got)
            if text != got:
                at = next(i for i, (x, y) in enumerate(zip(text, got, strict=False)) if x != y) if got else 0
                problems.append(f"{name}: differs at {at}: {text[at - 80 : at + 80]!r} vs {got[at - 80 : at + 80]!r}")
    print(json.dumps({"files": len(old_files), "chars": size, "differences": problems[:10]}, indent=2))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
