"""Bad input 32: SIGINT during fit, generate and export -> exit 130, temp data removed, nothing under a final name.

The command runs in a subprocess; a wrapper slows one step down (after real data has been written to the temporary
place) and prints a marker, then the test sends SIGINT as a user's Ctrl-C would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from synthcohort.generator.split import split_paths
from tests.bad_inputs.inputs import leftovers

ROOT = Path(__file__).resolve().parents[2]

# target -> python patch applied before the CLI runs: it announces the slow step and sleeps inside it
PATCHES = {
    "fit": (
        "import synthcohort.generator.native as m\n"
        "orig = m.NativeEngine._fit\n"
        "def slow(self, *a, **k):\n"
        "    orig(self, *a, **k)\n"
        "    print('MARK', flush=True); time.sleep(60)\n"
        "m.NativeEngine._fit = slow\n"
    ),
    "generate": (
        "import synthcohort.generator.writer as m\n"
        "orig = m.SyntheticWriter.write\n"
        "def slow(self, *a, **k):\n"
        "    n = orig(self, *a, **k)\n"
        "    print('MARK', flush=True); time.sleep(60)\n"
        "    return n\n"
        "m.SyntheticWriter.write = slow\n"
    ),
    "export": (
        "import synthcohort.connectors.omop.folder_writer as m\n"
        "orig = m.iter_tables\n"
        "def slow(*a, **k):\n"
        "    for i, item in enumerate(orig(*a, **k)):\n"
        "        yield item\n"
        "        if i == 3:\n"
        "            print('MARK', flush=True); time.sleep(60)\n"
        "m.iter_tables = slow\n"
    ),
}


def _interrupt(step: str, argv: list[str], cwd: Path) -> tuple[int, str]:
    # A shell running CI in the background starts its children with SIGINT ignored; a user's
    # terminal does not. Restore Python's own handler so the test sends what a Ctrl-C sends.
    code = (
        "import signal, sys, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + PATCHES[step]
        + "from synthcohort.cli.main import main\nsys.argv = ['synthcohort', *sys.argv[1:]]\nmain()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SYNTHCOHORT_KEY_FILE": str(cwd / "installation.key")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "MARK", (line, proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("step", ["fit", "generate", "export"])
def test_sigint_leaves_nothing_under_a_final_name(step: str, small_model: tuple[Path, Path], tmp_path: Path) -> None:
    cohort, model = small_model
    work = tmp_path / "work"
    work.mkdir()
    if step == "fit":
        local = work / "cohort.duckdb"
        shutil.copy(cohort, local)
        argv = ["fit", str(local), "-o", str(work / "model"), "--seed", "3"]
        finals = [work / "model", *split_paths(local, 0.2, 3)]
    elif step == "generate":
        argv = ["generate", str(model), "-n", "60", "-o", str(work / "synth.duckdb"), "--seed", "1"]
        finals = [work / "synth.duckdb"]
    else:
        argv = ["export", str(cohort), "omop", str(work / "omop-out")]
        finals = [work / "omop-out"]
    code, err = _interrupt(step, argv, work)
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert [p for p in finals if p.exists()] == []
    assert leftovers(work) == []
    assert sorted(p.name for p in work.iterdir()) == (["cohort.duckdb"] if step == "fit" else []) + (
        ["installation.key"] if (work / "installation.key").exists() else []
    )
