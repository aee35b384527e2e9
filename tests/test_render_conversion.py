"""The conversion gap and the runtime records in every check format: text, Markdown, HTML and
JUnit say how far each converted model is from the graph model of the same run (with the
precision an optimized mode gives up said as expected), and what converted and ran it against
what the golden recorded; JUnit still fails exactly when the exit code is 1, and a runtime string
from a bundle is escaped in every format.

Real checks: a golden recorded in graph, tflite and tflite-float16 modes (no training steps),
checked here in this process (every converted model bit-identical to its golden), and in one
fresh process with LiteRT's reference kernels (``ENVAUDIT_TFLITE_KERNELS=reference``, which
moves the converted modes on this machine while graph mode stays bit-identical), plain and
``--strict``, writing every format. Where the reference kernels move nothing on a machine, the
tests that need a move are skipped with the reason.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env
from render_child import every_format
from rich.console import Console
from test_json_docs import section, undocumented
from test_render_check import make_result
from test_render_user_model import make_result as model_result

from envaudit.compare.conversion import measure
from envaudit.render import check_html, check_json, check_junit, check_md, check_text
from envaudit.runtimes import RuntimeCheck

CONVERTED = ("tflite", "tflite-float16")
FLOAT16_WORDS = "loses precision (expected: its weights are stored in float16)"
SAME_MODEL = "the converter wrote the golden's model, byte for byte"


def text_of(result, verbose: bool = False) -> str:
    console = Console(width=140, no_color=True, record=True, file=open("/dev/null", "w"))
    console.print(check_text.render(result, verbose))
    return console.export_text()


def strict_json(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def golden(tflite_golden: tuple[Path, str]) -> Path:
    return tflite_golden[0]


@pytest.fixture(scope="module")
def same(golden: Path):
    """The golden checked in this process, in the environment that recorded it."""
    from envaudit.pipeline.compose import check

    result = check(golden=str(golden), confirm=False)
    assert result.exit_code == 0 and tuple(g.mode for g in result.subject.conversion) == CONVERTED
    return result


@pytest.fixture(scope="module")
def kernels_moved(golden: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every format of the golden checked with LiteRT's reference kernels, plain and strict."""
    out = tmp_path_factory.mktemp("reference-kernels")
    written = every_format(golden, out, cli_env(ENVAUDIT_TFLITE_KERNELS="reference"))
    if not set(CONVERTED) & set(json.loads(written["plain.json"])["moved_modes"]):
        pytest.skip("LiteRT's reference kernels move no converted mode on this machine")
    return written


# --- nothing converted: nothing new -----------------------------------------------------------


def test_a_check_without_converted_modes_shows_no_conversion_section():
    result = make_result()
    assert result.subject.conversion == () and result.subject.runtimes == ()
    assert "Conversion gap" not in text_of(result, verbose=True)
    assert "Runtimes" not in text_of(result, verbose=True)
    assert "Conversion gap" not in check_md.render(result)
    assert 'id="conversion"' not in check_html.render(result)
    suite = ET.fromstring(check_junit.render(result))
    assert not [c for c in suite.iter("testcase")
                if c.get("classname") in ("envaudit.conversion", "envaudit.runtimes")]


# --- the recording environment: every converted mode identical to its golden -------------------


def test_the_gap_and_the_runtimes_as_data(same):
    tflite, float16 = same.subject.conversion
    assert (tflite.reference, float16.reference) == ("graph", "graph")
    assert float16.status == "precision_loss"
    assert float16.expected == "its weights are stored in float16"
    assert tflite.status in ("identical", "equivalent") and tflite.expected is None
    assert [c.mode for c in same.subject.runtimes] == list(CONVERTED)
    assert all(c.same_model and c.changed == () for c in same.subject.runtimes)


def test_text_says_each_gap_and_lists_what_differs(same):
    text = text_of(same)
    assert "Conversion gap (the converted models against graph mode, this run)" in text
    flat = " ".join(text.split())  # the sentence wraps at the console's width
    tflite, float16 = same.subject.conversion
    assert f"tflite-float16 against graph: {FLOAT16_WORDS}" in flat
    assert f"first differs at {float16.first_difference}" in flat
    assert tflite.words in flat and float16.words in flat
    part = text.split("Conversion gap")[1].split("Runtimes")[0]
    rows = re.findall(r"^(\w+)\s+(identical|rounding noise|precision loss|changed)\s", part, re.M)
    listed = [a.name for g in (tflite, float16) if g.status != "identical"
              for a in g.arrays if not a.identical]
    assert [name for name, _ in rows] == listed
    assert ("precision loss" in dict(rows).values()) and "error vs float64 (reference" in part
    verbose = text_of(same, verbose=True).split("Conversion gap")[1].split("Runtimes")[0]
    every = re.findall(r"^(\w+)\s+(?:identical|rounding noise|precision loss|changed)\s",
                       verbose, re.M)
    assert every == [a.name for g in (tflite, float16) for a in g.arrays]


def test_text_says_the_converter_wrote_the_golden_s_model(same):
    flat = " ".join(text_of(same).split("Runtimes (")[1].split())
    for mode in CONVERTED:
        assert re.search(rf"{mode}: converted by tensorflow \S+ .*?{SAME_MODEL}", flat)
    assert "xnnpack kernels" in flat and "changed:" not in flat


def test_json_has_the_gap_and_the_runtimes_clean_and_documented(same):
    document = strict_json(check_json.render(same))
    gaps = document["conversion"]
    assert [g["mode"] for g in gaps] == list(CONVERTED)
    for gap in gaps:
        assert set(gap) == {"mode", "reference", "status", "arrays", "detections", "expected",
                            "runtime", "first_difference", "first_beyond_noise", "words"}
        assert gap["words"].startswith(f"{gap['mode']} against graph: ")
        moved = [a["name"] for a in gap["arrays"] if not a["identical"]]
        assert gap["first_difference"] == (moved[0] if moved else None)
        assert [a["mode"] for a in gap["arrays"]] == [gap["mode"]] * len(gap["arrays"])
        assert gap["detections"]["golden"] == gap["detections"]["matched"] > 0
    assert gaps[1]["first_beyond_noise"] == gaps[1]["first_difference"]
    for check in document["runtimes"]:
        assert check["golden"]["flatbuffer_sha256"] == check["current"]["flatbuffer_sha256"]
        assert check["same_model"] is True and check["changed"] == []
        assert "the converter wrote the golden's model, byte for byte" in check["line"]
        assert check["current"]["optimization"] == (
            "float16" if check["mode"] == "tflite-float16" else "none")
    assert undocumented(document, section("Check JSON")) == []


def test_markdown_folds_each_gap_s_table(same):
    md = check_md.render(same)
    _, float16 = same.subject.conversion
    assert "### Conversion gap (the converted models against graph mode, this run)" in md
    assert f"- **precision loss**: tflite-float16 against graph: {FLOAT16_WORDS}" in md
    differ = sum(1 for a in float16.arrays if not a.identical)
    assert (f"<details><summary>tflite-float16 against graph: {len(float16.arrays)} arrays,"
            f" {differ} not bit-identical</summary>") in md
    assert re.search(r"^\| `nms` \| precision loss \| [\d.e-]+ \| [\d.e-]+ → [\d.e-]+ \|$", md,
                     re.M)
    assert "- tflite: converted by tensorflow" in md and SAME_MODEL in md
    assert md.count("<details>") == md.count("</details>")


def test_html_marks_the_section_the_modes_and_the_rows(same):
    page = check_html.render(same)
    block = page.split('<section class="conversion" id="conversion" data-status="')[1]
    assert block.startswith("precision_loss")
    block = block.split("</section>")[0]
    for gap in same.subject.conversion:
        assert f'<div class="conversion-mode" data-mode="{gap.mode}" data-status="{gap.status}">'\
            in block
        mode = block.split(f'data-mode="{gap.mode}" data-status=')[1].split("</div>")[0]
        marked = re.findall(r'<tr data-array="(\w+)" data-status="(\w+)">', mode)
        assert marked == [(a.name, a.status) for a in gap.arrays]
    for mode in CONVERTED:
        assert f'<li data-mode="{mode}" data-changed="false" data-same-model="true">' in block


def test_junit_has_a_passing_case_per_gap_and_runtime(same):
    suite = ET.fromstring(check_junit.render(same))
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    for mode, gap in zip(CONVERTED, same.subject.conversion, strict=True):
        gap_case = cases[("envaudit.conversion", mode)]
        assert gap_case.find("failure") is None
        assert gap_case.findtext("system-out").startswith(gap.words)
        runtime = cases[("envaudit.runtimes", mode)]
        assert runtime.find("failure") is None and SAME_MODEL in runtime.findtext("system-out")
    assert suite.get("failures") == "0" and same.exit_code == 0


# --- the reference kernels: the converted modes moved, graph did not ---------------------------


def test_the_runtime_line_names_the_kernels_that_changed(kernels_moved):
    data = json.loads(kernels_moved["plain.json"])
    assert "graph" not in data["moved_modes"]
    for check in data["runtimes"]:
        assert (check["golden"]["kernels"], check["current"]["kernels"]) == ("xnnpack",
                                                                              "reference")
    flat = " ".join(kernels_moved["plain.text"].split())
    assert f"{SAME_MODEL}; changed: kernels: 'xnnpack' -> 'reference'" in flat
    said = html.escape("changed: kernels: 'xnnpack' -> 'reference'")
    assert said in kernels_moved["plain.html"]
    assert 'data-changed="true" data-same-model="true"' in kernels_moved["plain.html"]


def test_junit_fails_exactly_when_the_exit_code_is_one(kernels_moved):
    for label in ("plain", "strict"):
        suite = ET.fromstring(kernels_moved[f"{label}.junit"])
        code = int(kernels_moved[f"{label}.exit"])
        assert (int(suite.get("failures")) > 0) == (code == 1), label
        ours = [c for c in suite.iter("testcase")
                if c.get("classname") in ("envaudit.conversion", "envaudit.runtimes")]
        assert len(ours) == 2 * len(CONVERTED)
        assert all(c.find("failure") is None for c in ours)
    assert int(kernels_moved["strict.exit"]) == 1  # --strict: a moved converted mode fails
    failed = {c.get("classname") for c in ET.fromstring(kernels_moved["strict.junit"])
              .iter("testcase") if c.find("failure") is not None}
    assert failed and failed <= {f"envaudit.stages.{m}" for m in CONVERTED} | {
        "envaudit.detections"}


# --- a bundle's hostile runtime strings, and a user's model ------------------------------------


def _hostile(same):
    """``same`` with a runtime record whose interpreter and kernels a stranger wrote, and a gap
    whose array name is markup."""
    record = {**same.subject.runtimes[0].current,
              "interpreter": "<script>alert(1)</script>\x1b]0;owned\x07",
              "kernels": "x | y ](javascript:z)"}
    runtime = RuntimeCheck("tflite", same.subject.runtimes[0].golden, record)
    gap = same.subject.conversion[1]
    arrays = (replace(gap.arrays[-1], name='<img src=x onerror="y">'),)
    subject = replace(same.subject, runtimes=(runtime,),
                      conversion=(replace(gap, arrays=arrays),))
    return replace(same, subject=subject)


def test_a_hostile_runtime_string_is_escaped_in_every_format(same):
    result = _hostile(same)
    page = check_html.render(result)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and 'data-array="&lt;img src=x onerror=&quot;y&quot;&gt;"' \
        in page
    md = check_md.render(result)
    assert "<script>" not in md and "&lt;script>alert(1)&lt;/script>" in md
    assert "](javascript" not in md and "x \\| y" in md
    text = text_of(result)
    assert "\x1b" not in text and "\x07" not in text
    assert "<script>alert(1)</script>\\x1b]0;owned\\x07" in " ".join(text.split())
    suite = ET.fromstring(check_junit.render(result))  # well-formed
    runtime = next(c for c in suite.iter("testcase") if c.get("classname") == "envaudit.runtimes")
    assert "<script>alert(1)</script>" in runtime.findtext("system-out")
    assert "\x1b" not in check_junit.render(result)


def test_a_user_model_s_gap_lists_arrays_without_a_twin_column():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 10)).astype(np.float32)
    moved = (logits + np.float32(1e-3)).astype(np.float32)
    gap = measure("tflite", "graph", {"output.logits": logits}, {"output.logits": moved})
    result = model_result()
    result = replace(result, subject=replace(result.subject, conversion=(gap,)))
    text = text_of(result)
    assert "Conversion gap (the converted model against graph mode, this run)" in text
    assert re.search(r"^array\s+result\s+max rel\s*$", text, re.M)
    assert "error vs float64 (reference" not in text
    assert re.search(r"^output\.logits\s+changed\s+", text, re.M)
