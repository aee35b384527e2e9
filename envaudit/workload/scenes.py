"""Procedurally rendered detection scenes: filled shapes on textured backgrounds (NumPy only).

The same renderer makes the training data and the golden images, so the detector is evaluated on
the distribution it was trained on. Rendering is deterministic for a given ``numpy`` Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envaudit.workload.types import CLASS_NAMES

SCENE_SIZE = 100  # pixels, square; the pipeline resizes to the model's input size


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 [H, W, 3]
    boxes: np.ndarray  # float32 [K, 4] (ymin, xmin, ymax, xmax), normalized
    classes: np.ndarray  # int32 [K]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    base = rng.uniform(40, 200, size=3)
    texture = np.zeros((size, size))
    for _ in range(4):  # a few random low-frequency waves make a texture the model must ignore
        fy, fx = rng.uniform(-9, 9, size=2)
        phase = rng.uniform(0, 6.3)
        texture += rng.uniform(5, 22) * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    tint = rng.uniform(0.6, 1.4, size=3)
    image = base[None, None, :] + texture[..., None] * tint[None, None, :]
    image += rng.normal(0, 6, size=(size, size, 3))
    return image


def _shape_mask(kind: int, rng: np.random.Generator, size: int, box: np.ndarray) -> np.ndarray:
    y0, x0, y1, x1 = box * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if kind == 0:  # rectangle
        return (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    if kind == 1:  # ellipse
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    # triangle: apex on the top edge, base on the bottom edge
    apex = x0 + rng.uniform(0.2, 0.8) * (x1 - x0)
    t = np.clip((yy - y0) / max(y1 - y0, 1e-6), 0, 1)
    left = apex + (x0 - apex) * t
    right = apex + (x1 - apex) * t
    return (yy >= y0) & (yy < y1) & (xx >= left) & (xx <= right)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def render_scene(
    rng: np.random.Generator,
    size: int = SCENE_SIZE,
    max_objects: int = 4,
    max_overlap: float = 0.15,
) -> Scene:
    """One scene of 1..max_objects shapes whose boxes overlap by at most ``max_overlap`` IoU."""
    image = _background(rng, size)
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    occupied = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(30):
            h, w = rng.uniform(0.16, 0.5, size=2)
            y0, x0 = rng.uniform(0.0, 1.0 - h), rng.uniform(0.0, 1.0 - w)
            box = np.array([y0, x0, y0 + h, x0 + w])
            if any(_iou(box, other) > max_overlap for other in boxes):
                continue
            kind = int(rng.integers(len(CLASS_NAMES)))
            mask = _shape_mask(kind, rng, size, box)
            # Boxes may overlap (that is where NMS decisions get close), shapes barely touch: an
            # occluded object's box would describe pixels nobody can see.
            if mask.sum() >= 16 and (mask & occupied).sum() <= 0.04 * mask.sum():
                break
        else:
            continue
        occupied |= mask
        color = rng.uniform(0, 255, size=3)
        # keep the object visible: push its colour away from the local background mean
        local = image[mask].mean(axis=0)
        if np.abs(color - local).sum() < 150:
            color = np.where(local > 127, local - 110, local + 110)
        shade = rng.normal(0, 5, size=(int(mask.sum()), 3))
        image[mask] = color + shade
        ys, xs = np.nonzero(mask)
        boxes.append(
            np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], dtype=np.float64) / size
        )
        classes.append(kind)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Scene(
        image=pixels,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.asarray(classes, dtype=np.int32),
    )
