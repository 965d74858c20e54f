"""The HTML report renders in a real browser (headless Chromium): a non-blank page of the expected size."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from synthcohort.evaluation.report import write_report
from tests.evaluation.test_known_cases import _evaluate

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.shared_data
def test_report_screenshot(eval_stores: dict[str, Path], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium to check the report in a browser")
    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell to run tools/screenshot_report.sh")
    result = _evaluate(eval_stores["real"], eval_stores["third"])
    report = tmp_path / "report.html"
    write_report(result, report)
    png = tmp_path / "report.png"
    subprocess.run(
        ["sh", str(ROOT / "tools" / "screenshot_report.sh"), str(report), str(png), "3000"],
        check=True,
        timeout=120,
        capture_output=True,
    )
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1100, 3000)
        grey = im.convert("L")
        lo, hi = grey.getextrema()
        assert hi - lo > 100  # text and plots drawn, not a blank page
        # the top of the page holds the title and the gate table: many dark pixels
        top = grey.crop((0, 0, 1100, 1200))
        dark = sum(top.histogram()[:100])
        assert dark > 5000
