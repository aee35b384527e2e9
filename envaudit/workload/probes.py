"""Op probes: fixed inputs through single TensorFlow ops, one recorded array per probe.

When the pipeline drifts, the probes say which family of kernels moved (the ``xla.*`` probes: the
same ops compiled by XLA, which emits its own code for them): transcendental functions
(math library / framework version), reductions and matmuls (BLAS/oneDNN kernels, instruction set,
threads), convolutions, resize, JPEG decode (image codec), softmax, NMS (near-tie decisions).
The inputs (``probe_inputs``) are generated from integer arithmetic, so they are the same bits on
every machine and NumPy version; ``probe_reference`` computes the exact, float64 value of each probe
that has one from the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from envaudit import modes
from envaudit.workload import devices
from envaudit.workload import probe_inputs as inputs
from envaudit.workload.architecture import PROBE_FAMILIES
from envaudit.workload.tf_runtime import silenced_stderr


def _near_tie_nms() -> tf.Tensor:
    """Boxes whose scores differ by one float32 ulp and whose IoUs sit at the threshold."""
    base = np.float32(0.8)
    scores = np.array([base, np.nextafter(base, np.float32(1)), base, np.float32(0.5)], np.float32)
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0],
                      [0.0, 0.0, 1.0, 2.0 / 3.0], [0.5, 0.5, 1.5, 1.5]], np.float32)
    selected, kept_scores = tf.image.non_max_suppression_with_scores(
        boxes, scores, max_output_size=4, iou_threshold=0.5, score_threshold=0.0)
    return tf.concat([tf.cast(selected, tf.float32), kept_scores], axis=0)


def run_probes(jpeg_bytes: bytes, beside: str | None = None) -> dict[str, np.ndarray]:
    """The probes' outputs, in ``PROBE_FAMILIES`` order: every probe, or those that run beside a
    run in mode ``beside`` (``modes.runs_beside``: a user model's)."""
    return run_probes_on_devices(jpeg_bytes, beside)[0]


def run_probes_on_devices(jpeg_bytes: bytes, beside: str | None = None
                          ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``run_probes``, and the device each probe was computed on (``devices.short``)."""
    x = tf.constant(inputs.transcendental_input())
    positive = tf.constant(inputs.log_input())
    image = tf.constant(inputs.conv_image())
    kernel3 = tf.constant(inputs.conv3x3_kernel())
    kernel1 = tf.constant(inputs.conv1x1_kernel())
    dw = tf.constant(inputs.depthwise_kernel())
    pixels = tf.constant(inputs.resize_pixels())
    interpolated_size = [inputs.RESIZE_INTERPOLATED_SIZE] * 2
    area_size = [inputs.RESIZE_AREA_SIZE] * 2

    def matmul(operands: tuple[np.ndarray, np.ndarray]) -> tf.Tensor:
        return tf.matmul(tf.constant(operands[0]), tf.constant(operands[1]))

    probes: dict[str, Callable[[], tf.Tensor]] = {
        "exp": lambda: tf.exp(x),
        "log": lambda: tf.math.log(positive),
        "tanh": lambda: tf.tanh(x),
        "sigmoid": lambda: tf.sigmoid(x),
        "erf": lambda: tf.math.erf(x),
        "gelu": lambda: tf.nn.gelu(x, approximate=False),
        "softplus": lambda: tf.nn.softplus(x),
        "reduce_sum_long": lambda: tf.reduce_sum(tf.constant(inputs.long_sum_input())),
        "reduce_mean_rows": lambda: tf.reduce_mean(tf.constant(inputs.mean_rows_input()), axis=1),
        "matmul_square": lambda: matmul(inputs.matmul_square_operands()),
        "matmul_long_inner": lambda: matmul(inputs.matmul_long_inner_operands()),
        "matmul_wide": lambda: matmul(inputs.matmul_wide_operands()),
        "conv3x3": lambda: tf.nn.conv2d(image, kernel3, 1, "SAME"),
        "conv1x1": lambda: tf.nn.conv2d(image, kernel1, 1, "SAME"),
        "conv_strided": lambda: tf.nn.conv2d(image, kernel3, 2, "SAME"),
        "conv_dilated": lambda: tf.nn.conv2d(image, kernel3, 1, "SAME", dilations=2),
        "depthwise3x3": lambda: tf.nn.depthwise_conv2d(image, dw, [1, 1, 1, 1], "SAME"),
        "resize_bilinear": lambda: tf.image.resize(pixels, interpolated_size, "bilinear"),
        "resize_bicubic": lambda: tf.image.resize(pixels, interpolated_size, "bicubic"),
        "resize_area_antialias": lambda: tf.image.resize(pixels, area_size, "area", antialias=True),
        "jpeg_decode_default": lambda: tf.io.decode_jpeg(jpeg_bytes, channels=3),
        "jpeg_decode_accurate": lambda: tf.io.decode_jpeg(
            jpeg_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        "softmax": lambda: tf.nn.softmax(tf.constant(inputs.softmax_logits())),
        "nms_near_tie": _near_tie_nms,
    }
    wanted = [name for name in PROBE_FAMILIES if modes.runs_beside(name, beside)]
    # The xla.* probes: one compiled function (one compile, not eleven) over the same ops.
    prefix = modes.get(modes.XLA).probe_prefix or ""
    compiled_names = [name for name in wanted if modes.probe_mode(name) == modes.XLA]
    compiled = tf.function(lambda: {name: probes[name[len(prefix):]]() for name in compiled_names},
                           jit_compile=True, autograph=False)
    with silenced_stderr():  # XLA logs its first compile on fd 2
        xla_results = dict(compiled()) if compiled_names else {}
    results, placed = {}, {}
    for name in wanted:
        value = xla_results[name] if name in xla_results else probes[name]()
        results[name] = value if isinstance(value, np.ndarray) else value.numpy()
        placed[name] = devices.of(value)
    return results, placed
