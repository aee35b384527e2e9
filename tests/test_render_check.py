"""The four check renderers on a realistic CheckResult built from real comparisons."""

from __future__ import annotations

import dataclasses
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from rich.console import Console

from envaudit.attribute.types import Cause
from envaudit.compare.detections import decision_noise, match_detections
from envaudit.compare.tensors import compare_tensor
from envaudit.compare.verdict import classify, exit_code, headline
from envaudit.fingerprint.types import Change
from envaudit.render import check_json, check_junit, check_md, check_text
from envaudit.result import CheckResult, FirstDivergence, Nondeterminism, StageReplay
from envaudit.tf32 import compare_tf32, decide
from envaudit.workload.types import Candidates, Detections

P, Q = (0.1, 0.1, 0.3, 0.3), (0.6, 0.6, 0.8, 0.8)


def _arrays():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = (pixels.reshape(2, -1)[:, :96] / 127.5 - 1.0).astype(np.float32)
    w = (rng.standard_normal((96, 32)) / 10).astype(np.float32)
    v = (rng.standard_normal((32, 6)) / 6).astype(np.float32)
    perm = rng.permutation(96)
    hidden = np.tanh(x @ w)
    hidden_now = np.tanh(x[:, perm] @ w[perm])  # another summation order: rounding noise
    h64 = np.tanh(x.astype(np.float64) @ w.astype(np.float64))
    grid = np.linspace(-4, 4, 64, dtype=np.float32)
    exp_now = np.exp(grid)
    exp_now[5] = np.nextafter(exp_now[5], np.float32(np.inf))  # another libm, 1 ulp
    stages = [
        compare_tensor("decode", "stage", "decode", pixels, pixels.copy()),
        compare_tensor("normalize", "stage", "normalize", x, x.copy(), x.astype(np.float64)),
        compare_tensor("hidden", "stage", "hidden", hidden, hidden_now, h64),
        compare_tensor("logits", "stage", "logits", hidden @ v, hidden_now @ v,
                       h64 @ v.astype(np.float64)),
    ]
    probes = [
        compare_tensor("exp_grid", "probe", "transcendental", np.exp(grid), exp_now),
        compare_tensor("matmul_96", "probe", "matmul", x @ w, x @ w),
    ]
    return stages, probes


def _detections(changed: bool):
    def dets(rows):
        image, cls, score, boxes = zip(*rows, strict=True)
        return Detections(np.array(image, np.int32), np.array(boxes, np.float32),
                          np.array(cls, np.int32), np.array(score, np.float32))

    def cands(q_score):
        boxes = np.array([[P, Q]], np.float32)
        scores = np.full((1, 2, 3), 0.01, np.float32)
        scores[0, 0, 0], scores[0, 1, 2] = 0.9, q_score
        return Candidates(boxes, scores)

    golden = dets([(0, 0, 0.9, P), (0, 2, 0.5003, Q)])
    current = dets([(0, 0, 0.9, P)] if changed else [(0, 0, 0.9, P), (0, 2, 0.5003, Q)])
    noise = decision_noise(cands(0.5003), cands(0.4998 if changed else 0.5003))
    return match_detections(golden, current, noise=noise, golden_candidates=cands(0.5003))


def make_result(changed_detections: bool = True, strict: bool = False) -> CheckResult:
    stages, probes = _arrays()
    detections = _detections(changed_detections)
    verdict = classify(stages, probes, detections)
    causes = (
        Cause("env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'", "confirmed",
              ("a re-run with it unset was bit-identical to golden",
               "the first divergent stage is a matmul, which oneDNN computes"),
              "env.TF_ENABLE_ONEDNN_OPTS"),
        Cause("packages.weird|name: 1.0 -> 1.1", "possible", ("it is a numerics library",)),
    )
    return CheckResult(
        verdict=verdict,
        exit_code=exit_code(verdict, strict),
        headline=headline(verdict, stages, probes, detections, "hidden",
                          f"{causes[0].change} ({causes[0].confidence})"),
        golden_path="/data/golden [default]",
        golden_fingerprint_id="a1b2c3d4e5f60718",
        current_fingerprint_id="ffeeddccbbaa9988",
        fingerprint_changes=(
            Change("os.hostname", "build-1", "build-2", "info", False),
            Change("env.TF_ENABLE_ONEDNN_OPTS", None, "0", "numerics-env", True),
            Change("packages.weird|name", "1.0", "1.1", "packages", False),
        ),
        stages=tuple(stages),
        probes=tuple(probes),
        changed_probe_families=("transcendental",),
        first_divergence=FirstDivergence(
            "hidden", 2, (StageReplay("hidden", False, stages[2].max_abs),
                          StageReplay("logits", True, 0.0)), ("hidden",)),
        detections=detections,
        causes=causes,
        nondeterminism=Nondeterminism(3, True, (), 0.0),
        confirmation_ran=True,
        strict=strict,
        timings={"workload": 1.25, "total": 2.5},
        tf32=compare_tf32(decide("default", True, ["CPU:0"], {}),
                          decide("off", False, ["CPU:0"], {})),
    )


@pytest.fixture(scope="module")
def drift() -> CheckResult:
    result = make_result()
    assert result.verdict == "drift" and result.exit_code == 1
    return result


@pytest.fixture(scope="module")
def equivalent() -> CheckResult:
    result = make_result(changed_detections=False)
    assert result.verdict == "equivalent" and result.exit_code == 0
    return result


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_has_the_contract_keys(drift):
    text = check_json.render(drift)
    assert text.endswith("\n")
    data = _strict_json(text)
    for key in ("schema", "verdict", "exit_code", "fingerprint_changes", "stages",
                "first_divergence", "detections", "causes", "nondeterminism"):
        assert key in data
    assert data["verdict"] == "drift" and data["exit_code"] == 1
    assert data["schema"].startswith("envaudit.check/")
    for stage in data["stages"]:
        assert {"name", "identical", "max_abs", "max_rel", "mismatch_fraction", "golden_error",
                "current_error"} <= set(stage)
    assert [s["identical"] for s in data["stages"]] == [True, True, False, False]
    assert data["first_divergence"]["stage"] == "hidden"
    det = data["detections"]
    assert {"golden", "current", "matched", "added", "removed", "class_changed",
            "max_score_delta", "min_iou"} <= set(det)
    assert (det["golden"], det["current"], det["removed"]) == (2, 1, 1)
    assert det["changes"][0]["expected_fragility"] is True
    assert data["causes"][0]["confidence"] == "confirmed"
    assert data["fingerprint_changes"][1]["path"] == "env.TF_ENABLE_ONEDNN_OPTS"
    assert data["nondeterminism"]["runs"] == 3


def test_json_turns_nan_and_inf_into_valid_json(drift):
    mismatch = compare_tensor("boxes", "stage", "boxes", np.zeros((2, 4), np.float32),
                              np.zeros((3, 4), np.float32))
    result = dataclasses.replace(drift, stages=(*drift.stages, mismatch))
    stage = _strict_json(check_json.render(result))["stages"][-1]
    assert stage["max_abs"] == "inf" and stage["cosine"] is None
    assert stage["mismatch_fraction"] == 1.0


def _junit(result):
    root = ET.fromstring(check_junit.render(result).encode())
    cases = root.findall("testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    return root, cases, failed


def test_junit_drift_from_detections_fails_the_detections_case(drift):
    root, cases, failed = _junit(drift)
    assert root.tag == "testsuite" and root.get("name") == "envaudit"
    assert [c.get("name") for c in cases] == ["decode", "normalize", "hidden", "logits",
                                              "detections", "probes", "causes"]
    # The stages and probes only rounded differently: they pass with a note; the detections fail.
    # The causes explain the finding, so they pass and carry the ranking as their output.
    assert failed == ["detections"]
    assert root.get("tests") == "7" and root.get("failures") == "1"
    causes = cases[-1].find("system-out").text
    assert causes.startswith(f"1. [{drift.causes[0].confidence}] {drift.causes[0].change}")
    assert root.get("errors") == "0" and root.get("skipped") == "0" and root.get("time") == "2.500"
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["verdict"] == "drift" and props["exit_code"] == "1"
    failure = cases[4].find("failure")
    message = failure.get("message")
    assert "1 removed" in message and "1 expected fragility" in message
    assert "removed: image 0, triangle, score 0.5003" in failure.text
    assert "rounding-noise floor" in cases[2].find("system-out").text


def test_junit_fails_stages_beyond_noise_and_precision_loss(drift):
    golden = np.linspace(1, 2, 64, dtype=np.float32)
    ref = golden.astype(np.float64)
    moved = compare_tensor("boxes", "stage", "boxes", golden, golden * np.float32(1.01))
    lossy = compare_tensor("scores", "stage", "scores", golden,
                           golden.astype(np.float16).astype(np.float32) + np.float32(1e-3), ref)
    result = dataclasses.replace(drift, stages=(*drift.stages, moved, lossy),
                                 verdict="precision_loss")
    root, cases, failed = _junit(result)
    assert failed == ["boxes", "scores", "detections"]
    types = {c.get("name"): c.find("failure").get("type") for c in cases
             if c.find("failure") is not None}
    assert types == {"boxes": "drift", "scores": "precision_loss", "detections": "detections"}
    assert root.get("failures") == "3" and root.get("tests") == "9"  # the causes case passes


def test_junit_equivalent_passes_with_a_note(equivalent):
    root, cases, failed = _junit(equivalent)
    assert failed == [] and root.get("failures") == "0" and root.get("tests") == "7"  # + causes
    note = cases[2].find("system-out").text
    assert "not bit-identical" in note and "rounding-noise floor" in note


def test_junit_strict_fails_what_is_not_identical(equivalent):
    strict = dataclasses.replace(equivalent, strict=True, exit_code=exit_code("equivalent", True))
    _, cases, failed = _junit(strict)
    assert failed == ["hidden", "logits", "probes"]
    assert cases[2].find("failure").get("type") == "not_identical"


def _text(result, **console) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=110, **console).print(check_text.render(result))
    return buffer.getvalue()


def test_text_without_color_reads_top_to_bottom(drift, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    out = _text(drift, force_terminal=False)
    assert "\x1b" not in out
    assert out.splitlines()[0].startswith("▲ Drift:")
    order = [out.index(s) for s in ("Environment changes", "Stages", "First divergence",
                                    "Probes:", "Detections:", "Causes", "Nondeterminism")]
    assert order == sorted(order)
    assert out.index("TF_ENABLE_ONEDNN_OPTS") < out.index("os.hostname")  # numerics first
    assert "expected fragility" in out and "[confirmed]" in out
    assert "/data/golden [default]" in out  # brackets are text, not markup
    assert "first, changed here" in out and "carried" in out
    assert "rounding noise" in out
    assert "transcendental" in out


def test_text_colors_on_a_terminal(drift, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" in _text(drift, force_terminal=True, color_system="standard")


def test_text_bars_grow_with_max_rel():
    assert check_text.bar(0.0, identical=True) == "·"
    small, large = check_text.bar(1e-7, False), check_text.bar(1e-2, False)
    assert 0 < len(small) < len(large) < check_text.BAR_WIDTH
    assert check_text.bar(float("inf"), False) == "█" * check_text.BAR_WIDTH


def test_text_identical_result(equivalent):
    same = dataclasses.replace(
        equivalent, verdict="identical", exit_code=0, causes=(), fingerprint_changes=(),
        stages=tuple(dataclasses.replace(s, identical=True) for s in equivalent.stages),
        first_divergence=None, headline="Identical: all bit-identical.")
    out = _text(same, force_terminal=False, no_color=True)
    assert out.startswith("✔ Identical") and "no fingerprint changes" in out
    assert "Causes" not in out


def test_markdown_has_heading_and_tables(drift):
    md = check_md.render(drift)
    assert md.startswith("## envaudit check: ⚠️ drift\n")
    assert drift.headline in md
    assert "| path | golden | current | category | numerics |" in md
    assert "| --- |" in md
    assert "`packages.weird\\|name`" not in md and "packages.weird\\|name" in md
    assert "expected fragility" in md and "**confirmed**" in md
    assert "First divergence: **`hidden`**" in md
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert all(line.count(" | ") == rows[0].count(" | ") for line in rows if "`hidden`" in line
               or "`logits`" in line)


@pytest.mark.parametrize("growth, shown", [(None, None), (1.0, None), (1.25, "1.2x"),
                                           (2.5, "2.5x"), (float("inf"), "from exactly 0")])
def test_every_format_shows_an_arrays_error_growth_alike(drift, growth, shown):
    """Whether a stage's error growth is shown is ``TensorComparison.growth_shown``: not when the
    array is bit-identical, its growth unknown or exactly 1.0 (nothing grew), else in every
    format, spelled alike."""
    from envaudit.render import check_html

    hidden = dataclasses.replace(drift.stages[2], error_growth=growth)
    assert not hidden.identical and hidden.growth_shown == (None if shown is None else growth)
    assert dataclasses.replace(hidden, identical=True).growth_shown is None
    result = dataclasses.replace(drift, stages=(*drift.stages[:2], hidden, drift.stages[3]))
    row = {
        "text": next(line for line in _text(result, no_color=True).splitlines()
                     if " hidden " in line),
        "md": next(line for line in check_md.render(result).splitlines() if "`hidden`" in line),
        "junit": next(c for c in ET.fromstring(check_junit.render(result).encode())
                      .iter("testcase") if c.get("name") == "hidden").find("system-out").text,
        "html": next(line for line in check_html.render(result).splitlines()
                     if "<td>hidden</td>" in line),
    }
    for fmt, line in row.items():
        if shown is None:
            assert "x)" not in line and "from exactly" not in line, (fmt, line)
        else:
            assert f"({shown})" in line, (fmt, line)


def test_a_probe_family_shows_its_most_severe_member_in_every_format(drift):
    """``compare.types.most_severe``: a family of a rounded, a lost and an identical probe is
    "precision loss" in the text, the Markdown and the HTML alike."""
    from envaudit.compare.types import most_severe
    from envaudit.render import check_html

    base = drift.probes[1]  # matmul_96, identical
    family = [dataclasses.replace(base, name=f"mm{i}", status=status,
                                  identical=status == "identical")
              for i, status in enumerate(("rounding", "precision_loss", "identical"))]
    assert most_severe(p.status for p in family) == "precision_loss"
    assert most_severe(["identical", "not_run", "changed"]) == "not_run"
    result = dataclasses.replace(drift, probes=(drift.probes[0], *family))
    text = next(line for line in _text(result, no_color=True).splitlines()
                if line.startswith("matmul"))
    md = next(line for line in check_md.render(result).splitlines() if line.startswith("| matmul"))
    html = next(line for line in check_html.render(result).splitlines()
                if line.startswith("<tr><th>matmul"))
    assert text.rstrip().endswith("precision loss") and md.endswith("| **precision loss** |")
    assert html.endswith("<th>precision loss</th></tr>")
