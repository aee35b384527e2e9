"""The probes' float64 references are the probes' math: TensorFlow's fp32 output sits at the fp32
floor against each, and the same output at bfloat16 precision sits far above it, so the probes
witness whether this environment computes fp32 at full precision. Real TensorFlow on the CPU."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from envaudit.compare.tensors import relative_rms_error
from envaudit.workload.architecture import PROBE_FAMILIES
from envaudit.workload.assets import load_assets
from envaudit.workload.probe_reference import references

FP32_UNIT = 2.0**-24
# A few unit roundoffs per operation, grown by long sums: 64 is far above what any probe shows
# (at most ~9) and far below bfloat16's unit roundoff (2**-9, 32768 fp32 units).
FP32_FLOOR = 64 * FP32_UNIT
WITNESSED = [name for name in references() if PROBE_FAMILIES[name] in ("matmul", "conv")]


@pytest.fixture(scope="module")
def probes() -> dict[str, np.ndarray]:
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.probes import run_probes

    assets = load_assets()
    jpeg = next(data for name, data in zip(assets.image_names, assets.encoded)
                if name.endswith(".jpg"))
    return run_probes(jpeg)


def bfloat16_precision(x: np.ndarray) -> np.ndarray:
    """``x`` rounded (to nearest, ties to even) to bfloat16's 8 significant bits, kept float32."""
    bits = x.astype(np.float32).view(np.uint32)
    tie_to_even = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + np.uint32(0x7FFF) + tie_to_even) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def test_every_probe_with_an_exact_definition_has_a_reference():
    assert set(PROBE_FAMILIES) - set(references()) == {
        "resize_bicubic", "jpeg_decode_default", "jpeg_decode_accurate", "nms_near_tie"}
    assert references()["xla.conv3x3"] is references()["conv3x3"]


@pytest.mark.parametrize("name", list(references()))
def test_tensorflow_fp32_sits_at_the_fp32_floor(probes, name):
    reference = references()[name]
    assert reference.dtype == np.float64
    assert reference.shape == probes[name].shape
    error = relative_rms_error(probes[name], reference)
    assert 0.0 < error < FP32_FLOOR, f"{name}: {error / FP32_UNIT:.1f} fp32 unit roundoffs"


@pytest.mark.parametrize("name", WITNESSED)
def test_bfloat16_precision_is_visible(probes, name):
    fp32_error = relative_rms_error(probes[name], references()[name])
    bf16_error = relative_rms_error(bfloat16_precision(probes[name]), references()[name])
    assert bf16_error > 8 * fp32_error, f"{name}: {bf16_error:.1e} vs fp32 {fp32_error:.1e}"


def test_bfloat16_rounding_keeps_eight_significant_bits():
    # bfloat16's spacing at 1 is 2**-7: halfway values go to the even neighbour
    halfway = np.float32([1 + 2**-8, 1 + 3 * 2**-8, -3.0, 1 + 2**-7 + 2**-9])
    assert bfloat16_precision(halfway).tolist() == [1.0, 1 + 2**-6, -3.0, 1 + 2**-7]


def test_computing_the_references_does_not_import_tensorflow():
    code = ("import sys\nfrom envaudit.workload.probe_reference import references\n"
            "references()\nprint('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "False"
