"""Which of the workload's own objects the golden never found: the canary's scenes are rendered,
so every object in them is known, and an object no golden detection overlaps is the detector's
miss, not the environment's.

Where the workload does not know its objects (a user's model) nothing is computed and the result
says nothing (``DetectionDiff.missed`` is None). Pure NumPy: no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envaudit.compare.detections import MATCH_IOU, box_iou
from envaudit.compare.types import MissedObject
from envaudit.workload.types import Detections


def missed_objects(truth_boxes: Sequence[np.ndarray], truth_classes: Sequence[np.ndarray],
                   golden: Detections, current: Detections) -> tuple[MissedObject, ...]:
    """The ground-truth objects (per image, in batch order: normalized boxes [K, 4] and classes
    [K]) that no golden detection overlaps with IoU at least ``MATCH_IOU``, whatever its class
    (a detection of the wrong class still found the object); each says whether a current
    detection does."""
    missed = []
    for image, (boxes, classes) in enumerate(zip(truth_boxes, truth_classes)):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        found = [_overlapped(boxes, d, image) for d in (golden, current)]
        missed += [MissedObject(image, int(classes[k]), tuple(float(v) for v in boxes[k]),
                                bool(found[1][k]))
                   for k in np.flatnonzero(~found[0])]
    return tuple(missed)


def _overlapped(boxes: np.ndarray, detections: Detections, image: int) -> np.ndarray:
    """Per box, whether a detection on ``image`` overlaps it with IoU at least ``MATCH_IOU``."""
    mine = np.asarray(detections.image).reshape(-1) == image
    theirs = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)[mine]
    if len(boxes) == 0 or len(theirs) == 0:
        return np.zeros(len(boxes), dtype=bool)
    return (box_iou(boxes, theirs) >= MATCH_IOU).any(axis=1)
