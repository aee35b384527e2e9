"""Data the workload produces, importable without TensorFlow.

Boxes are ``(ymin, xmin, ymax, xmax)`` in coordinates normalized to the image (TensorFlow's
convention), classes are indices into ``CLASS_NAMES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

CLASS_NAMES = ("rectangle", "ellipse", "triangle")
SCORE_THRESHOLD = 0.5  # NMS keeps scores strictly above it (as TensorFlow does)
IOU_THRESHOLD = 0.5  # the NMS decision threshold
MAX_DETECTIONS = 10  # per image, after NMS


@dataclass(frozen=True)
class Detections:
    """Final detections of a batch, one row per detection."""

    image: np.ndarray  # int32 [K]: index of the image in the batch
    boxes: np.ndarray  # float32 [K, 4]
    classes: np.ndarray  # int32 [K]
    scores: np.ndarray  # float32 [K]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def for_image(self, index: int) -> Detections:
        keep = self.image == index
        return Detections(self.image[keep], self.boxes[keep], self.classes[keep], self.scores[keep])


@dataclass(frozen=True)
class Candidates:
    """What non-maximum suppression decided on: every anchor's decoded box and class scores."""

    boxes: np.ndarray  # float32 [N, A, 4]
    scores: np.ndarray  # float32 [N, A, C]


@dataclass(frozen=True)
class WorkloadResult:
    """One run of the golden workload. Mappings keep pipeline order."""

    workload_id: str
    workload_version: str
    images: tuple[str, ...]  # image names in batch order
    stages: Mapping[str, np.ndarray]
    probes: Mapping[str, np.ndarray]
    detections: Detections
    candidates: Candidates
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds


def keyed_arrays(stages: Mapping[str, np.ndarray],
                 probes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stage and probe arrays under one key each, ``stage/NAME`` and ``probe/NAME``: how a re-run
    child writes its outputs, how they are compared with the golden, and how nondeterminism names
    an array. The one place these keys are spelled."""
    return {**{f"stage/{k}": v for k, v in stages.items()},
            **{f"probe/{k}": v for k, v in probes.items()}}
