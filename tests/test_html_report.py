"""``check_html.render``: one self-contained page, every stranger's string escaped, and its charts
and detection overlays actually drawn when a real browser (Debian's chromium) opens it.

The results are real: a check of the session's golden bundle run in this process, and the same
result with visibly moved, added, removed and class-changed detections, grown stage errors and a
hostile environment change put in with ``dataclasses.replace`` (a drift this machine cannot be
made to produce on demand).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from envaudit.attribute.types import Cause, Unreachable
from envaudit.compare.types import DetectionChange, DetectionDiff
from envaudit.fingerprint.types import Change
from envaudit.render import check_html
from envaudit.result import CheckResult

HOSTILE = "<script>alert(1)</script>"
MAX_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def checked(golden_bundle: Path) -> CheckResult:
    """A real check of the golden bundle, in this process (TensorFlow on the CPU)."""
    import envaudit

    return envaudit.check(golden=str(golden_bundle), confirm=False)


def _shifted(box: tuple[float, float, float, float], dy: float, dx: float) -> tuple[
        float, float, float, float]:
    return (box[0] + dy, box[1] + dx, box[2] + dy, box[3] + dx)


@pytest.fixture(scope="module")
def drifted(checked: CheckResult) -> CheckResult:
    """``checked`` with a drift drawn into it: every kind of detection change, stage errors grown
    tenfold from ``block2`` on, a hostile fingerprint change and an unreachable one."""
    box = (0.2, 0.2, 0.6, 0.6)
    changes = (
        DetectionChange("matched", 0, 1, 1, 0.9, 0.88, box, _shifted(box, 0.08, 0.1), 0.5, 0.2,
                        False),
        DetectionChange("added", 1, None, 2, None, 0.51, None, (0.1, 0.5, 0.4, 0.9), None, 0.001,
                        True),
        DetectionChange("removed", 2, 0, None, 0.52, None, (0.5, 0.1, 0.9, 0.5), None, None,
                        0.3, False),
        DetectionChange("class_changed", 4, 1, 2, 0.7, 0.69, box, box, 1.0, 0.0005, True),
    )
    detections = DetectionDiff(golden=5, current=5, matched=3, added=1, removed=1,
                               class_changed=1, max_score_delta=0.02, min_iou=0.5,
                               max_box_delta=0.1, changes=changes, noise=0.002)
    grown = tuple(dataclasses.replace(s, identical=False, status="changed", max_rel=1e-3,
                                      current_error=(s.golden_error or 1e-7) * 10)
                  if i % 13 >= 5 else s for i, s in enumerate(checked.stages))
    hostile = Change(f"env.{HOSTILE}", HOSTILE, f"$x$ {HOSTILE}", "env_vars", True)
    return dataclasses.replace(
        checked, verdict="drift", headline=f"Drift {HOSTILE}", stages=grown,
        detections=detections, fingerprint_changes=(hostile,),
        causes=(Cause(f"env.X: {HOSTILE}", "likely", (f"because {HOSTILE}",)),),
        cannot_affect=(Unreachable(f"gpu {HOSTILE}", "gpu.driver", f"ran on CPU {HOSTILE}"),),
        golden_fingerprint=None)


def test_html_is_one_small_self_contained_page(drifted: CheckResult) -> None:
    start = time.perf_counter()
    page = check_html.render(drifted)
    seconds = time.perf_counter() - start
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert len(page.encode()) <= MAX_BYTES
    for reference in ("http://", "https://", 'src="//', "<script", "<link", "@import"):
        assert reference not in page, reference
    assert not re.search(r"url\((?!#)", page)  # only the SVGs' own clip paths
    ran = [m for m in drifted.modes if m.not_run is None]
    assert page.count('<div class="chart"') == len(ran) == 3
    assert page.count("<svg") == len(ran) + 1  # a chart per mode and the detection overlay
    assert page.count("data:image/png;base64,") == 6  # the six scenes, inside the overlay
    assert "not drawn" in page  # unchanged matched detections are not in the result
    assert "The golden fingerprint is not part of this result." in page
    assert "<summary>current fingerprint (whole)</summary>" in page
    assert seconds < 5, seconds  # 0.3-0.5 s on a developer machine; generous for a loaded CI


def test_every_string_from_the_result_is_escaped(drifted: CheckResult) -> None:
    page = check_html.render(drifted)
    assert HOSTILE not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for where in (f"Drift {escaped}", f"env.{escaped}", f"$x$ {escaped}", f"because {escaped}",
                  f"ran on CPU {escaped}"):
        assert where in page, where


def test_html_is_deterministic(drifted: CheckResult) -> None:
    assert check_html.render(drifted) == check_html.render(drifted)


def test_user_model_result_charts_max_rel(drifted: CheckResult) -> None:
    from test_render_user_model import FULL, KERAS

    from envaudit.result import ModelCheckInfo

    page = check_html.render(dataclasses.replace(
        drifted, subject=ModelCheckInfo(KERAS, FULL, "the model's outputs bit for bit")))
    assert "max relative difference" in page
    assert "relative RMS error vs float64" not in page


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    return found


def _screenshot(browser: str, page: Path, folder: Path, name: str) -> np.ndarray:
    import matplotlib.image

    shot = folder / f"{name}.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={folder / ('profile-' + name)}",
         f"--screenshot={shot}", "--window-size=1200,6000", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), proc.stderr[-2000:]
    return matplotlib.image.imread(shot)[..., :3]


def test_browser_draws_the_charts_and_the_overlays(drifted: CheckResult,
                                                  tmp_path: Path) -> None:
    """Screenshots of the page as is, with its charts hidden and with its overlay hidden (CSS
    ``visibility: hidden`` keeps the layout, so the pixels line up): what each hiding erased is
    what the browser drew for it. The overlay must show the scenes (many colours) and the boxes
    (the moved box's orange)."""
    browser = _chromium()
    page = check_html.render(drifted)
    variants = {"full": "", "no-charts": ".chart svg{visibility:hidden}",
                "no-overlay": ".overlay svg{visibility:hidden}"}
    shots = {}
    for name, css in variants.items():
        path = tmp_path / f"{name}.html"
        path.write_text(page.replace("</style>", css + "</style>", 1))
        shots[name] = _screenshot(browser, path, tmp_path, name)
    full = shots["full"]
    assert full.std() > 0.05  # not a blank page

    charts = np.abs(full - shots["no-charts"]).max(axis=2) > 0.1
    rows = np.flatnonzero(charts.any(axis=1))
    assert charts.sum() > 3 * 5000, charts.sum()  # three charts' lines, markers and labels
    # Three separate charts: the erased rows fall into (at least) three bands with gaps between.
    assert (np.diff(rows) > 40).sum() >= 2

    overlay = np.abs(full - shots["no-overlay"]).max(axis=2) > 0.1
    assert overlay.sum() > 6 * 3000, overlay.sum()  # six scenes of 100x100 pixels, scaled up
    assert rows.max() < np.flatnonzero(overlay.any(axis=1)).min()  # the charts come first
    drawn = (full[overlay] * 255).round().astype(int)
    assert len({tuple(p) for p in drawn[::7]}) > 200  # the scenes' pixels, not a flat fill
    orange = np.array([0xFF, 0x6D, 0x00])  # charts.DETECTION_STYLE["moved"]
    assert (np.abs(drawn - orange).max(axis=1) < 40).sum() > 50  # the moved box is drawn
