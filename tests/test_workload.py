"""The golden workload is a real detector, its float64 twin agrees to fp32 rounding, and it has an
honest near-tie. Runs real TensorFlow on the CPU, in this process (one shared run)."""

from __future__ import annotations

import numpy as np
import pytest

from envaudit.compare.detections import decision_margins
from envaudit.workload import architecture as arch
from envaudit.workload.assets import ground_truth, load_assets
from envaudit.workload.evaluation import recall_precision
from envaudit.workload.spec import PROBE_SPEC, STAGE_SPEC, TWIN_SPEC, validate_golden
from envaudit.workload.twin import Twin
from envaudit.workload.types import MAX_DETECTIONS


@pytest.fixture(scope="module")
def twin(workload_result):
    return Twin(load_assets().weights).run(workload_result.stages["decode"])


def rel_rms(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def test_stages_are_recorded_in_pipeline_order(workload_result):
    assert tuple(workload_result.stages) == arch.STAGES
    assert workload_result.stages["decode"].dtype == np.uint8
    assert workload_result.stages["decode"].shape == (6, 100, 100, 3)
    assert workload_result.stages["normalize"].shape == (6, arch.INPUT_SIZE, arch.INPUT_SIZE, 3)
    assert workload_result.stages["block2"].shape[1:3] == (arch.INPUT_SIZE // 8,) * 2
    assert workload_result.stages["context"].shape[1:3] == (arch.INPUT_SIZE // 16,) * 2
    assert workload_result.stages["nms"].shape == (6, MAX_DETECTIONS, 6)
    assert len(workload_result.stages) + len(workload_result.probes) >= 8


def test_probes_cover_every_kernel_family(workload_result):
    assert tuple(workload_result.probes) == tuple(arch.PROBE_FAMILIES)
    families = set(arch.PROBE_FAMILIES.values())
    assert {"transcendental", "reduction", "matmul", "conv", "resize", "decode", "softmax",
            "nms"} <= families
    for name, value in workload_result.probes.items():
        assert np.isfinite(value.astype(np.float64)).all(), name
    # the two JPEG DCT methods are separate arrays of the same image
    assert workload_result.probes["jpeg_decode_default"].shape == (100, 100, 3)


@pytest.mark.parametrize("stage", arch.STAGES[1:])
def test_twin_agrees_with_tensorflow_to_fp32_rounding(workload_result, twin, stage):
    error = rel_rms(workload_result.stages[stage].astype(np.float64), twin[stage])
    # fp32 rounding through a few layers: ~1e-7..1e-6. Lost precision (bf16, TF32) is >= 1e-4.
    assert error < 3e-6, f"{stage}: relative RMS {error:.2e} against float64"


def test_twin_error_is_rounding_not_zero(workload_result, twin):
    # the twin really is another computation: conv stages carry fp32 rounding error
    assert rel_rms(workload_result.stages["block2"].astype(np.float64), twin["block2"]) > 1e-8


def test_detector_finds_the_rendered_objects(workload_result):
    boxes, classes = ground_truth(load_assets())
    quality = recall_precision(workload_result.stages["nms"], boxes, classes)
    assert quality["objects"] == 24  # 3 scenes x 4 objects, as PNG and as JPEG
    assert quality["recall"] >= 0.9
    assert quality["precision"] >= 0.9
    assert (workload_result.detections.scores > 0.5).all()


def test_golden_set_has_an_honest_near_tie(workload_result):
    """Two overlapping candidates of one class whose scores are within 1e-3: NMS keeps one of them,
    and a perturbation that small would keep the other (a moved box, not a model bug)."""
    boxes = workload_result.stages["boxes"].astype(np.float64)
    scores = workload_result.stages["scores"].astype(np.float64)
    gaps = []
    for n in range(boxes.shape[0]):
        for c in range(arch.NUM_CLASSES):
            live = np.flatnonzero(scores[n, :, c] > 0.5)
            iou = arch.pairwise_iou(boxes[n, live], boxes[n, live])
            for i, j in zip(*np.nonzero(np.triu(iou > 0.5, 1))):
                gaps.append(abs(scores[n, live[i], c] - scores[n, live[j], c]))
    assert min(gaps) < 1e-3
    margins = decision_margins(workload_result.candidates)
    assert margins.margins[margins.final].min() < 1e-3


def test_workload_is_deterministic_in_one_environment(workload_result):
    from envaudit.workload import run_workload

    again = run_workload()
    for name, value in workload_result.stages.items():
        assert again.stages[name].tobytes() == value.tobytes(), name
    for name, value in workload_result.probes.items():
        assert again.probes[name].tobytes() == value.tobytes(), name


def test_a_real_run_records_exactly_what_the_golden_spec_says(workload_result, twin):
    """The spec a golden is held against (workload/spec.py) is what the workload produces."""
    got = {name: (a.dtype, a.shape) for name, a in workload_result.stages.items()}
    assert got == dict(STAGE_SPEC)
    got = {name: (a.dtype, a.shape) for name, a in workload_result.probes.items()}
    assert got == dict(PROBE_SPEC)
    assert {name: (a.dtype, a.shape) for name, a in twin.items()} == dict(TWIN_SPEC)
    validate_golden("this run", {"eager": workload_result.stages}, workload_result.probes, twin)
