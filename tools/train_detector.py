"""Train the golden detector and write the golden assets (weights, images, checksums).

    .venv/bin/python tools/train_detector.py            # ~5 minutes on 2 CPU cores

Everything is seeded; the procedural scenes come from ``envaudit.workload.scenes``. The detector is
the same code the workload runs (``envaudit.workload.detector``), trained with the loss the
training steps of a check use (``envaudit.workload.training``); only batch norm differs while
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
from envaudit.workload.detector import Detector
from envaudit.workload.evaluation import recall_precision
from envaudit.workload.scenes import render_scene
from envaudit.workload.training import loss_fn, targets, train_forward

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
