"""The training steps in every check format: text, Markdown, HTML and JUnit show what the data
says (the step table, the first moved array, the growth, the determinism), fold a long run where
the data folds it, and JUnit fails a step exactly when the exit code says the check failed.

Real checks: the session's golden bundle checked here in this process (identical), and in one
fresh process with one intra-op thread (which moves the canary's training gradients on this
machine while its inference stays bit-identical) that checks twice (plain and ``--strict``) and
writes every format. Where one thread moves no training step on a machine, the tests that need a
move are skipped with the reason.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import cli_env
from render_child import every_format
from rich.console import Console
from test_render_check import make_result

from envaudit.compare.training import (
    Determinism,
    Growth,
    OpDeterminism,
    StepResult,
    TrainingMode,
    TrainingReport,
    shown_steps,
)
from envaudit.render import check_html, check_junit, check_md, check_text
from envaudit.result import CanaryInfo

FORMATS = ("text", "md", "html", "junit", "json")


def text_of(result) -> str:
    console = Console(width=140, no_color=True, record=True, file=open("/dev/null", "w"))
    console.print(check_text.render(result))
    return console.export_text()


@pytest.fixture(scope="module")
def one_thread(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every format of the golden checked with TF_NUM_INTRAOP_THREADS=1, plain and strict."""
    out = tmp_path_factory.mktemp("one-thread")
    written = every_format(trained_bundle, out, cli_env(TF_NUM_INTRAOP_THREADS="1"))
    training = json.loads(written["plain.json"])["training"]
    if all(m["first_moved_step"] is None for m in training["modes"]):
        pytest.skip("one intra-op thread moves no training step on this machine")
    return written


@pytest.fixture(scope="module")
def identical(trained_bundle: Path):
    """The golden checked in this process, in the environment that recorded it."""
    from envaudit.pipeline.compose import check

    return check(golden=str(trained_bundle), confirm=False)


# --- identical -------------------------------------------------------------------------------


def test_an_identical_check_shows_every_step_bit_identical_and_no_growth(identical):
    assert identical.verdict == "identical" and identical.training is not None
    text = text_of(identical)
    assert "Training steps (3 steps" in text
    rows = re.findall(r"^\s*([123])\s+identical\s+—\s+—\s+0/(\d+)\s+0\s*$", text, re.M)
    assert [r[0] for r in rows] == ["1", "2", "3", "1", "2", "3"]  # eager, then graph
    assert "Growth" not in text and "First divergence" not in text
    html = check_html.render(identical)
    assert '<section class="training" data-status="identical">' in html
    assert len(re.findall(r'<tr data-step="\d" data-status="identical">', html)) == 6
    assert 'id="growth-chart"' not in html


def test_an_identical_check_has_a_passing_junit_case_per_step_and_mode(identical):
    suite = ET.fromstring(check_junit.render(identical))
    cases = [c for c in suite.iter("testcase")
             if c.get("classname", "").startswith("envaudit.training.")]
    assert sorted((c.get("classname"), c.get("name")) for c in cases) == sorted(
        (f"envaudit.training.{m}", f"step{k}") for m in ("eager", "graph") for k in (1, 2, 3))
    assert all(c.find("failure") is None for c in cases)
    # the training arrays are no longer a stage case each
    assert not any(c.get("name", "").startswith("step") for c in suite.iter("testcase")
                   if c.get("classname", "").startswith("envaudit.stages"))


# --- one intra-op thread: training moved, inference did not -----------------------------------


def test_text_names_the_first_moved_step_and_array_as_training(one_thread):
    data = json.loads(one_thread["plain.json"])
    mode = next(m for m in data["training"]["modes"] if m["first_moved_step"] is not None)
    first = mode["first_moved"]
    text = one_thread["plain.text"]
    assert f"First divergence: training step {mode['first_moved_step']}," in text
    assert f"'{first}'" in text and "stage 'step" not in text
    assert re.search(rf"^\s*{mode['first_moved_step']}\s+\w+\s+'{re.escape(first)}'", text, re.M)
    growth = mode["growth"]
    assert f"weights differ by {growth['relative'][-1]:.1e} after step 3" in text


def test_markdown_has_the_step_table_and_the_growth(one_thread):
    md = one_thread["plain.md"]
    data = json.loads(one_thread["plain.json"])
    assert "### Training steps (3, in computing order" in md
    for mode in data["training"]["modes"]:
        assert f"**{mode['mode']} mode**" in md
        for step in mode["steps"]:
            if step["first_moved"]:
                assert f"| {step['step']} | {step['verdict']} | `{step['first_moved']}` |" in md
    assert "Growth (" in md and "First divergence: training step" in md


def test_html_marks_the_section_rows_and_draws_the_growth_chart(one_thread):
    html = one_thread["plain.html"]
    data = json.loads(one_thread["plain.json"])
    worst = data["training"]["modes"][0]["steps"][0]["verdict"]
    assert re.search(r'<section class="training" data-status="(\w+)">', html)
    for mode in data["training"]["modes"]:
        block = html.split(f'<div class="training-mode" data-mode="{mode["mode"]}"')[1]
        block = block.split("</div>")[0]
        marked = re.findall(r'<tr data-step="(\d+)" data-status="(\w+)">', block)
        assert marked == [(str(s["step"]), s["verdict"]) for s in mode["steps"]]
    assert worst in ("equivalent", "drift")
    assert 'id="growth-chart"' in html and "growth-eager" in html and "-target" in html


def test_junit_fails_exactly_when_the_exit_code_is_one(one_thread):
    for label in ("plain", "strict"):
        suite = ET.fromstring(one_thread[f"{label}.junit"])
        code = int(one_thread[f"{label}.exit"])
        failures = int(suite.get("failures"))
        assert (failures > 0) == (code == 1), (label, failures, code)
        steps = [c for c in suite.iter("testcase")
                 if c.get("classname", "").startswith("envaudit.training.")]
        assert len(steps) == 6
    strict = ET.fromstring(one_thread["strict.junit"])
    failed = [c.get("name") for c in strict.iter("testcase")
              if c.get("classname") == "envaudit.training.eager" and c.find("failure") is not None]
    assert failed and int(one_thread["strict.exit"]) == 1  # --strict: any moved step fails


# --- folding a long run, and the determinism of repeated training (synthetic reports) ---------


def _step(k: int, verdict: str, moved: bool = True) -> StepResult:
    return StepResult(k, verdict, f"step{k}.grad.stem.conv" if moved else None,
                      8 if moved else 0, 64, f"step{k}.grad.stem.conv" if moved else None,
                      1e-6 if moved else 0.0)


def test_a_long_run_shows_the_first_steps_each_change_and_the_last():
    steps = [_step(k, "equivalent" if k <= 60 else "drift") for k in range(1, 101)]
    shown = shown_steps(steps)
    assert [s.step for s in shown.rows] == [1, 61, 100]
    assert shown.folded_before == (0, 59, 38) and shown.folded == 97
    later = [_step(k, "identical", moved=False) for k in range(1, 50)] + \
        [_step(k, "equivalent") for k in range(50, 101)]
    shown = shown_steps(later)
    assert [s.step for s in shown.rows] == [1, 50, 100] and shown.folded == 97
    early = [_step(1, "identical", False), _step(2, "identical", False)] + \
        [_step(k, "equivalent") for k in range(3, 101)]
    assert [s.step for s in shown_steps(early).rows] == [1, 2, 3, 100]
    short = [_step(k, "equivalent") for k in range(1, 13)]
    assert shown_steps(short).rows == tuple(short) and shown_steps(short).folded == 0


def _report(steps: int, determinism: Determinism | None = None) -> TrainingReport:
    results = tuple(_step(k, "equivalent" if k <= 60 else "drift") for k in range(1, steps + 1))
    relative = tuple(1e-9 * 2 ** (k / 5) for k in range(1, steps + 1))
    growth = Growth(tuple(range(1, steps + 1)), relative, 5.0, 1e-3, 100.0, True)
    return TrainingReport(steps, {}, (TrainingMode.of("eager", results, growth),), determinism)


def test_a_hundred_steps_render_folded_in_every_format():
    result = replace(make_result(), subject=CanaryInfo(training=_report(100)))
    text = text_of(result)
    assert "… 59 steps folded" in text and "… 38 steps folded" in text
    assert "97 steps folded" in text
    assert "reaches 1e-03 at step 100 (measured)" in text
    md = check_md.render(result)
    assert "_… 59 steps folded_" in md and md.count("| 61 | drift |") == 1
    html = check_html.render(result)
    assert re.findall(r'<tr data-step="(\d+)"', html) == ["1", "61", "100"]
    assert '<section class="training" data-status="drift">' in html


def test_determinism_is_said_with_what_op_determinism_raised_and_confirmed():
    confirmed = Determinism(3, 21.5, False, 1, "stage/eager/step1.batch", 40,
                            OpDeterminism(True, (), 3))
    refused = Determinism(3, 21.5, False, 1, "stage/eager/step1.batch", 40,
                          OpDeterminism(None, ("Random ops require a seed <b>",), 0))
    for determinism, said in ((confirmed, "fix confirmed"), (refused, "not confirmed")):
        result = replace(make_result(), subject=CanaryInfo(training=_report(3, determinism)))
        text = " ".join(text_of(result).split())  # a long line wraps in the terminal
        assert "3 fresh processes, 21.5 s: not deterministic: they differ from step 1 on" in text
        assert "the augmented batch (input pipeline)" in text and said in text
        html = check_html.render(result)
        flag = str(determinism.fix_confirmed).lower()
        assert f'data-deterministic="false" data-fix-confirmed="{flag}"' in html
        if determinism is refused:  # TensorFlow's words are a stranger's string: escaped
            assert "seed &lt;b&gt;" in html and "seed <b>" not in html
        assert said in check_md.render(result)
    assert "Random ops require a seed" in text_of(replace(
        make_result(), subject=CanaryInfo(training=_report(3, refused))))
    shared = replace(confirmed, fresh_processes=False)  # envaudit.training.determinism's runs
    text = " ".join(text_of(replace(make_result(), subject=CanaryInfo(
        training=_report(3, shared)))).split())
    assert "3 runs in one process, 21.5 s" in text and "3 runs in one process agreed" in text
    assert "fresh processes" not in text


def test_no_training_shows_nothing_new():
    result = make_result()
    assert result.training is None
    assert "Training steps" not in text_of(result)
    assert "Training steps" not in check_md.render(result)
    assert 'class="training"' not in check_html.render(result)
    assert "envaudit.training" not in check_junit.render(result)
