"""Detections from a user model's outputs, in the shape the canary's matching uses.

The TF Object Detection API exports ``detection_boxes`` [N, K, 4] (ymin, xmin, ymax, xmax,
normalized), ``detection_scores`` [N, K], ``detection_classes`` [N, K] (class ids as floats) and
``num_detections`` [N]: rows past ``num_detections`` are padding. Without a count output every row
whose score is above zero is a detection (zero-score rows are how fixed-size outputs pad). Images
that ran one at a time give one set of outputs each; their detections are numbered by image, so
matching stays per image. NumPy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from envaudit.errors import EnvauditError
from envaudit.usermodel.spec import DetectionNames
from envaudit.workload.types import Detections


def shape_problem(names: DetectionNames, outputs: Mapping[str, np.ndarray]) -> str | None:
    """Why these outputs cannot be read as detections (None: they can)."""
    boxes, scores, classes = (outputs[n] for n in (names.boxes, names.scores, names.classes))
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        return f"{names.boxes} is {list(boxes.shape)}, boxes must be [images, detections, 4]"
    for name, array in ((names.scores, scores), (names.classes, classes)):
        if array.shape != boxes.shape[:2]:
            return f"{name} is {list(array.shape)}, it must be {list(boxes.shape[:2])} like" \
                   f" {names.boxes}"
    if names.count is not None:
        count = outputs[names.count]
        if count.shape not in ((boxes.shape[0],), (boxes.shape[0], 1)):
            return f"{names.count} is {list(count.shape)}, it must be [{boxes.shape[0]}]"
        if count.size and (count.min() < 0 or count.max() > boxes.shape[1]):
            return f"{names.count} counts outside 0..{boxes.shape[1]}"
    return None


def detections_from_outputs(names: DetectionNames,
                            outputs: Mapping[str, np.ndarray]) -> Detections:
    """The detections these outputs hold (``shape_problem`` must be None)."""
    problem = shape_problem(names, outputs)
    if problem:
        raise EnvauditError(f"the detection outputs cannot be compared: {problem}")
    boxes = np.asarray(outputs[names.boxes], np.float32)
    scores = np.asarray(outputs[names.scores], np.float32)
    classes = np.asarray(outputs[names.classes])
    slots = np.arange(boxes.shape[1])[None, :]
    if names.count is not None:
        count = np.asarray(outputs[names.count]).reshape(-1).astype(np.int64)
        keep = slots < count[:, None]
    else:
        keep = scores > 0
    image, slot = np.nonzero(keep)
    return Detections(
        image=image.astype(np.int32),
        boxes=boxes[image, slot],
        classes=np.rint(classes[image, slot]).astype(np.int32),
        scores=scores[image, slot],
    )


def detections_of(names: DetectionNames,
                  runs: Sequence[Mapping[str, np.ndarray]]) -> Detections:
    """The detections of the outputs of several runs (one batch, or one image each), images
    numbered across the runs in order."""
    parts, offset = [], 0
    for outputs in runs:
        found = detections_from_outputs(names, outputs)
        parts.append(Detections(found.image + offset, found.boxes, found.classes, found.scores))
        offset += int(np.asarray(outputs[names.boxes]).shape[0])
    if len(parts) == 1:
        return parts[0]
    return Detections(
        image=np.concatenate([p.image for p in parts]).astype(np.int32),
        boxes=np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
        classes=np.concatenate([p.classes for p in parts]).astype(np.int32),
        scores=np.concatenate([p.scores for p in parts]).astype(np.float32),
    )
