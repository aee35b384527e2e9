"""The golden detector in TensorFlow, stage by stage.

Each stage is a function of named earlier stage outputs, so a check can run the whole pipeline or
replay one stage alone on golden inputs. Everything is fp32 eager TensorFlow on purpose: these are
the kernels (oneDNN/Eigen convolutions, depthwise convs, fused batch norm, matmul, transcendental
functions, resize, NMS) whose results move when the environment does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from envaudit.workload import architecture as arch
from envaudit.workload.types import IOU_THRESHOLD, MAX_DETECTIONS, SCORE_THRESHOLD

BatchNorm = Callable[[tf.Tensor, str], tf.Tensor]

# Which earlier stages each stage reads. "decode" reads the encoded image bytes.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "resize": ("decode",),
    "normalize": ("resize",),
    "stem": ("normalize",),
    "block1": ("stem",),
    "block2": ("block1",),
    "block3": ("block2",),
    "context": ("block3",),
    "class_logits": ("block2", "context"),
    "box_deltas": ("block2", "context"),
    "scores": ("class_logits",),
    "boxes": ("box_deltas",),
    "nms": ("boxes", "scores"),
}


def decode_images(encoded: Sequence[bytes]) -> tf.Tensor:
    """JPEG or PNG bytes -> uint8 [N, H, W, 3] through TensorFlow's own decoders."""
    return tf.stack([tf.io.decode_image(data, channels=3, expand_animations=False)
                     for data in encoded])


def conv(x: tf.Tensor, w: tf.Tensor, stride: int = 1) -> tf.Tensor:
    return tf.nn.conv2d(x, w, strides=stride, padding="SAME")


def depthwise(x: tf.Tensor, w: tf.Tensor, stride: int) -> tf.Tensor:
    return tf.nn.depthwise_conv2d(x, w, strides=[1, stride, stride, 1], padding="SAME")


def backbone_stem(x: tf.Tensor, w: Mapping[str, tf.Tensor], bn: BatchNorm) -> tf.Tensor:
    return tf.nn.relu6(bn(conv(x, w["stem/conv"], 2), "stem/bn"))


def backbone_block(x: tf.Tensor, name: str, stride: int, w: Mapping[str, tf.Tensor],
                   bn: BatchNorm) -> tf.Tensor:
    x = tf.nn.relu6(bn(depthwise(x, w[f"{name}/dw"], stride), f"{name}/dw_bn"))
    return tf.nn.silu(bn(conv(x, w[f"{name}/pw"]), f"{name}/pw_bn"))


def context_gate(x: tf.Tensor, w: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Squeeze-and-excitation: a dense layer (matmul) over the pooled features gates channels."""
    pooled = tf.reduce_mean(x, axis=[1, 2])
    gate = tf.sigmoid(tf.matmul(pooled, w["context/dense_w"]) + w["context/dense_b"])
    return x * gate[:, None, None, :]


def head(features: Mapping[str, tf.Tensor], w: Mapping[str, tf.Tensor], kind: str) -> tf.Tensor:
    """Class logits [N, A, C] (kind "cls") or box deltas [N, A, 4] (kind "box") over both scales."""
    depth = arch.NUM_CLASSES if kind == "cls" else 4
    outputs = []
    for stage, _grid, _sizes in arch.FEATURE_SCALES:
        x = conv(features[stage], w[f"head_{stage}/{kind}_w"])
        x = tf.nn.bias_add(x, w[f"head_{stage}/{kind}_b"])
        outputs.append(tf.reshape(x, [tf.shape(x)[0], -1, depth]))
    return tf.concat(outputs, axis=1)


def decode_deltas(deltas: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    d = deltas / tf.constant(arch.BOX_SCALES, tf.float32)
    cy = anchors[:, 0] + d[..., 0] * anchors[:, 2]
    cx = anchors[:, 1] + d[..., 1] * anchors[:, 3]
    h = anchors[:, 2] * tf.exp(d[..., 2])
    w = anchors[:, 3] * tf.exp(d[..., 3])
    return tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def non_max_suppression(boxes: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
    """Per-class NMS and top-k -> float32 [N, MAX_DETECTIONS, 6]: box, score, class; zero padded."""
    nms_boxes, nms_scores, nms_classes, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores,
        max_output_size_per_class=MAX_DETECTIONS, max_total_size=MAX_DETECTIONS,
        iou_threshold=IOU_THRESHOLD, score_threshold=SCORE_THRESHOLD, clip_boxes=False,
    )
    keep = tf.sequence_mask(valid, MAX_DETECTIONS, dtype=tf.float32)[..., None]
    rows = tf.concat([nms_boxes, nms_scores[..., None], nms_classes[..., None]], axis=-1)
    return rows * keep


class Detector:
    """The trained detector with fixed weights; ``run_stage`` is one pipeline stage."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        self.w = {name: tf.constant(value, tf.float32) for name, value in weights.items()}
        self.anchors = tf.constant(arch.anchors(), tf.float32)

    def _bn(self, x: tf.Tensor, prefix: str) -> tf.Tensor:
        w = self.w
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=w[f"{prefix}/gamma"], offset=w[f"{prefix}/beta"],
            mean=w[f"{prefix}/mean"], variance=w[f"{prefix}/var"],
            epsilon=arch.BN_EPSILON, is_training=False,
        )
        return y

    def run_stage(self, name: str, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        x = inputs[STAGE_INPUTS[name][0]]
        if name == "resize":
            size = [arch.INPUT_SIZE, arch.INPUT_SIZE]
            return tf.image.resize(tf.cast(x, tf.float32), size, method="bilinear")
        if name == "normalize":
            return x / 127.5 - 1.0
        if name == "stem":
            return backbone_stem(x, self.w, self._bn)
        for block, stride, _cin, _cout in arch.BLOCKS:
            if name == block:
                return backbone_block(x, block, stride, self.w, self._bn)
        if name == "context":
            return context_gate(x, self.w)
        if name in ("class_logits", "box_deltas"):
            return head(inputs, self.w, "cls" if name == "class_logits" else "box")
        if name == "scores":
            return tf.sigmoid(x)
        if name == "boxes":
            return decode_deltas(x, self.anchors)
        if name == "nms":
            return non_max_suppression(inputs["boxes"], inputs["scores"])
        raise ValueError(f"unknown stage {name!r}")

    def run(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """The whole pipeline; every stage's output as a NumPy array, in pipeline order."""
        return {name: tensor.numpy() for name, tensor in self.run_tensors(encoded).items()}

    def run_tensors(self, encoded: Sequence[bytes]) -> dict[str, tf.Tensor]:
        """The whole pipeline, eagerly; every stage's output tensor, in pipeline order."""
        outputs: dict[str, tf.Tensor] = {"decode": decode_images(encoded)}
        for name in arch.STAGES[1:]:
            outputs[name] = self.run_stage(name, outputs)
        return outputs

    def replay(self, name: str, golden_inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One stage alone, fed golden inputs: did this stage itself change?"""
        tensors = {k: tf.constant(v) for k, v in golden_inputs.items()}
        return self.run_stage(name, tensors).numpy()
