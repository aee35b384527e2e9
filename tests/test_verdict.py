"""Verdicts on real arrays: fp32 reorderings are equivalent, reduced precision is precision loss."""

from __future__ import annotations

import numpy as np
import pytest

from envaudit.compare.model import DetectionChange, DetectionDiff
from envaudit.compare.noise import PRECISION_LOSS_FACTOR, at_noise_floor, lost_precision
from envaudit.compare.tensors import compare_tensor
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
    assert growth > PRECISION_LOSS_FACTOR
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
