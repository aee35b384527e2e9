"""Op probes: fixed inputs through single TensorFlow ops, one recorded array per probe.

When the pipeline drifts, the probes say which family of kernels moved (the ``xla.*`` probes: the
same ops compiled by XLA, which emits its own code for them): transcendental functions
(math library / framework version), reductions and matmuls (BLAS/oneDNN kernels, instruction set,
threads), convolutions, resize, JPEG decode (image codec), softmax, NMS (near-tie decisions).
Inputs are generated from integer arithmetic, so they are the same bits on every machine and
NumPy version.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from envaudit.workload.architecture import PROBE_FAMILIES
from envaudit.workload.tf_runtime import silenced_stderr


def fixed_values(count: int, seed: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """``count`` float32 values in [low, high) from a 64-bit LCG: identical bits everywhere."""
    state = (np.arange(count, dtype=np.uint64) + np.uint64(seed)) * np.uint64(6364136223846793005)
    state = state + np.uint64(1442695040888963407)
    state ^= state >> np.uint64(29)
    state *= np.uint64(0xBF58476D1CE4E5B9)
    state ^= state >> np.uint64(32)
    unit = (state >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return (low + (high - low) * unit).astype(np.float32)


def _t(count: int, seed: int, shape: tuple[int, ...], low=-1.0, high=1.0) -> tf.Tensor:
    return tf.constant(fixed_values(count, seed, low, high).reshape(shape))


def _near_tie_nms() -> np.ndarray:
    """Boxes whose scores differ by one float32 ulp and whose IoUs sit at the threshold."""
    base = np.float32(0.8)
    scores = np.array([base, np.nextafter(base, np.float32(1)), base, np.float32(0.5)], np.float32)
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0],
                      [0.0, 0.0, 1.0, 2.0 / 3.0], [0.5, 0.5, 1.5, 1.5]], np.float32)
    selected, kept_scores = tf.image.non_max_suppression_with_scores(
        boxes, scores, max_output_size=4, iou_threshold=0.5, score_threshold=0.0)
    return np.concatenate([selected.numpy().astype(np.float32), kept_scores.numpy()])


def run_probes(jpeg_bytes: bytes) -> dict[str, np.ndarray]:
    """Every probe's output, in ``PROBE_FAMILIES`` order."""
    x = _t(4096, 1, (4096,), -6.0, 6.0)
    positive = _t(4096, 2, (4096,), 1e-3, 100.0)
    image = _t(16 * 16 * 8, 3, (1, 16, 16, 8))
    kernel3 = _t(3 * 3 * 8 * 16, 4, (3, 3, 8, 16))
    kernel1 = _t(8 * 16, 5, (1, 1, 8, 16))
    dw = _t(3 * 3 * 8, 6, (3, 3, 8, 1))
    pixels = _t(1 * 32 * 32 * 3, 7, (1, 32, 32, 3), 0.0, 255.0)
    probes: dict[str, Callable[[], tf.Tensor]] = {
        "exp": lambda: tf.exp(x),
        "log": lambda: tf.math.log(positive),
        "tanh": lambda: tf.tanh(x),
        "sigmoid": lambda: tf.sigmoid(x),
        "erf": lambda: tf.math.erf(x),
        "gelu": lambda: tf.nn.gelu(x, approximate=False),
        "softplus": lambda: tf.nn.softplus(x),
        "reduce_sum_long": lambda: tf.reduce_sum(_t(1 << 20, 8, (1 << 20,))),
        "reduce_mean_rows": lambda: tf.reduce_mean(_t(64 * 4096, 9, (64, 4096)), axis=1),
        "matmul_square": lambda: tf.matmul(_t(64 * 64, 10, (64, 64)), _t(64 * 64, 11, (64, 64))),
        "matmul_long_inner": lambda: tf.matmul(_t(8 * 8192, 12, (8, 8192)),
                                               _t(8192 * 8, 13, (8192, 8))),
        "matmul_wide": lambda: tf.matmul(_t(96 * 24, 14, (96, 24)), _t(24 * 96, 15, (24, 96))),
        "conv3x3": lambda: tf.nn.conv2d(image, kernel3, 1, "SAME"),
        "conv1x1": lambda: tf.nn.conv2d(image, kernel1, 1, "SAME"),
        "conv_strided": lambda: tf.nn.conv2d(image, kernel3, 2, "SAME"),
        "conv_dilated": lambda: tf.nn.conv2d(image, kernel3, 1, "SAME", dilations=2),
        "depthwise3x3": lambda: tf.nn.depthwise_conv2d(image, dw, [1, 1, 1, 1], "SAME"),
        "resize_bilinear": lambda: tf.image.resize(pixels, [21, 21], "bilinear"),
        "resize_bicubic": lambda: tf.image.resize(pixels, [21, 21], "bicubic"),
        "resize_area_antialias": lambda: tf.image.resize(pixels, [13, 13], "area", antialias=True),
        "jpeg_decode_default": lambda: tf.io.decode_jpeg(jpeg_bytes, channels=3),
        "jpeg_decode_accurate": lambda: tf.io.decode_jpeg(
            jpeg_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        "softmax": lambda: tf.nn.softmax(_t(64 * 100, 16, (64, 100), -8.0, 8.0)),
        "nms_near_tie": _near_tie_nms,
    }
    # The xla.* probes: one compiled function (one compile, not eleven) over the same ops.
    compiled_names = [name for name in PROBE_FAMILIES if name.startswith("xla.")]
    compiled = tf.function(lambda: {name: probes[name[4:]]() for name in compiled_names},
                           jit_compile=True, autograph=False)
    with silenced_stderr():  # XLA logs its first compile on fd 2
        xla_results = {name: value.numpy() for name, value in compiled().items()}
    results = {}
    for name in PROBE_FAMILIES:
        if name in xla_results:
            results[name] = xla_results[name]
            continue
        value = probes[name]()
        results[name] = value if isinstance(value, np.ndarray) else value.numpy()
    return results
