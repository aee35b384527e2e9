"""Train the golden detector and write the golden assets (weights, images, checksums).

    .venv/bin/python tools/train_detector.py            # ~5 minutes on 2 CPU cores

Everything is seeded; the procedural scenes come from ``envaudit.workload.scenes``. The detector is
the same code the workload runs (``envaudit.workload.detector``); only batch norm differs while
training (batch statistics; the population statistics are measured after training and stored).
Rerunning changes the weights' bits (training on CPU threads is not bit-reproducible), so a new
reference bundle must be recorded afterwards: ``envaudit record --golden golden/reference --force``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from envaudit.workload import architecture as arch
from envaudit.workload.assets import ASSET_DIR, GOLDEN_SCENES, write_manifest
from envaudit.workload.detector import (
    Detector,
    backbone_block,
    backbone_stem,
    context_gate,
    head,
)
from envaudit.workload.evaluation import recall_precision
from envaudit.workload.scenes import render_scene

PRIOR = 0.01  # initial foreground probability of the class head (focal-loss practice)


def init_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    weights = {}
    for name, shape in arch.weight_shapes().items():
        leaf = name.split("/")[-1]
        if leaf in ("gamma", "var"):
            value = np.ones(shape)
        elif leaf in ("beta", "mean", "box_b", "dense_b"):
            value = np.zeros(shape)
        elif leaf == "cls_b":
            value = np.full(shape, -np.log((1 - PRIOR) / PRIOR))
        else:
            fan_in = int(np.prod(shape[:-1])) if leaf != "dw" else 9
            value = rng.normal(0, np.sqrt(2.0 / fan_in), size=shape)
        weights[name] = value.astype(np.float32)
    return weights


def targets(boxes: np.ndarray, classes: np.ndarray, anchor_corners: np.ndarray,
            anchor_boxes: np.ndarray):
    """Per-anchor class targets, weights and box targets for one image."""
    a = len(anchor_boxes)
    cls = np.zeros((a, arch.NUM_CLASSES), np.float32)
    weight = np.ones(a, np.float32)
    box = np.zeros((a, 4), np.float32)
    positive = np.zeros(a, bool)
    if len(boxes):
        iou = arch.pairwise_iou(anchor_corners, boxes.astype(np.float64))
        best_gt = iou.argmax(axis=1)
        best_iou = iou.max(axis=1)
        positive = best_iou >= 0.5
        positive[iou.argmax(axis=0)] = True
        best_gt[iou.argmax(axis=0)] = np.arange(len(boxes))
        weight[(best_iou >= 0.4) & ~positive] = 0.0  # ambiguous: neither taught as fg nor bg
        cls[positive, classes[best_gt[positive]]] = 1.0
        box[positive] = arch.encode_boxes(boxes[best_gt[positive]].astype(np.float64),
                                          anchor_boxes[positive])
    return cls, weight, box, positive.astype(np.float32)


def make_dataset(count: int, seed: int):
    rng = np.random.default_rng(seed)
    scenes = [render_scene(rng, max_overlap=0.3) for _ in range(count)]
    anchor_boxes = arch.anchors()
    anchor_corners = arch.corners(anchor_boxes)
    images = np.stack([s.image for s in scenes])
    t = [targets(s.boxes, s.classes, anchor_corners, anchor_boxes) for s in scenes]
    flipped = [targets(flip_boxes(s.boxes), s.classes, anchor_corners, anchor_boxes)
               for s in scenes]
    stack = lambda items, i: np.stack([x[i] for x in items])  # noqa: E731
    plain = tuple(stack(t, i) for i in range(4))
    mirror = tuple(stack(flipped, i) for i in range(4))
    return images, plain, mirror, scenes


def flip_boxes(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[:, 1], out[:, 3] = 1.0 - boxes[:, 3], 1.0 - boxes[:, 1]
    return out


def train_forward(images: tf.Tensor, w: dict[str, tf.Variable], stats: dict | None = None):
    """Forward pass with batch-statistics batch norm; records the statistics when asked."""

    def bn(x: tf.Tensor, prefix: str) -> tf.Tensor:
        mean, var = tf.nn.moments(x, axes=[0, 1, 2])
        if stats is not None:
            stats[prefix] = (mean.numpy(), var.numpy())
        return tf.nn.batch_normalization(x, mean, var, w[f"{prefix}/beta"],
                                         w[f"{prefix}/gamma"], arch.BN_EPSILON)

    x = tf.image.resize(tf.cast(images, tf.float32), [arch.INPUT_SIZE] * 2) / 127.5 - 1.0
    features = {"stem": backbone_stem(x, w, bn)}
    prev = features["stem"]
    for name, stride, _cin, _cout in arch.BLOCKS:
        prev = features[name] = backbone_block(prev, name, stride, w, bn)
    features["context"] = context_gate(features["block3"], w)
    return head(features, w, "cls"), head(features, w, "box")


def loss_fn(w, images, cls_t, weight, box_t, positive):
    logits, deltas = train_forward(images, w)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=cls_t, logits=logits)
    p = tf.sigmoid(logits)
    p_t = p * cls_t + (1 - p) * (1 - cls_t)
    # A milder focal loss than RetinaNet's (gamma 2, alpha 0.25): its scores stay calibrated
    # enough for the fixed 0.5 score threshold of the workload.
    alpha = 0.5
    focal = alpha * (1 - p_t) ** 1.5 * ce * weight[..., None]
    num_pos = tf.maximum(tf.reduce_sum(positive), 1.0)
    box_loss = tf.reduce_sum(tf.keras.losses.huber(box_t, deltas, delta=1.0) * positive)
    return (tf.reduce_sum(focal) + box_loss) / num_pos


def train(steps: int, batch: int, seed: int, count: int = 6000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    images, plain, mirror, _ = make_dataset(count, seed + 1)
    w = {k: tf.Variable(v) for k, v in init_weights(rng).items()
         if not k.endswith(("/mean", "/var"))}
    schedule = tf.keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.01)
    optimizer = tf.keras.optimizers.Adam(schedule)
    variables = list(w.values())

    @tf.function
    def step(images, cls_t, weight, box_t, positive):
        with tf.GradientTape() as tape:
            loss = loss_fn(w, images, cls_t, weight, box_t, positive)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    start = time.time()
    for i in range(steps):
        idx = rng.integers(0, len(images), size=batch)
        flip = rng.random(batch) < 0.5
        imgs = np.where(flip[:, None, None, None], images[idx][:, :, ::-1], images[idx])
        parts = [np.where(flip.reshape((-1,) + (1,) * (p.ndim - 1)), m[idx], p[idx])
                 for p, m in zip(plain, mirror)]
        loss = step(tf.constant(imgs), *(tf.constant(p) for p in parts))
        if i % 250 == 0 or i == steps - 1:
            print(f"step {i:5d}  loss {float(loss):.4f}  {time.time() - start:.0f}s", flush=True)

    # Population statistics for inference batch norm, measured on a large batch.
    stats: dict = {}
    train_forward(tf.constant(images[:1024]), w, stats)
    weights = {k: v.numpy() for k, v in w.items()}
    for prefix, (mean, var) in stats.items():
        weights[f"{prefix}/mean"] = mean.astype(np.float32)
        weights[f"{prefix}/var"] = var.astype(np.float32)
    return {k: weights[k] for k in arch.weight_shapes()}


def evaluate(detector: Detector, scenes, encoded: list[bytes]) -> dict[str, float]:
    nms = detector.run(encoded)["nms"]
    return recall_precision(nms, [s.boxes for s in scenes], [s.classes for s in scenes])


def encode(scene_images: list[np.ndarray], fmt: str) -> list[bytes]:
    if fmt == "png":
        return [tf.io.encode_png(img).numpy() for img in scene_images]
    return [tf.io.encode_jpeg(img, quality=92).numpy() for img in scene_images]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ASSET_DIR)
    args = parser.parse_args(argv)

    weights = train(args.steps, args.batch, args.seed)
    detector = Detector(weights)
    held_out = [render_scene(np.random.default_rng(10_000 + i)) for i in range(200)]
    print("held-out:", json.dumps(evaluate(detector, held_out, encode(
        [s.image for s in held_out], "png"))))

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "detector_weights.npz", **weights)
    golden = [render_scene(np.random.default_rng(seed), max_overlap=0.3)
              for seed in GOLDEN_SCENES.values()]
    for (name, _seed), scene in zip(GOLDEN_SCENES.items(), golden):
        (args.out / f"{name}.png").write_bytes(encode([scene.image], "png")[0])
        (args.out / f"{name}.jpg").write_bytes(encode([scene.image], "jpg")[0])
        np.savez(args.out / f"{name}.labels.npz", boxes=scene.boxes, classes=scene.classes)
    write_manifest(args.out)
    for fmt in ("png", "jpg"):
        print(f"golden {fmt}:", json.dumps(evaluate(detector, golden, encode(
            [s.image for s in golden], fmt))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
