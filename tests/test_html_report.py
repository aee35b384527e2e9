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
from html.parser import HTMLParser
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
        modes=tuple(dataclasses.replace(m, verdict="drift") for m in checked.modes),
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
    # Per mode that moved, its differences and (folded) its error against float64; the overlay.
    assert page.count("<svg") == 2 * len(ran) + 1
    assert page.count("data:image/png;base64,") == 6  # the six scenes, inside the overlay
    assert "2 matched detections did not move at all." in page  # and are not drawn
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
    assert "max rel difference, current vs golden" in page
    assert "relative RMS error vs float64" not in page  # a user's model has no float64 twin


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


def test_identical_arrays_are_marked_not_drawn_as_bars(drifted: CheckResult) -> None:
    """A user's model's arrays, five identical and eight changed per mode: each changed one is a
    bar, each identical one a mark on the chart's "0" row, never a bar at the floor."""
    from test_render_user_model import FULL, KERAS

    from envaudit.result import ModelCheckInfo

    page = check_html.render(dataclasses.replace(
        drifted, subject=ModelCheckInfo(KERAS, FULL, "the model's outputs bit for bit")))
    for n, (_, members, _, _) in enumerate(drifted.by_mode()):
        bars = {int(i) for i in re.findall(rf'id="difference-{n}-bar-(\d+)"', page)}
        zero = {int(i) for i in re.findall(rf'id="difference-{n}-zero-(\d+)"', page)}
        assert bars == {i for i, s in enumerate(members) if not s.identical}
        assert zero == {i for i, s in enumerate(members) if s.identical}
        assert len(bars) == 8 and len(zero) == 5


def test_each_status_has_one_colour_and_its_word_everywhere(drifted: CheckResult) -> None:
    """The page's legend lists the statuses its pictures show, each beside its palette colour
    and word; the probes' cells carry their names as text."""
    from envaudit.render.palette import STATUS

    page = check_html.render(drifted)
    stages = re.search(r'<p class="legend" data-legend="stages">(.*?)</p>', page).group(1)
    shown = re.findall(r'data-status="(\w+)"><span class="sw" style="background:(#\w+)"></span>'
                       r" ([\w ]+)</span>", stages)
    assert {s for s, _, _ in shown} == {s.status for s in drifted.stages} == {"identical",
                                                                              "changed"}
    for status, colour, word in shown:
        assert (colour, word) == (STATUS[status].fill, STATUS[status].word)
    cells = page.replace("<wbr>", "")  # where a long name may wrap
    for probe in drifted.probes:
        assert re.search(rf'<td data-status="{probe.status}" [^>]*>{re.escape(probe.name)}<br>'
                         rf"<small>{STATUS[probe.status].word}</small>", cells), probe.name


def _screenshot_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "screenshot_report", Path(__file__).resolve().parents[1] / "tools" / "screenshot_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Sections(HTMLParser):
    """The DOM as chromium serialized it: per ``<section data-mode>``, its status, the tags in
    it and its text; the legends' entries."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: dict[str, dict] = {}
        self.legends: dict[str, set[str]] = {}
        self._section: dict | None = None
        self._legend: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and "data-mode" in a:
            self._section = {"status": a["data-status"], "tags": [], "text": ""}
            self.modes[a["data-mode"]] = self._section
        elif self._section is not None:
            self._section["tags"].append((tag, a.get("class", "")))
        if tag == "p" and "legend" in (a.get("class") or ""):
            self._legend = a["data-legend"]
            self.legends[self._legend] = set()
        elif self._legend and "data-status" in a:
            self.legends[self._legend].add(a["data-status"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        if tag == "p":
            self._legend = None

    def handle_data(self, data: str) -> None:
        if self._section is not None:
            self._section["text"] += data


def test_browser_shows_an_xla_only_check_as_one_moved_mode(xla_only_check: tuple[Path, dict],
                                                          tmp_path: Path) -> None:
    """A real check with ``XLA_ONLY`` set, opened in chromium: the DOM it builds has a section per
    mode marked with the mode's verdict, one line and no chart for eager and graph, a chart for
    xla, and a legend entry per status shown (the JSON says which)."""
    browser = _chromium()
    page, data = xla_only_check
    verdicts = {m["mode"]: m["verdict"] for m in data["modes"]}
    if verdicts.get("xla") in (None, "identical", "not_run"):
        pytest.skip(f"XLA_FLAGS=--xla_cpu_enable_fast_math=true moved nothing here: {verdicts}")
    assert verdicts["eager"] == verdicts["graph"] == "identical", verdicts
    proc = subprocess.run([*_screenshot_tool().chromium_args(browser, tmp_path / "profile"),
                           "--dump-dom", page.as_uri()], capture_output=True, text=True,
                          timeout=120, check=False)
    dom = _Sections()
    dom.feed(proc.stdout)
    assert {mode: s["status"] for mode, s in dom.modes.items()} == verdicts, proc.stderr[-2000:]
    for mode in ("eager", "graph"):
        section = dom.modes[mode]
        assert not any(tag in ("svg", "details") or "chart" in cls
                       for tag, cls in section["tags"]), section["tags"]
        stages = sum(1 for s in data["stages"] if s["mode"] == mode)
        assert " ".join(section["text"].split()) == (
            f"{mode}: identical, all {stages} stages bit-identical")
    pictures = [cls for tag, cls in dom.modes["xla"]["tags"] if cls.startswith("chart")]
    assert pictures == ["chart", "chart-float64"]  # the differences first, float64 second
    ran = {m["mode"] for m in data["modes"] if m["verdict"] is not None}
    assert dom.legends["stages"] == {s["status"] for s in data["stages"] if s["mode"] in ran}
    assert dom.legends["probes"] == {p["status"] for p in data["probes"]}
    assert dom.legends["stages"] == {"identical", "rounding"}  # what fast math does here
    assert page.stat().st_size <= MAX_BYTES
    assert not re.search(r"https?://", page.read_text(encoding="utf-8"))


def test_the_screenshot_tool_draws_a_small_png(xla_only_check: tuple[Path, dict],
                                              tmp_path: Path) -> None:
    """``tools/screenshot_report.py``, as the docs' picture is made: a PNG under 300 KB, cut to
    the page's content."""
    _chromium()
    page, _ = xla_only_check
    out = tmp_path / "report.png"
    assert _screenshot_tool().main([str(page), str(out), "--only-top", "detections"]) == 0
    import matplotlib.image

    picture = matplotlib.image.imread(out)
    assert out.stat().st_size < 300 * 1024
    assert 600 < picture.shape[0] < 6000 and picture.shape[1] == 1100
    # The page's flat colours survive the palette reduction exactly: the status colours shown.
    from envaudit.render.palette import STATUS

    colours = {tuple(c) for c in (picture[..., :3] * 255).round().astype(int).reshape(-1, 3)}
    for status in ("identical", "rounding"):
        fill = STATUS[status].fill
        assert tuple(int(fill[i:i + 2], 16) for i in (1, 3, 5)) in colours, status


# The colours a detection's box is drawn in (each kind's), as matplotlib writes them in the SVG.
BOX_STROKES = re.compile(r'<path [^>]*style="[^"]*stroke: (#00c853|#ff6d00|#d50000|#aa00ff|'
                         r'#ffd600)[;"]')


def _overlay_in_dom(browser: str, page: Path, profile: Path) -> tuple[dict[str, str], str, int]:
    """The overlay as chromium built the page: its ``data-*`` attributes, the text of the
    detections section above it, and the boxes its SVG draws (paths stroked in a detection
    kind's colour, the legend's samples left out)."""
    proc = subprocess.run([*_screenshot_tool().chromium_args(browser, profile), "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=False)
    dom = proc.stdout
    found = re.search(r'<div class="overlay" id="overlay"([^>]*)>(.*?)</div>', dom, re.DOTALL)
    assert found, proc.stderr[-2000:]
    attributes = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', found.group(1)))
    section = dom[dom.index('id="detections"'):found.start()]
    text = " ".join(re.sub(r"<[^>]+>", " ", section).split())
    picture = found.group(2).split('id="legend_1"')[0]
    return attributes, text, len(BOX_STROKES.findall(picture))


def test_browser_overlay_draws_no_box_for_sub_pixel_moves(xla_only_check: tuple[Path, dict],
                                                          tmp_path: Path) -> None:
    """The XLA-only check: its boxes moved by a few float32 roundings, far below a drawn pixel.
    The page draws none of them, says so with the largest move in pixels, names the mode, and
    explains the scene object the detector misses in the golden too."""
    from envaudit.render.overlay import panel_pixels

    browser = _chromium()
    page, data = xla_only_check
    d = data["detections"]
    if d["mode"] != "xla" or not d["changes"]:
        pytest.skip(f"XLA_FLAGS=--xla_cpu_enable_fast_math=true moved no box here: {d['mode']}")
    assert {c["kind"] for c in d["changes"]} == {"matched"}
    attributes, text, drawn = _overlay_in_dom(browser, page, tmp_path / "profile")
    assert attributes == {"data-boxes": "0", "data-mode": "xla"}
    assert drawn == 0
    assert "Detections of xla mode" in text
    largest = float(re.search(r"No detection moved visibly \(largest move ([-+.e\d]+) px at this"
                              r" size\): none is drawn\.", text).group(1))
    assert 0 < largest < 0.5
    assert largest == pytest.approx(d["max_box_delta"] * panel_pixels(6), rel=0.01)
    for missed in d["missed"]:  # the JSON's ground truth, said on the page
        assert f"x {missed['box'][1]:.2f}-{missed['box'][3]:.2f}" in text
    assert text.count("the detector misses it, not the environment") == sum(
        not m["found_now"] for m in d["missed"])


@pytest.fixture(scope="module")
def removed_check(golden_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> CheckResult:
    """A real check (eager mode) against a golden forged to hold one detection more than this
    environment finds: a box on a scene object the golden misses (the scenes' ground truth says
    where; a corner of image 4 where it misses none), so the check finds that box removed."""
    from forge import forge

    import envaudit
    from envaudit import store

    nms = store.load_bundle(golden_bundle).stages_by_mode["eager"]["nms"].copy()
    missed = envaudit.check(golden=str(golden_bundle), confirm=False,
                            modes=["eager"]).detections.missed or ()
    image, box, cls = next(((m.image, m.box, m.object_class) for m in missed),
                           (4, (0.0, 0.0, 0.2, 0.2), 0))
    nms[image, int(np.flatnonzero(nms[image, :, 4] == 0)[0])] = (*box, 0.75, cls)
    forged = forge(golden_bundle, tmp_path_factory.mktemp("removed") / "golden",
                   stages={"nms": nms})
    return envaudit.check(golden=str(forged), confirm=False, modes=["eager"])


def test_browser_overlay_draws_a_removed_box(removed_check: CheckResult, tmp_path: Path) -> None:
    browser = _chromium()
    d = removed_check.detections
    assert (d.mode, d.removed, d.added, d.class_changed) == ("eager", 1, 0, 0)
    page = tmp_path / "removed.html"
    page.write_text(check_html.render(removed_check), encoding="utf-8")
    attributes, text, drawn = _overlay_in_dom(browser, page, tmp_path / "profile")
    assert attributes == {"data-boxes": "1", "data-mode": "eager"}
    assert drawn == 1  # the removed golden box, in the removed kind's colour
    assert "Drawn: 1 changed detection (1 box)." in text
    assert "Detections of eager mode" in text
    from envaudit.render.formatting import class_label

    label = f"removed {class_label(d.changes[0].golden_class)} (eager)"  # on the box, in the SVG
    assert re.search(rf"<text [^>]*>{re.escape(label)}</text>", page.read_text()), label


def test_a_mode_that_did_not_run_is_one_line_marked_not_run(drifted: CheckResult) -> None:
    """Each mode's section carries its mode and its verdict (``not_run`` where it could not run);
    a mode that did not run is one line with the reason and no chart."""
    modes = tuple(dataclasses.replace(m, verdict=None, first_divergence=None, detections=None,
                                      not_run="XLA <is> unavailable here")
                  if m.mode == "xla" else m for m in drifted.modes)
    page = check_html.render(dataclasses.replace(drifted, modes=modes))
    sections = dict(re.findall(r'<section class="mode" id="mode-\d" data-mode="(\w+)" '
                               r'data-status="(\w+)">', page))
    assert sections == {"eager": "drift", "graph": "drift", "xla": "not_run"}
    xla = page[page.index('data-mode="xla"'):]
    xla = xla[: xla.index("</section>")]
    assert "<svg" not in xla and "XLA &lt;is&gt; unavailable here" in xla
    assert page.count('<div class="chart"') == 2
