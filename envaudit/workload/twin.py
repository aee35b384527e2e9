"""The float64 twin: the detector from decoded pixels on, in NumPy float64, with the same weights.

It is the "exact math" every fp32 run is measured against: RMS(fp32 - twin) / RMS(twin) per stage
tells rounding noise (~1e-7..1e-6) from lost precision (TF32, bf16: 1e-4 and up). It mirrors
``detector.py`` op for op, including TensorFlow's conventions: half-pixel-centre bilinear resize,
"SAME" padding that puts the extra pixel after, and greedy per-class NMS that suppresses IoU > t.
No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from envaudit.workload import architecture as arch
from envaudit.workload.types import IOU_THRESHOLD, MAX_DETECTIONS, SCORE_THRESHOLD


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resize(method="bilinear", antialias=False): half-pixel centres, edge clamped."""
    _n, in_h, in_w, _c = images.shape
    x = images.astype(np.float64)

    def axis(in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = in_size / size
        src = (np.arange(size) + 0.5) * scale - 0.5
        low = np.floor(src)
        frac = src - low
        lo = np.clip(low, 0, in_size - 1).astype(int)
        hi = np.clip(low + 1, 0, in_size - 1).astype(int)
        return lo, hi, frac

    y0, y1, fy = axis(in_h)
    x0, x1, fx = axis(in_w)
    wx = fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - wx) + x[:, y0][:, :, x1] * wx
    bottom = x[:, y1][:, :, x0] * (1 - wx) + x[:, y1][:, :, x1] * wx
    wy = fy[None, :, None, None]
    return top * (1 - wy) + bottom * wy


def _same_pad(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    _n, h, w, _c = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + k - h, 0)
    pad_w = max((out_w - 1) * stride + k - w, 0)
    return np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                      (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


def _patches(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """[N, H, W, C] -> [N, OH, OW, k, k, C] windows of a "SAME" convolution."""
    n, h, w, c = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    padded = _same_pad(x, k, stride)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))
    windows = windows[:, ::stride, ::stride][:, :out_h, :out_w]  # [N, OH, OW, C, k, k]
    return windows.transpose(0, 1, 2, 4, 5, 3)


def conv(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    k = w.shape[0]
    return np.einsum("nhwijc,ijco->nhwo", _patches(x, k, stride), w, optimize=True)


def depthwise(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    k = w.shape[0]
    return np.einsum("nhwijc,ijc->nhwc", _patches(x, k, stride), w[..., 0], optimize=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free and exact in float64


class Twin:
    """The detector in float64. ``run`` mirrors ``Detector.run`` from the decoded pixels on."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        self.w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.anchors = arch.anchors()

    def _bn(self, x: np.ndarray, prefix: str) -> np.ndarray:
        w = self.w
        inv = w[f"{prefix}/gamma"] / np.sqrt(w[f"{prefix}/var"] + arch.BN_EPSILON)
        return (x - w[f"{prefix}/mean"]) * inv + w[f"{prefix}/beta"]

    def _head(self, features: Mapping[str, np.ndarray], kind: str) -> np.ndarray:
        depth = arch.NUM_CLASSES if kind == "cls" else 4
        parts = []
        for stage, _grid, _sizes in arch.FEATURE_SCALES:
            x = conv(features[stage], self.w[f"head_{stage}/{kind}_w"])
            x = x + self.w[f"head_{stage}/{kind}_b"]
            parts.append(x.reshape(x.shape[0], -1, depth))
        return np.concatenate(parts, axis=1)

    def run(self, decoded: np.ndarray) -> dict[str, np.ndarray]:
        """Stage outputs in float64 for every stage after ``decode``."""
        w, out = self.w, {}
        out["resize"] = resize_bilinear(decoded, arch.INPUT_SIZE)
        out["normalize"] = out["resize"] / 127.5 - 1.0
        out["stem"] = np.clip(self._bn(conv(out["normalize"], w["stem/conv"], 2), "stem/bn"), 0, 6)
        x = out["stem"]
        for name, stride, _cin, _cout in arch.BLOCKS:
            x = np.clip(self._bn(depthwise(x, w[f"{name}/dw"], stride), f"{name}/dw_bn"), 0, 6)
            x = self._bn(conv(x, w[f"{name}/pw"]), f"{name}/pw_bn")
            x = out[name] = x * sigmoid(x)
        pooled = out["block3"].mean(axis=(1, 2))
        gate = sigmoid(pooled @ w["context/dense_w"] + w["context/dense_b"])
        out["context"] = out["block3"] * gate[:, None, None, :]
        out["class_logits"] = self._head(out, "cls")
        out["box_deltas"] = self._head(out, "box")
        out["scores"] = sigmoid(out["class_logits"])
        out["boxes"] = arch.decode_boxes(out["box_deltas"], self.anchors)
        out["nms"] = np.stack([nms_rows(b, s) for b, s in zip(out["boxes"], out["scores"])])
        return out


def nms_rows(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Greedy per-class NMS then top-k, as combined_non_max_suppression (keeps score > t,
    suppresses IoU > t): [MAX_DETECTIONS, 6]."""
    picked = []
    for cls in range(scores.shape[1]):
        s = scores[:, cls]
        order = [i for i in np.argsort(-s, kind="stable") if s[i] > SCORE_THRESHOLD]
        kept: list[int] = []
        for i in order:
            if len(kept) == MAX_DETECTIONS:
                break
            if kept and arch.pairwise_iou(boxes[[i]], boxes[kept]).max() > IOU_THRESHOLD:
                continue
            kept.append(i)
        picked += [(s[i], cls, i) for i in kept]
    picked.sort(key=lambda p: -p[0])
    rows = np.zeros((MAX_DETECTIONS, 6))
    for row, (score, cls, i) in enumerate(picked[:MAX_DETECTIONS]):
        rows[row] = (*boxes[i], score, cls)
    return rows
