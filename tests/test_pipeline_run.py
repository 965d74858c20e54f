"""``synthcohort run``: one config, every stage, a run record; Ctrl-C during export leaves nothing; reruns match."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synthcohort.pipeline.config import from_dict
from synthcohort.pipeline.progress import NullBar, StageBar
from synthcohort.pipeline.run_record import MANIFEST_NAME
from synthcohort.pipeline.runner import run

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCOHORT_KEY_FILE", str(tmp_path / "key" / "installation.key"))


def person_ids_file(synthea_1k: Path, folder: Path, n: int) -> Path:
    """The first ``n`` person ids of the source (a small cohort keeps the test fast)."""
    lines = (synthea_1k / "PERSON.csv").read_text(encoding="utf-8").splitlines()[1 : n + 1]
    path = folder / "persons.txt"
    path.write_text("".join(line.split(",")[0] + "\n" for line in lines), encoding="utf-8")
    return path


def pipeline(synthea_1k: Path, folder: Path, outputs: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "run": {"workdir": "work", "outdir": "out"},
        "source": {"kind": "omop", "path": str(synthea_1k)},
        "cohort": {"person_ids": str(person_ids_file(synthea_1k, folder, 110))},
        "model": {"seed": 5},
        "generate": {"n": 30, "seed": 6},
        "evaluate": {"enabled": False},
        "output": outputs,
    }
    raw.update(sections)
    return raw


def toml(raw: dict[str, Any]) -> str:
    """A tiny TOML writer for the shapes used here (tables, arrays of tables, scalars, lists)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return str(v)

    out = []
    for name, section in raw.items():
        for table in section if isinstance(section, list) else [section]:
            out.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            out += [f"{k} = {value(v)}" for k, v in table.items()]
            out.append("")
    return "\n".join(out)


def manifest(outdir: Path) -> dict[str, Any]:
    return json.loads((outdir / MANIFEST_NAME).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def hashes(record: dict[str, Any]) -> list[dict[str, str]]:
    return [{f["path"]: f["sha256"] for f in out["files"]} for out in record["outputs"]]


class _InterruptingBars:
    """A progress display that raises Ctrl-C on the ``nth`` bar called ``stage``, after ``after`` advances."""

    def __init__(self, stage: str, nth: int, after: int) -> None:
        self.stage, self.nth, self.after = stage, nth, after
        self.seen, self.fired = 0, False

    @contextlib.contextmanager
    def __call__(self, description: str, total: int | None = None, unit: str = "rows") -> Iterator[StageBar]:
        outer = self

        class Bar(NullBar):
            def advance(self, n: int = 1, description: str | None = None) -> None:
                super().advance(n, description)
                if self.done >= outer.after and not outer.fired:
                    outer.fired = True
                    raise KeyboardInterrupt

        if description == self.stage:
            self.seen += 1
        yield Bar() if description == self.stage and self.seen == self.nth else NullBar()


def test_interrupt_during_export_leaves_nothing_and_rerun_gives_same_bytes(synthea_1k: Path, tmp_path: Path) -> None:
    def config(out: str) -> Any:
        outputs = [
            {"kind": "omop", "path": f"{out}/csv", "format": "csv"},
            {"kind": "fhir", "path": f"{out}/fhir", "format": "ndjson"},
        ]
        places = {"workdir": "work", "outdir": out, "validate": False}  # validation: see the end-to-end test
        return from_dict(pipeline(synthea_1k, tmp_path, outputs, run=places), tmp_path)

    first = run(config("first"))
    assert first.status == "succeeded"

    # Ctrl-C while the FHIR output is written: the CSV folder is complete by then, yet nothing may appear
    bars = _InterruptingBars("export fhir", nth=1, after=1)
    with pytest.raises(KeyboardInterrupt):
        run(config("second"), bars=bars)
    assert bars.fired
    second = tmp_path / "second"
    assert sorted(p.name for p in second.iterdir()) == [MANIFEST_NAME], "an output or a temporary file was left"
    record = manifest(second)
    assert record["status"] == "interrupted" and record["stages"]["export"]["status"] == "interrupted"
    assert record["outputs"] == []

    # the rerun with the same seeds writes the same bytes as the first run
    rerun = run(config("second"))
    assert rerun.status == "succeeded"
    assert hashes(manifest(second)) == hashes(manifest(tmp_path / "first"))
    assert manifest(second)["run_id"] == manifest(tmp_path / "first")["run_id"]
