"""The op probes' exact values: each probe's math in float64 NumPy, on the probe's own inputs.

They make the probes a precision witness. An fp32 kernel's relative RMS error against these,
RMS(fp32 - fp64) / RMS(fp64), measured as the detector stages are against the twin (``twin.py``),
sits at a few float32 unit roundoffs; a kernel that computes in TF32, bf16 or fp16 lands 100x
and more above it.

The references follow TensorFlow's definitions: "SAME" padding that puts the extra pixel after
(for stride 2, and over the dilated span for dilation 2), exact (erf) GELU, half-pixel-centre
bilinear resize without antialiasing (the twin's, shared), and for ``resize_area_antialias`` the
exact box-filter average: ``tf.image.resize`` ignores ``antialias`` for "area" and runs
ResizeArea, whose output is each output pixel's footprint averaged with fractional coverage.
Each ``xla.NAME`` probe has the reference of ``NAME``: the same math, compiled.

No reference, on purpose, for probes whose value is an implementation's, not a definition's:
- ``resize_bicubic``: ResizeBicubic reads its Keys-cubic weights from a 1024-entry table, so the
  sample position is rounded to 1/1024 pixel; against the true cubic its fp32 output is ~4600
  unit roundoffs off. Matching it would mean copying TensorFlow's table, not its math, and a
  kernel without that table (another device, another library) would look like lost precision;
- ``jpeg_decode_*``: uint8 pixels from libjpeg's chosen integer IDCT: nothing is rounded to fp32,
  and the float IDCT is not what either DCT method computes;
- ``nms_near_tie``: a decision (kept indices and their scores), not a computed value.

Constraints for the next editor:
- NumPy only: importing or calling this must never import TensorFlow (a check computes the
  references in a process that may not have it loaded).
- Inputs come from ``probe_inputs`` (the probes' very bits), never regenerated here.
- Every reference is computed in float64 from the float32 inputs, with no fp32 step in between.
- Cold ``references()`` takes ~15 ms, mostly generating the inputs: vectorised NumPy, no loops
  over pixels, and matrices small enough that BLAS does not wake its thread pool.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from envaudit.workload import probe_inputs as inputs
from envaudit.workload import twin
from envaudit.workload.architecture import PROBE_FAMILIES


@functools.cache
def references() -> Mapping[str, np.ndarray]:
    """Float64 value of every probe that has an exact definition, keyed by probe name in
    ``PROBE_FAMILIES`` order, each of the probe's shape. Read-only: the cache is shared."""
    exact = _eager_references()
    out = {name: exact[name.removeprefix("xla.")] for name in PROBE_FAMILIES
           if name.removeprefix("xla.") in exact}
    for value in out.values():
        value.flags.writeable = False
    return MappingProxyType(out)


def _eager_references() -> dict[str, np.ndarray]:
    x = _f64(inputs.transcendental_input())
    image = _f64(inputs.conv_image())
    kernel3 = _f64(inputs.conv3x3_kernel())
    pixels = _f64(inputs.resize_pixels())
    return {
        "exp": np.exp(x),
        "log": np.log(_f64(inputs.log_input())),
        "tanh": np.tanh(x),
        "sigmoid": twin.sigmoid(x),
        "erf": _elementwise(math.erf, x),
        # erfc, not 1 + erf: near x = -6, 1 + erf(x / sqrt 2) cancels to ~1e-9 and keeps only
        # half of float64's digits.
        "gelu": 0.5 * x * _elementwise(math.erfc, -x / math.sqrt(2.0)),
        "softplus": np.log1p(np.exp(x)),
        "reduce_sum_long": np.asarray(inputs.long_sum_input().sum(dtype=np.float64)),
        "reduce_mean_rows": inputs.mean_rows_input().mean(axis=1, dtype=np.float64),
        "matmul_square": _matmul(inputs.matmul_square_operands()),
        "matmul_long_inner": _matmul(inputs.matmul_long_inner_operands()),
        "matmul_wide": _matmul(inputs.matmul_wide_operands()),
        "conv3x3": twin.conv(image, kernel3),
        "conv1x1": twin.conv(image, _f64(inputs.conv1x1_kernel())),
        "conv_strided": twin.conv(image, kernel3, stride=2),
        "conv_dilated": _dilated_conv(image, kernel3, rate=2),
        "depthwise3x3": twin.depthwise(image, _f64(inputs.depthwise_kernel()), stride=1),
        "resize_bilinear": twin.resize_bilinear(pixels, inputs.RESIZE_INTERPOLATED_SIZE),
        "resize_area_antialias": _resize_area(pixels, inputs.RESIZE_AREA_SIZE),
        "softmax": _softmax(_f64(inputs.softmax_logits())),
    }


def _f64(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float64)


def _elementwise(function: Callable[[float], float], values: np.ndarray) -> np.ndarray:
    """A scalar ``math`` function over an array (NumPy has no erf; 4096 calls take ~0.4 ms)."""
    return np.array([function(v) for v in values.tolist()]).reshape(values.shape)


def _matmul(operands: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    a, b = operands
    return _f64(a) @ _f64(b)


def _dilated_conv(x: np.ndarray, kernel: np.ndarray, rate: int) -> np.ndarray:
    """Stride-1 "SAME" convolution with the kernel's taps ``rate`` pixels apart: TensorFlow pads
    for the dilated span, (k - 1) * rate + 1, with the extra pixel after."""
    pad = (kernel.shape[0] - 1) * rate
    before, after = pad // 2, pad - pad // 2
    padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (pad + 1, pad + 1), axis=(1, 2))
    taps = windows[..., ::rate, ::rate]  # [N, H, W, C, k, k]
    # Only the k * k real taps: a kernel spread out with zeros would be as exact, but its ~3x
    # larger product wakes BLAS's thread pool, which costs more than everything else here.
    return np.einsum("nhwcij,ijco->nhwo", taps, kernel, optimize=True)


def _resize_area(images: np.ndarray, size: int) -> np.ndarray:
    """Box-filter resize of NHWC ``images`` to ``size`` x ``size``: each output pixel is the mean
    of its footprint in the input, edge pixels weighted by the fraction they cover."""
    _n, in_h, in_w, _c = images.shape
    return np.einsum("yi,nijc,xj->nyxc", _area_weights(in_h, size), images,
                     _area_weights(in_w, size), optimize=True)


def _area_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in]: the length of input pixel i inside output pixel o's footprint, over its width."""
    scale = in_size / out_size
    start = np.arange(out_size)[:, None] * scale
    pixel = np.arange(in_size)[None, :]
    overlap = np.minimum(pixel + 1, start + scale) - np.maximum(pixel, start)
    return np.clip(overlap, 0.0, None) / scale


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
