"""Verdicts on real arrays: fp32 reorderings are equivalent, reduced precision is precision loss."""

from __future__ import annotations

import numpy as np
import pytest

from envaudit.compare.noise import at_noise_floor, lost_precision
from envaudit.compare.tensors import compare_tensor
from envaudit.compare.types import DetectionChange, DetectionDiff, TensorComparison
from envaudit.compare.verdict import classify, exit_code, headline


def bfloat16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest, ties to even) and back to float32."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return rounded.astype(np.uint32).view(np.float32)


def tf32(x: np.ndarray) -> np.ndarray:
    """Round float32 to TF32's 10-bit mantissa (keep 19 bits), ties to even."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0xFFF + ((bits >> 13) & 1)) >> 13 << 13
    return rounded.astype(np.uint32).view(np.float32)


def _pipeline(a, w1, w2, *, permute=None, rounding=None):
    """Two float32 stages (dense + tanh, dense) as a kernel library might compute them."""
    if permute is not None:
        a, w1 = a[:, permute], w1[permute]
    if rounding is not None:
        a, w1 = rounding(a), rounding(w1)
    h = np.tanh(a @ w1)
    if rounding is not None:
        h, w2 = rounding(h), rounding(w2)
    return {"hidden": h, "logits": h @ w2}


@pytest.fixture(scope="module")
def workload():
    rng = np.random.default_rng(42)
    a = rng.standard_normal((32, 384)).astype(np.float32)
    w1 = (rng.standard_normal((384, 64)) / np.sqrt(384)).astype(np.float32)
    w2 = (rng.standard_normal((64, 8)) / 8).astype(np.float32)
    h64 = np.tanh(a.astype(np.float64) @ w1.astype(np.float64))
    twin = {"hidden": h64, "logits": h64 @ w2.astype(np.float64)}
    return a, w1, w2, twin, _pipeline(a, w1, w2), rng.permutation(384)


def _stages(golden, current, twin):
    return [compare_tensor(n, "stage", n, golden[n], current[n], twin[n]) for n in golden]


def _same_detections(n: int = 4, score_delta: float = 0.0) -> DetectionDiff:
    moved = () if not score_delta else (DetectionChange(
        "matched", 0, 0, 0, 0.9, 0.9 + score_delta, (0, 0, 1, 1), (0, 0, 1, 1), 1.0, None, False),)
    return DetectionDiff(n, n, n, 0, 0, 0, score_delta, 1.0, 0.0, moved, 0.0)


def _one_removed(fragile: bool = False) -> DetectionDiff:
    change = DetectionChange("removed", 0, 1, None, 0.5003, None, (0, 0, 1, 1), None, None,
                             0.0003 if fragile else None, fragile)
    return DetectionDiff(4, 3, 3, 0, 1, 0, 0.0, 1.0, 0.0, (change,), 0.0005 if fragile else 0.0)


def test_same_run_is_identical(workload):
    a, w1, w2, twin, golden, _ = workload
    stages = _stages(golden, _pipeline(a, w1, w2), twin)
    verdict = classify(stages, [], _same_detections())
    assert verdict == "identical"
    assert exit_code(verdict, strict=False) == 0 and exit_code(verdict, strict=True) == 0


def test_fp32_reordering_is_equivalent(workload):
    a, w1, w2, twin, golden, perm = workload
    stages = _stages(golden, _pipeline(a, w1, w2, permute=perm), twin)
    assert not any(s.identical for s in stages)
    assert all(s.current_error < 1e-6 for s in stages)
    verdict = classify(stages, [], _same_detections(score_delta=1e-7))
    assert verdict == "equivalent"
    assert exit_code(verdict) == 0
    assert exit_code(verdict, strict=True) == 1


def test_sequential_accumulation_is_equivalent(workload):
    a, w1, _, twin, golden, _ = workload
    acc = np.zeros((a.shape[0], w1.shape[1]), np.float32)
    for k in range(a.shape[1]):  # one rank-1 update at a time: another summation order
        acc += np.outer(a[:, k], w1[k])
    stage = compare_tensor("hidden", "stage", "hidden", golden["hidden"], np.tanh(acc),
                           twin["hidden"])
    assert not stage.identical and at_noise_floor(stage)
    assert classify([stage], [], _same_detections()) == "equivalent"


@pytest.mark.parametrize("rounding", [bfloat16, tf32, lambda x: x.astype(np.float16).astype(
    np.float32)], ids=["bf16", "tf32", "fp16"])
def test_reduced_precision_is_precision_loss(workload, rounding):
    a, w1, w2, twin, golden, _ = workload
    stages = _stages(golden, _pipeline(a, w1, w2, rounding=rounding), twin)
    growth = max(s.error_growth for s in stages)
    assert growth > 8.0  # the precision-loss factor
    assert any(lost_precision(s) for s in stages)
    verdict = classify(stages, [], _same_detections())
    assert verdict == "precision_loss"
    assert exit_code(verdict) == 1
    text = headline(verdict, stages, [], _same_detections())
    assert text.startswith("Precision loss:") and "float64" in text


def test_precision_loss_wins_whatever_detections_do(workload):
    a, w1, w2, twin, golden, _ = workload
    stages = _stages(golden, _pipeline(a, w1, w2, rounding=bfloat16), twin)
    assert classify(stages, [], _one_removed()) == "precision_loss"


def test_precision_loss_in_a_probe(workload):
    a, w1, w2, twin, golden, perm = workload
    stages = _stages(golden, _pipeline(a, w1, w2, permute=perm), twin)
    ref = a.astype(np.float64) @ w1.astype(np.float64)
    probe = compare_tensor("matmul_384", "probe", "matmul", a @ w1, bfloat16(a) @ bfloat16(w1),
                           ref)
    assert classify(stages, [probe], _same_detections()) == "precision_loss"


def test_equivalent_numbers_with_changed_detections_are_drift(workload):
    a, w1, w2, twin, golden, perm = workload
    stages = _stages(golden, _pipeline(a, w1, w2, permute=perm), twin)
    diff = _one_removed(fragile=True)
    verdict = classify(stages, [], diff)
    assert verdict == "drift" and exit_code(verdict) == 1
    text = headline(verdict, stages, [], diff, first_divergence="hidden")
    assert text.startswith("Drift: the numbers differ only by rounding")
    assert "1 removed" in text and "expected fragility" in text


def test_golden_recorded_with_reduced_precision_is_not_equivalent(workload):
    """Same floor means both ways: an fp32 run against a bf16 golden is a change, not noise."""
    a, w1, w2, twin, _, _ = workload
    golden = _pipeline(a, w1, w2, rounding=bfloat16)
    stages = _stages(golden, _pipeline(a, w1, w2), twin)
    assert not any(lost_precision(s) for s in stages)
    assert classify(stages, [], _same_detections()) == "drift"


def test_exact_stage_picking_up_rounding_is_not_precision_loss():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    golden = ref.astype(np.float32)
    current = golden.copy()
    current[2] = np.nextafter(current[2], np.float32(4))
    stage = compare_tensor("s", "stage", "s", golden, current, ref)
    assert stage.golden_error == 0.0 and stage.error_growth == float("inf")
    assert not lost_precision(stage)
    assert classify([stage], [], _same_detections()) == "equivalent"


def test_without_twin_max_rel_decides():
    golden = np.linspace(1, 2, 50, dtype=np.float32)
    tiny = compare_tensor("s", "stage", "s", golden, golden * np.float32(1 + 2e-7))
    assert classify([tiny], [], _same_detections()) == "equivalent"
    big = compare_tensor("s", "stage", "s", golden, golden * np.float32(1.001))
    assert classify([big], [], _same_detections()) == "drift"


def test_integer_difference_is_never_rounding_noise():
    pixels = np.full((2, 4, 4, 3), 128, np.uint8)
    decoded = pixels.copy()
    decoded[0, 0, 0, 0] = 129  # another JPEG decoder
    stage = compare_tensor("decode", "stage", "decode", pixels, decoded)
    assert classify([stage], [], _same_detections()) == "drift"
    text = headline("drift", [stage], [], _same_detections(), first_divergence="decode")
    assert text.startswith("Drift: outputs moved beyond rounding noise from stage 'decode' on")
    assert "all 4 detections still match" not in text and "all 4 detections unchanged" in text


def test_nondeterminism_spread_counts_as_noise():
    golden = np.linspace(1, 2, 50, dtype=np.float32)
    moved = golden + np.float32(0.01)
    stage = compare_tensor("s", "stage", "s", golden, moved)
    assert stage.status == "changed"
    assert classify([stage], [], _same_detections()) == "drift"
    within = compare_tensor("s", "stage", "s", golden, moved, spread=0.02)
    assert within.status == "rounding"
    assert classify([within], [], _same_detections()) == "equivalent"


def test_exit_code_rejects_unknown_verdicts():
    assert exit_code("drift") == 1 and exit_code("precision_loss", strict=True) == 1
    with pytest.raises(ValueError, match="unknown verdict"):
        exit_code("fine")


def test_headlines_are_one_sentence(workload):
    a, w1, w2, twin, golden, perm = workload
    same = _stages(golden, golden, twin)
    reordered = _stages(golden, _pipeline(a, w1, w2, permute=perm), twin)
    texts = {
        "identical": headline("identical", same, [], _same_detections()),
        "equivalent": headline("equivalent", reordered, [], _same_detections()),
        "drift": headline("drift", reordered, [], _one_removed(), "hidden",
                          "env.TF_ENABLE_ONEDNN_OPTS: unset -> '0' (confirmed)"),
    }
    assert texts["identical"].startswith("Identical: all 2 stage outputs")
    assert "2 of 2 stages" in texts["equivalent"]
    assert texts["drift"].endswith("TF_ENABLE_ONEDNN_OPTS: unset -> '0' (confirmed).")
    for text in texts.values():
        assert text.endswith(".") and text.count(". ") == 0 and "\n" not in text


# --- verdicts and headlines on hand-made statuses, every word checked -----------------------


def _array(name: str, status: str, kind: str = "stage", max_rel: float = 0.0, **errors):
    identical = status == "identical"
    return TensorComparison(
        name=name, kind=kind, family=name, shape=(4,), dtype="float32", identical=identical,
        max_abs=max_rel, max_rel=max_rel, mismatch_fraction=0.0 if identical else 0.5,
        ulp_at_scale=0.0, cosine=1.0, golden_error=errors.get("golden_error"),
        current_error=errors.get("current_error"), error_growth=errors.get("error_growth"),
        status=status)


def _diff(removed=0, added=0, class_changed=0, fragile=0, moved=False, golden=4):
    changes = [DetectionChange(kind, 0, 0, 0, 0.75, 0.5, (0, 0, 1, 1), (0, 0, 1, 1), 1.0, 0.01,
                               i < fragile)
               for i, kind in enumerate(["removed"] * removed + ["added"] * added
                                        + ["class_changed"] * class_changed)]
    if moved:
        changes.append(DetectionChange("matched", 0, 0, 0, 0.75, 0.625, (0, 0, 1, 1),
                                       (0, 0, 1, 1), 1.0, None, False))
    matched = golden - removed - class_changed
    return DetectionDiff(golden, matched + added + class_changed, matched, added, removed,
                         class_changed, 0.125 if moved else 0.0, 1.0, 0.0, tuple(changes), 0.05)


@pytest.mark.parametrize(("statuses", "diff", "verdict"), [
    (("identical", "identical"), _diff(), "identical"),
    (("identical", "identical"), _diff(moved=True), "equivalent"),  # a score moved
    (("identical", "rounding"), _diff(), "equivalent"),
    (("identical", "identical"), _diff(removed=1), "drift"),
    (("identical", "identical"), _diff(added=1), "drift"),
    (("identical", "identical"), _diff(class_changed=1), "drift"),
    (("rounding", "changed"), _diff(), "drift"),
    (("rounding", "not_run"), _diff(), "drift"),
    (("changed", "precision_loss"), _diff(removed=2), "precision_loss"),
    (("identical", "precision_loss"), _diff(), "precision_loss"),
])
def test_classify_table(statuses, diff, verdict):
    stage = _array("resize", statuses[0])
    probe = _array("matmul", statuses[1], kind="probe")
    assert classify([stage], [probe], diff) == verdict
    assert classify([probe, stage], [], diff) == verdict


@pytest.mark.parametrize(("verdict", "plain", "strict"), [
    ("identical", 0, 0), ("equivalent", 0, 1), ("drift", 1, 1), ("precision_loss", 1, 1),
])
def test_exit_codes(verdict, plain, strict):
    assert exit_code(verdict) == plain
    assert exit_code(verdict, strict=True) == strict


def test_unknown_verdict_message_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        exit_code("fine")
    assert str(err.value) == (
        "unknown verdict 'fine'; expected one of identical, equivalent, drift, precision_loss")
    with pytest.raises(ValueError) as err:
        headline("fine", [], [], _diff())
    assert str(err.value) == "unknown verdict 'fine'"


def test_identical_headline():
    text = headline("identical", [_array("decode", "identical"), _array("resize", "identical")],
                    [_array("exp", "identical", kind="probe")], _diff())
    assert text == ("Identical: all 2 stage outputs and 1 probes are bit-identical to golden; "
                    "all 4 detections unchanged.")


def test_equivalent_headline_names_the_worst_difference():
    stages = [_array("decode", "identical"), _array("resize", "rounding", max_rel=2.5e-07),
              _array("stem", "rounding", max_rel=1e-06)]
    probes = [_array("exp", "rounding", kind="probe", max_rel=3e-05),
              _array("sum", "identical", kind="probe")]
    text = headline("equivalent", stages, probes, _diff(moved=True))
    assert text == ("Equivalent: 2 of 3 stages and 1 of 2 probes differ only by rounding (at most "
                    "3.0e-05 of scale, same error against the float64 reference); all 4 "
                    "detections still match (scores move by up to 0.125).")
    only_stages = headline("equivalent", stages, [_array("sum", "identical", kind="probe")],
                           _diff())
    assert "1.0e-06 of scale" in only_stages and "0 of 1 probes" in only_stages
    nothing = headline("equivalent", [_array("decode", "identical")], [], _diff(moved=True))
    assert "(at most 0 of scale" in nothing


def test_precision_loss_headline_names_the_largest_growth():
    stages = [
        _array("stem", "precision_loss", max_rel=1e-3, golden_error=1.5e-07,
               current_error=2.5e-05, error_growth=166.66666666666669),
        _array("head", "precision_loss", max_rel=1e-2, golden_error=1e-07,
               current_error=0.0029, error_growth=29000.0),
        _array("resize", "changed", max_rel=0.5, golden_error=1e-7, current_error=1e-1,
               error_growth=1e6),
    ]
    text = headline("precision_loss", stages, [], _diff(removed=1, fragile=1))
    assert text == ("Precision loss: the error against the float64 reference grew 29,000x at "
                    "stage 'head' (1.0e-07 -> 2.9e-03), the signature of reduced-precision math "
                    "such as TF32 or bf16; detections changed: 1 removed (golden had 4), a "
                    "near-tie within the measured noise: expected fragility.")
    exact = [_array("stem", "precision_loss", golden_error=0.0, current_error=1e-05,
                    error_growth=float("inf")),
             _array("head", "precision_loss", golden_error=None, current_error=None,
                    error_growth=None)]
    assert headline("precision_loss", exact, [], _diff()).startswith(
        "Precision loss: the error against the float64 reference grew from exactly 0 at stage "
        "'stem' (0 -> 1.0e-05)")
    unknown = headline("precision_loss", exact[1:], [], _diff())
    assert unknown.startswith("Precision loss: the error against the float64 reference grew n/a "
                              "at stage 'head' (n/a -> n/a)")


def test_drift_headlines():
    beyond = [_array("decode", "identical"), _array("resize", "changed", max_rel=0.25),
              _array("stem", "not_run", max_rel=float("inf")),
              _array("head", "rounding", max_rel=1e-06)]
    assert headline("drift", beyond[:2] + beyond[3:], [], _diff(), first_divergence="resize") == (
        "Drift: outputs moved beyond rounding noise from stage 'resize' on (up to 0.25 of scale, "
        "stage 'resize'); all 4 detections unchanged.")
    assert headline("drift", beyond, [], _diff()) == (
        "Drift: outputs moved beyond rounding noise (up to inf of scale, stage 'stem'); all 4 "
        "detections unchanged.")
    probe = [_array("exp", "changed", kind="probe", max_rel=0.5)]
    assert headline("drift", beyond[:2], probe, _diff(), top_cause="env.X: unset -> '0'") == (
        "Drift: outputs moved beyond rounding noise (up to 0.5 of scale, probe 'exp'); all 4 "
        "detections unchanged; cause: env.X: unset -> '0'.")
    rounding = [_array("resize", "rounding", max_rel=2e-07),
                _array("exp", "rounding", kind="probe", max_rel=3e-06)]
    assert headline("drift", rounding[:1], rounding[1:], _diff(added=1, class_changed=1)) == (
        "Drift: the numbers differ only by rounding (up to 3.0e-06 of scale), but detections "
        "changed: 1 added, 1 changed class (golden had 4).")
    assert headline("drift", [_array("resize", "identical")], [], _diff(removed=1)) == (
        "Drift: detections changed: 1 removed (golden had 4).")


@pytest.mark.parametrize(("diff", "phrase"), [
    (_diff(removed=1, fragile=1), "1 removed (golden had 4), a near-tie within the measured "
                                  "noise: expected fragility"),
    (_diff(removed=1, added=1, fragile=2), "1 removed, 1 added (golden had 4), all near-ties "
                                           "within the measured noise: expected fragility"),
    (_diff(removed=2, class_changed=1, fragile=2), "2 removed, 1 changed class (golden had 4), "
                                                   "2 of 3 near-ties within the measured noise: "
                                                   "expected fragility"),
    (_diff(added=2, class_changed=1, fragile=1), "2 added, 1 changed class (golden had 4), 1 of 3 "
                                                 "near-ties within the measured noise: expected "
                                                 "fragility"),
    (_diff(removed=3, added=1), "3 removed, 1 added (golden had 4)"),
])
def test_detections_phrase(diff, phrase):
    assert headline("drift", [], [], diff) == f"Drift: detections changed: {phrase}."


def test_the_verdict_over_modes_is_the_worst_one():
    from envaudit.compare.verdict import worst

    assert worst([]) == "identical"
    assert worst(["identical", "identical"]) == "identical"
    assert worst(["identical", "equivalent"]) == "equivalent"
    assert worst(["equivalent", None]) == "drift"  # a mode that could not run is no pass
    assert worst(["drift", "precision_loss", "equivalent"]) == "precision_loss"
    assert worst(["precision_loss", None]) == "precision_loss"


def test_the_headline_names_the_modes_that_moved():
    from envaudit.compare.types import DetectionDiff, ModeResult
    from envaudit.compare.verdict import _modes_phrase

    same = DetectionDiff(1, 1, 1, 0, 0, 0, 0.0, 1.0, 0.0, (), 0.0)

    def modes(**verdicts):
        return [ModeResult(m, None, None, None, "cannot") if v == "not_run" else
                ModeResult(m, v, None, same) for m, v in verdicts.items()]

    assert _modes_phrase(modes(eager="identical")) == ""
    assert _modes_phrase(modes(eager="identical", graph="identical", xla="identical")) == \
        "; in all 3 modes (eager, graph and xla)"
    assert _modes_phrase(modes(eager="identical", graph="identical", xla="equivalent")) == \
        "; moved in xla mode (eager and graph identical)"
    assert _modes_phrase(modes(eager="drift", graph="equivalent", xla="identical")) == \
        "; moved in eager and graph modes (xla identical)"
    assert _modes_phrase(modes(eager="drift", graph="drift", xla="drift")) == \
        "; moved in eager, graph and xla modes"
    assert _modes_phrase(modes(eager="identical", graph="identical", xla="not_run")) == \
        "; xla mode could not run here"
    assert _modes_phrase(modes(eager="drift", graph="not_run", xla="not_run")) == \
        "; moved in eager mode; graph and xla modes could not run here"
