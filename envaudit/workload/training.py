"""A few steps of the canary detector's own training: the training half of "same data, different
results".

Each step draws its augmentation from seeded *stateless* random ops (``(TRAINING_SEED, step)``
picks a crop, a flip, a brightness and a contrast change per image: the kinds users run), matches
the moved boxes to anchors, then runs one step of the detector's own training -- forward with
batch-statistics batch norm, its focal and Huber loss, gradients, SGD with momentum -- from the
shipped weights. Nothing depends on a global seed, a thread's timing or a previous run in the
process: two runs here compute the same bits unless a kernel does not.

Recorded per step ``k`` (1-based), in this order, which is the order a first divergence is read
in: ``stepK.batch`` (the augmented images fed to the network), ``stepK.loss``, ``stepK.grad.V``
for every trainable variable ``V`` and ``stepK.var.V`` after the update (``V`` is the weight's
name with ``/`` written ``.``). The step runs eagerly, as one traced graph, or compiled by XLA
(``MODES``); augmentation and anchor matching are the input pipeline and run alike in every mode.

Only this module and ``tools/train_detector.py`` know how the detector is trained; the tool trains
it from scratch with the same loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from envaudit import modes as registry
from envaudit.workload import architecture as arch
from envaudit.workload.assets import Assets
from envaudit.workload.detector import backbone_block, backbone_stem, context_gate, head
from envaudit.workload.training_spec import (
    CROP,
    LEARNING_RATE,
    MODES,
    MOMENTUM,
    TRAINING_SEED,
    key,
    trainable,
)

BRIGHTNESS = 0.12  # the largest brightness change, of the [0, 1] range
CONTRAST = (0.8, 1.25)  # the contrast factor's range
KEEP_FRACTION = 0.4  # a box keeps its object when at least this much of it is inside the crop


def train_forward(images: tf.Tensor, w: Mapping[str, tf.Variable], stats: dict | None = None
                  ) -> tuple[tf.Tensor, tf.Tensor]:
    """Class logits and box deltas with batch-statistics batch norm (training's forward pass);
    run eagerly with ``stats``, each batch norm's mean and variance are kept there (the
    population statistics ``tools/train_detector.py`` stores)."""

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


def huber(targets: tf.Tensor, predicted: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
    """Huber loss averaged over the last axis (as Keras' ``huber``, without importing Keras)."""
    error = tf.abs(predicted - targets)
    quadratic = tf.minimum(error, delta)
    return tf.reduce_mean(0.5 * quadratic ** 2 + delta * (error - quadratic), axis=-1)


def loss_fn(w: Mapping[str, tf.Variable], images: tf.Tensor, cls_t: tf.Tensor,
            weight: tf.Tensor, box_t: tf.Tensor, positive: tf.Tensor) -> tf.Tensor:
    """The detector's training loss: a mild focal loss on classes, Huber on matched boxes."""
    logits, deltas = train_forward(images, w)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=cls_t, logits=logits)
    p = tf.sigmoid(logits)
    p_t = p * cls_t + (1 - p) * (1 - cls_t)
    # Milder than RetinaNet's (gamma 2, alpha 0.25): scores stay calibrated enough for the fixed
    # 0.5 score threshold of the workload.
    focal = 0.5 * (1 - p_t) ** 1.5 * ce * weight[..., None]
    num_pos = tf.maximum(tf.reduce_sum(positive), 1.0)
    box_loss = tf.reduce_sum(huber(box_t, deltas) * positive)
    return (tf.reduce_sum(focal) + box_loss) / num_pos


def targets(boxes: np.ndarray, classes: np.ndarray, anchor_corners: np.ndarray,
            anchor_boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-anchor class targets, weights, box targets and positives for one image."""
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


@dataclass(frozen=True)
class Batch:
    """One step's input: augmented images and their per-anchor targets."""

    images: tf.Tensor  # float32 [N, CROP, CROP, 3] in 0..255
    cls: np.ndarray
    weight: np.ndarray
    box: np.ndarray
    positive: np.ndarray

    def tensors(self) -> tuple[tf.Tensor, ...]:
        return (self.images, *(tf.constant(a) for a in (self.cls, self.weight, self.box,
                                                        self.positive)))


def augment(images: tf.Tensor, boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray],
            step: int) -> Batch:
    """Step ``step``'s augmented batch: per image a crop, a flip, a brightness and a contrast
    change drawn by stateless random ops from ``(TRAINING_SEED, step)``; boxes moved with the
    pixels (a box mostly cut away is dropped), targets matched to the anchors."""
    n, size = int(images.shape[0]), int(images.shape[1])
    draws = tf.random.stateless_uniform([n, 5], seed=[TRAINING_SEED, step]).numpy()
    anchor_boxes = arch.anchors()
    anchor_corners = arch.corners(anchor_boxes)
    out, parts = [], []
    for i in range(n):
        top, left = (int(d * (size - CROP + 1)) for d in draws[i, :2])
        flip = bool(draws[i, 2] < 0.5)
        image = tf.image.crop_to_bounding_box(images[i], top, left, CROP, CROP)
        image = tf.image.convert_image_dtype(image, tf.float32)
        if flip:
            image = tf.image.flip_left_right(image)
        image = tf.image.adjust_brightness(image, float(BRIGHTNESS * (2 * draws[i, 3] - 1)))
        image = tf.image.adjust_contrast(image, float(np.interp(draws[i, 4], (0, 1), CONTRAST)))
        out.append(tf.clip_by_value(image, 0.0, 1.0) * 255.0)
        kept, kept_classes = _moved_boxes(boxes[i], classes[i], top, left, size, flip)
        parts.append(targets(kept, kept_classes, anchor_corners, anchor_boxes))
    return Batch(tf.stack(out), *(np.stack([p[j] for p in parts]) for j in range(4)))


def _moved_boxes(boxes: np.ndarray, classes: np.ndarray, top: int, left: int, size: int,
                 flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Normalized boxes after a crop at (top, left) and an optional flip; boxes less than
    ``KEEP_FRACTION`` inside the crop are dropped."""
    pixels = boxes.astype(np.float64) * size - np.array([top, left, top, left])
    clipped = np.clip(pixels, 0, CROP)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    keep = area(clipped) >= KEEP_FRACTION * np.maximum(area(pixels), 1e-9)
    moved = clipped[keep] / CROP
    if flip:
        moved[:, [1, 3]] = 1.0 - moved[:, [3, 1]]
    return moved.astype(np.float32), classes[keep].astype(np.int32)


@dataclass(frozen=True)
class TrainingRun:
    """One mode's steps: every recorded array (``array_names`` order), the device each was
    computed on, and the seconds the steps took (augmentation included)."""

    mode: str
    arrays: dict[str, np.ndarray]
    devices: dict[str, str]
    seconds: float


class Trainer:
    """The detector's variables, set from ``weights``, and one step of its training in a mode."""

    def __init__(self, weights: Mapping[str, np.ndarray], mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"a training step has no {mode!r} mode; expected one of"
                             f" {', '.join(MODES)}")
        self.names = trainable()
        self.w = {n: tf.Variable(weights[n], dtype=tf.float32, name=n.replace("/", "_"))
                  for n in self.names}
        self.velocity = [tf.Variable(tf.zeros_like(self.w[n])) for n in self.names]
        step = self._step
        self.step: Callable[..., tuple[tf.Tensor, list[tf.Tensor]]] = (
            step if mode == registry.EAGER else
            tf.function(step, autograph=False, jit_compile=mode == registry.XLA))

    def _step(self, images: tf.Tensor, cls_t: tf.Tensor, weight: tf.Tensor, box_t: tf.Tensor,
              positive: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        variables = [self.w[n] for n in self.names]
        with tf.GradientTape() as tape:
            loss = loss_fn(self.w, images, cls_t, weight, box_t, positive)
        grads = tape.gradient(loss, variables)
        for var, grad, velocity in zip(variables, grads, self.velocity):
            velocity.assign(MOMENTUM * velocity + grad)
            var.assign_sub(LEARNING_RATE * velocity)
        return loss, grads


def train_steps(weights: Mapping[str, np.ndarray], batches: Sequence[Batch], mode: str
                ) -> TrainingRun:
    """One training step in ``mode`` per batch, from ``weights``; every array of every step."""
    from envaudit.workload import devices

    trainer = Trainer(weights, mode)
    arrays: dict[str, np.ndarray] = {}
    placed: dict[str, str] = {}
    start = time.perf_counter()
    for step, batch in enumerate(batches, 1):
        loss, grads = trainer.step(*batch.tensors())
        computed = [(key(step, "batch"), batch.images), (key(step, "loss"), loss)]
        computed += [(key(step, "grad", n), g) for n, g in zip(trainer.names, grads)]
        computed += [(key(step, "var", n), trainer.w[n]) for n in trainer.names]
        for name, tensor in computed:
            arrays[name] = np.array(tensor.numpy(), dtype=np.float32)
            placed[name] = devices.of(tensor)
    return TrainingRun(mode, arrays, placed, time.perf_counter() - start)


@dataclass(frozen=True)
class TrainingResult:
    """A training run in each mode that ran, with the canary probes run beside it."""

    runs: dict[str, TrainingRun]
    probes: dict[str, np.ndarray]
    probe_devices: dict[str, str]
    not_run: dict[str, str]
    device_names: dict[str, str]
    timings: dict[str, float]

    @property
    def devices(self) -> dict[str, str]:
        """The device of every array, under its ``keyed_arrays`` key."""
        from envaudit.workload.types import keyed_devices

        return keyed_devices({m: r.devices for m, r in self.runs.items()}, self.probe_devices)


def scenes(assets: Assets) -> tuple[tf.Tensor, list[np.ndarray], list[np.ndarray]]:
    """The training batch before augmentation: the golden scenes' PNG files decoded by
    TensorFlow, and the objects rendered into each."""
    from envaudit.workload.assets import ground_truth
    from envaudit.workload.detector import decode_images

    png = [i for i, name in enumerate(assets.image_names) if name.endswith(".png")]
    boxes, classes = ground_truth(assets)
    images = decode_images([assets.encoded[i] for i in png])
    return images, [boxes[i] for i in png], [classes[i] for i in png]


def run_training(assets: Assets, modes: Sequence[str], steps: int,
                 probes: bool = True) -> TrainingResult:
    """``steps`` training steps from the shipped weights in each of ``modes`` (a mode this
    TensorFlow cannot compile is listed in ``not_run``), then the canary probes unless
    ``probes`` is False (the steps are checked beside the workload, which runs them)."""
    from envaudit.workload import devices, tf_runtime
    from envaudit.workload.modes import ModeUnavailable, guarded
    from envaudit.workload.probes import run_probes_on_devices

    # The input pipeline runs once: every mode trains on the same augmented batches.
    images, boxes, classes = scenes(assets)
    batches = [augment(images, boxes, classes, step) for step in range(1, steps + 1)]
    runs: dict[str, TrainingRun] = {}
    not_run: dict[str, str] = {}
    warmed = 0.0
    for mode in (m for m in MODES if m in modes):
        def once(m: str = mode) -> TrainingRun:
            return guarded(m, lambda: train_steps(assets.weights, batches, m))
        try:
            warmed += tf_runtime.warm_up(once)
            runs[mode] = once()
        except ModeUnavailable as exc:
            not_run[mode] = str(exc)
    if not runs:
        from envaudit.errors import EnvauditError

        raise EnvauditError("no training mode could run here: " + "; ".join(not_run.values()))
    start = time.perf_counter()
    probed, probe_devices = run_probes_on_devices(assets.probe_jpeg) if probes else ({}, {})
    return TrainingResult(runs, probed, probe_devices, not_run, devices.names(), {
        **{f"{m}_s": r.seconds for m, r in runs.items()},
        **({"probes_s": time.perf_counter() - start} if probes else {}),
        **({"warmup_s": warmed} if warmed else {})})
