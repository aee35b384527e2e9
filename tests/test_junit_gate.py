"""A dashboard and the exit code never disagree: the JUnit report fails a test case exactly when
the exit code is 1, for every array status with and without ``--strict``, in a stage or a probe,
for every kind of detection change, and for a user's model with its precision witness.

The verdict is built the way the composer builds it (each mode judged on its own, the probes on
their own, the worst wins); the arrays are real comparisons of real float32 arrays, whose status
is then set to each value a comparison can decide.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from envaudit.compare.tensors import compare_tensor
from envaudit.compare.types import (
    ACCEPTED_STATUSES,
    STATUS_SEVERITY,
    ArrayKind,
    ArrayStatus,
    DetectionChange,
    DetectionDiff,
    ModeResult,
    TensorComparison,
)
from envaudit.compare.verdict import classify, exit_code, worst
from envaudit.compare.witness import precision_witness
from envaudit.render import check_junit
from envaudit.result import CheckResult, ModelCheckInfo
from envaudit.usermodel.spec import ModelInfo, TensorSpec

MODES = ("eager", "xla")
BOX = (0.1, 0.1, 0.3, 0.3)
UNCHANGED = DetectionDiff(2, 2, 2, 0, 0, 0, 0.0, 1.0, 0.0, (), 0.0)
MOVED = dataclasses.replace(UNCHANGED, max_score_delta=1e-4, changes=(
    DetectionChange("matched", 0, 1, 1, 0.9, 0.9001, BOX, BOX, 1.0, 0.4, False),))
REMOVED = dataclasses.replace(UNCHANGED, current=1, matched=1, removed=1, changes=(
    DetectionChange("removed", 0, 2, None, 0.5003, None, BOX, None, None, 3e-4, True),))
DETECTIONS = {"unchanged": UNCHANGED, "moved": MOVED, "removed": REMOVED}


def _identical(name: str, kind: ArrayKind, mode: str = "eager") -> TensorComparison:
    golden = np.linspace(-2.0, 2.0, 48, dtype=np.float32)
    reference = golden.astype(np.float64)
    return compare_tensor(name, kind, name, golden, golden.copy(), reference,
                          golden_reference=reference, mode=mode)


def _with_status(c: TensorComparison, status: ArrayStatus) -> TensorComparison:
    return dataclasses.replace(c, status=status, identical=status == "identical")


def _result(stages: dict[str, list[TensorComparison]], probes: list[TensorComparison],
            detections: DetectionDiff, strict: bool) -> CheckResult:
    """A canary result over two modes, judged as the composer judges one."""
    modes = tuple(ModeResult(m, classify(stages[m], (), detections if m == "xla" else UNCHANGED),
                             None, detections if m == "xla" else UNCHANGED) for m in MODES)
    verdict = worst([*(m.verdict for m in modes), classify((), probes)])
    return CheckResult(
        verdict=verdict, exit_code=exit_code(verdict, strict), headline="h", golden_path="g",
        golden_fingerprint_id="fp-a", current_fingerprint_id="fp-b", fingerprint_changes=(),
        stages=tuple(s for m in MODES for s in stages[m]), probes=tuple(probes),
        changed_probe_families=(), first_divergence=None, detections=detections, causes=(),
        nondeterminism=None, confirmation_ran=False, strict=strict, modes=modes)


def _failed(result: CheckResult) -> list[str]:
    root = ET.fromstring(check_junit.render(result).encode())
    failed = [f"{c.get('classname')}/{c.get('name')}" for c in root.findall("testcase")
              if c.find("failure") is not None]
    assert root.get("failures") == str(len(failed))
    return failed


def _stages() -> dict[str, list[TensorComparison]]:
    return {m: [_identical("decode", "stage", m), _identical("hidden", "stage", m)]
            for m in MODES}


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
@pytest.mark.parametrize("status", STATUS_SEVERITY)
def test_a_stage_fails_in_junit_exactly_when_the_exit_code_says_so(status, strict):
    stages = _stages()
    stages["xla"][1] = _with_status(stages["xla"][1], status)
    result = _result(stages, [_identical("exp", "probe")], UNCHANGED, strict)
    failed = _failed(result)
    assert bool(failed) == (result.exit_code == 1), (result.verdict, failed)
    assert failed == (["envaudit.stages.xla/hidden"] if stages["xla"][1].fails_gate(strict)
                      else [])
    # Without --strict the accepted statuses pass and the others fail; --strict: all but identical.
    expected = status != "identical" if strict else status not in ACCEPTED_STATUSES
    assert result.exit_code == int(expected)


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
@pytest.mark.parametrize("status", STATUS_SEVERITY)
def test_a_probe_fails_in_junit_exactly_when_the_exit_code_says_so(status, strict):
    probes = [_identical("exp", "probe"), _with_status(_identical("matmul", "probe"), status)]
    result = _result(_stages(), probes, UNCHANGED, strict)
    failed = _failed(result)
    assert bool(failed) == (result.exit_code == 1), (result.verdict, failed)
    assert failed == (["envaudit.probes/probes"] if probes[1].fails_gate(strict) else [])


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
@pytest.mark.parametrize("kind", DETECTIONS)
def test_detections_fail_in_junit_exactly_when_the_exit_code_says_so(kind, strict):
    result = _result(_stages(), [_identical("exp", "probe")], DETECTIONS[kind], strict)
    failed = _failed(result)
    assert bool(failed) == (result.exit_code == 1), (result.verdict, failed)
    fails = kind == "removed" or (strict and kind == "moved")
    assert failed == (["envaudit.detections/detections"] if fails else [])
    assert result.verdict == {"unchanged": "identical", "moved": "equivalent",
                              "removed": "drift"}[kind]


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
@pytest.mark.parametrize("status", STATUS_SEVERITY)
def test_a_user_models_junit_and_exit_code_agree(status, strict):
    """A user model's arrays and its witness: a probe that lost precision fails the probes and
    the witness, and makes the verdict precision_loss."""
    model = ModelInfo(kind="keras", path="/m.keras", sha256="0" * 64, files=1, size=1,
                      signature=None, inputs={"x": TensorSpec("float32", (None, 4))},
                      outputs=("y",), layers=(), detections=None, mode="eager",
                      input_kind="arrays", image_files=(), image_feed="x")
    output = _with_status(dataclasses.replace(_identical("output.y", "stage"), role="output"),
                          "rounding" if status == "precision_loss" else status)
    probe = _with_status(_identical("matmul", "probe"),
                         "precision_loss" if status == "precision_loss" else "identical")
    if status == "precision_loss":  # ~16,800 unit roundoffs: what the witness calls lost
        probe = dataclasses.replace(probe, current_error=1e-3)
    verdict = worst([classify((output,), ()), classify((), (probe,))])
    result = CheckResult(
        verdict=verdict, exit_code=exit_code(verdict, strict), headline="h", golden_path="g",
        golden_fingerprint_id="fp-a", current_fingerprint_id="fp-b", fingerprint_changes=(),
        stages=(output,), probes=(probe,), changed_probe_families=(), first_divergence=None,
        detections=UNCHANGED, causes=(), nondeterminism=None, confirmation_ran=False,
        strict=strict, subject=ModelCheckInfo(model, precision_witness([probe]), "basis"))
    failed = _failed(result)
    assert bool(failed) == (result.exit_code == 1), (result.verdict, failed)
    if status == "precision_loss":  # the output only rounded: it fails under --strict alone
        assert failed == ["envaudit.stages/output.y"] * strict + [
            "envaudit.probes/probes", "envaudit.precision/witness"]


def test_every_status_a_check_does_not_accept_has_a_failure_type():
    refused = set(STATUS_SEVERITY) - set(ACCEPTED_STATUSES)
    assert set(check_junit.FAILURE_TYPE) == refused == {"changed", "not_run", "precision_loss"}
