"""The detector's shape, shared by the TensorFlow pipeline, its float64 twin and training.

NumPy and the mode registry only. Changing anything here changes the workload: bump
``WORKLOAD_VERSION`` and retrain.
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from envaudit import modes
from envaudit.modes import Mode

WORKLOAD_ID = "envaudit.ssd-shapes"
WORKLOAD_VERSION = "2"  # 2: every execution mode recorded; 1 (envaudit 0.1): eager only
# Earlier versions whose eager computation is this one's (same detector, assets and probes): their
# bundles are checked in eager mode.
EAGER_COMPATIBLE_VERSIONS = ("1",)

INPUT_SIZE = 80  # the network's input, after resize
BN_EPSILON = 1e-3
BOX_SCALES = np.array([10.0, 10.0, 5.0, 5.0])  # (dy, dx, dh, dw) delta scaling, as in SSD

# Backbone: (name, stride, input channels, output channels); each block is depthwise 3x3
# (stride) + BN + ReLU6, then pointwise 1x1 + BN + swish.
STEM_CHANNELS = 16
BLOCKS = (("block1", 2, 16, 32), ("block2", 2, 32, 48), ("block3", 2, 48, 64))

# Two feature scales: (feature stage, grid size, anchors as (size, aspect h/w), size a fraction
# of the image). Objects are 0.16..0.5 of the image per side, of any aspect in about 1:3..3:1.
FEATURE_SCALES = (
    ("block2", INPUT_SIZE // 8, ((0.18, 1.0), (0.26, 1.0), (0.22, 2.0), (0.22, 0.5))),
    ("context", INPUT_SIZE // 16, ((0.36, 1.0), (0.48, 1.0), (0.42, 2.0), (0.42, 0.5))),
)
ANCHORS_PER_CELL = 4
NUM_CLASSES = 3

# Stage names in pipeline order, as recorded in golden bundles.
STAGES = (
    "decode", "resize", "normalize", "stem", "block1", "block2", "block3", "context",
    "class_logits", "box_deltas", "scores", "boxes", "nms",
)
CORE = STAGES[1:-1]  # resize .. boxes: what the xla mode compiles and the tflite modes convert


# The built-in execution modes (``envaudit.modes``, the registry, says what each runs). Kept for
# the callers that still import it; new code reads ``modes.names()``, which includes modes
# registered later.
MODES: tuple[str, ...] = get_args(Mode)
# What runs outside XLA's compiled cluster in the xla mode, and why.
OUTSIDE_XLA = {
    "decode": "eager TensorFlow ops: image decoders have no XLA kernel",
    "nms": "eager TensorFlow ops: CombinedNonMaxSuppression has no XLA CPU kernel",
}

# Op probes (``probes.py``): name -> kernel family; the order is the recording order.
PROBE_FAMILIES: dict[str, str] = {
    "exp": "transcendental", "log": "transcendental", "tanh": "transcendental",
    "sigmoid": "transcendental", "erf": "transcendental", "gelu": "transcendental",
    "softplus": "transcendental",
    "reduce_sum_long": "reduction", "reduce_mean_rows": "reduction",
    "matmul_square": "matmul", "matmul_long_inner": "matmul", "matmul_wide": "matmul",
    "conv3x3": "conv", "conv1x1": "conv", "conv_strided": "conv", "conv_dilated": "conv",
    "depthwise3x3": "conv",
    "resize_bilinear": "resize", "resize_bicubic": "resize", "resize_area_antialias": "resize",
    "jpeg_decode_default": "decode", "jpeg_decode_accurate": "decode",
    "softmax": "softmax",
    "nms_near_tie": "nms",
    # The same inputs through the same ops compiled by XLA, for the families where XLA emits its
    # own code on the CPU instead of calling TensorFlow's kernels.
    "xla.exp": "transcendental", "xla.tanh": "transcendental", "xla.erf": "transcendental",
    "xla.gelu": "transcendental",
    "xla.reduce_sum_long": "reduction", "xla.reduce_mean_rows": "reduction",
    "xla.matmul_square": "matmul", "xla.matmul_long_inner": "matmul",
    "xla.conv3x3": "conv", "xla.depthwise3x3": "conv",
    "xla.softmax": "softmax",
}
# Probes of workload version 1 (envaudit 0.1): the eager ones.
PROBES_V1 = tuple(name for name in PROBE_FAMILIES if not name.startswith("xla."))


def probe_mode(name: str) -> str:
    """The execution mode a probe runs in (``modes.probe_mode``: ``xla.*`` probes are
    jit-compiled, the rest run op by op)."""
    return modes.probe_mode(name)


def anchors() -> np.ndarray:
    """Anchor boxes as float64 [A, 4] (cy, cx, h, w), scale by scale, row-major, size-minor."""
    rows = []
    for _stage, grid, sizes in FEATURE_SCALES:
        centers = (np.arange(grid) + 0.5) / grid
        for cy in centers:
            for cx in centers:
                for size, aspect in sizes:
                    rows.append((cy, cx, size * np.sqrt(aspect), size / np.sqrt(aspect)))
    return np.asarray(rows, dtype=np.float64)


def decode_boxes(deltas: np.ndarray, anchor_boxes: np.ndarray) -> np.ndarray:
    """Box deltas [..., A, 4] -> boxes (ymin, xmin, ymax, xmax), in float64 (the twin's math)."""
    d = deltas / BOX_SCALES
    cy = anchor_boxes[:, 0] + d[..., 0] * anchor_boxes[:, 2]
    cx = anchor_boxes[:, 1] + d[..., 1] * anchor_boxes[:, 3]
    h = anchor_boxes[:, 2] * np.exp(d[..., 2])
    w = anchor_boxes[:, 3] * np.exp(d[..., 3])
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def encode_boxes(boxes: np.ndarray, anchor_boxes: np.ndarray) -> np.ndarray:
    """Inverse of ``decode_boxes`` for training targets: boxes [A, 4] matched to anchors [A, 4]."""
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + h / 2
    cx = boxes[:, 1] + w / 2
    d = np.stack(
        [
            (cy - anchor_boxes[:, 0]) / anchor_boxes[:, 2],
            (cx - anchor_boxes[:, 1]) / anchor_boxes[:, 3],
            np.log(np.maximum(h, 1e-6) / anchor_boxes[:, 2]),
            np.log(np.maximum(w, 1e-6) / anchor_boxes[:, 3]),
        ],
        axis=-1,
    )
    return d * BOX_SCALES


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes a [M, 4] against b [K, 4] -> float64 [M, K]; 0 where the union is 0."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def corners(anchor_boxes: np.ndarray) -> np.ndarray:
    cy, cx, h, w = anchor_boxes.T
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def weight_shapes() -> dict[str, tuple[int, ...]]:
    """Every weight of the detector, by name, in a fixed order."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for part in ("gamma", "beta", "mean", "var"):
            shapes[f"{prefix}/{part}"] = (channels,)

    shapes["stem/conv"] = (3, 3, 3, STEM_CHANNELS)
    bn("stem/bn", STEM_CHANNELS)
    for name, _stride, cin, cout in BLOCKS:
        shapes[f"{name}/dw"] = (3, 3, cin, 1)
        bn(f"{name}/dw_bn", cin)
        shapes[f"{name}/pw"] = (1, 1, cin, cout)
        bn(f"{name}/pw_bn", cout)
    ctx = BLOCKS[-1][3]
    shapes["context/dense_w"] = (ctx, ctx)
    shapes["context/dense_b"] = (ctx,)
    channels = {"block2": BLOCKS[1][3], "context": ctx}
    for stage, _grid, _sizes in FEATURE_SCALES:
        c = channels[stage]
        shapes[f"head_{stage}/cls_w"] = (3, 3, c, ANCHORS_PER_CELL * NUM_CLASSES)
        shapes[f"head_{stage}/cls_b"] = (ANCHORS_PER_CELL * NUM_CLASSES,)
        shapes[f"head_{stage}/box_w"] = (3, 3, c, ANCHORS_PER_CELL * 4)
        shapes[f"head_{stage}/box_b"] = (ANCHORS_PER_CELL * 4,)
    return shapes
