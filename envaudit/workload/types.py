"""Data the workload produces, importable without TensorFlow.

Boxes are ``(ymin, xmin, ymax, xmax)`` in coordinates normalized to the image (TensorFlow's
convention), classes are indices into ``CLASS_NAMES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envaudit import modes

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
class ModeRun:
    """The pipeline run once in one execution mode (``envaudit.modes``)."""

    mode: str
    stages: Mapping[str, np.ndarray]  # pipeline order
    detections: Detections
    candidates: Candidates
    seconds: float  # wall time of this mode's run, tracing and compiling included
    devices: Mapping[str, str] = field(default_factory=dict)  # stage -> "CPU:0", "GPU:0", ...


@dataclass(frozen=True)
class WorkloadResult:
    """One run of the golden workload. Mappings keep pipeline and mode order."""

    workload_id: str
    workload_version: str
    images: tuple[str, ...]  # image names in batch order
    runs: Mapping[str, ModeRun]  # the modes that ran, in registry order
    probes: Mapping[str, np.ndarray]
    not_run: Mapping[str, str] = field(default_factory=dict)  # mode -> why it could not run
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds
    probe_devices: Mapping[str, str] = field(default_factory=dict)  # probe -> "CPU:0", ...
    device_names: Mapping[str, str] = field(default_factory=dict)  # "GPU:0" -> its name
    # a converted mode -> what converted and ran it (``envaudit/runtimes.py`` says what it holds)
    runtimes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def devices(self) -> dict[str, str]:
        """The device of every array, under its ``keyed_arrays`` key."""
        return keyed_devices({m: r.devices for m, r in self.runs.items()}, self.probe_devices)

    @property
    def primary(self) -> ModeRun:
        """The eager run when there is one (what a bundle of schema 1 holds), else the first."""
        return self.runs.get(modes.DEFAULT) or next(iter(self.runs.values()))

    @property
    def stages(self) -> Mapping[str, np.ndarray]:
        return self.primary.stages

    @property
    def detections(self) -> Detections:
        return self.primary.detections

    @property
    def candidates(self) -> Candidates:
        return self.primary.candidates


def keyed_arrays(stages: Mapping[str, Mapping[str, np.ndarray]],
                 probes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every mode's stage arrays and the probes under one key each, ``stage/MODE/NAME`` and
    ``probe/NAME``: how a re-run child writes its outputs, how they are compared with the golden,
    and how nondeterminism names an array. The one place these keys are spelled."""
    return {**{stage_key(mode, k): v for mode, arrays in stages.items()
               for k, v in arrays.items()},
            **{f"probe/{k}": v for k, v in probes.items()}}


def stage_key(mode: str, name: str) -> str:
    """The ``keyed_arrays`` key of one array of a mode."""
    return f"stage/{mode}/{name}"


def unkeyed(arrays: Mapping[str, np.ndarray]
            ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """``keyed_arrays`` undone: each mode's stage arrays (in the order met) and the probes."""
    stages: dict[str, dict[str, np.ndarray]] = {}
    probes: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        kind, _, rest = key.partition("/")
        if kind == "stage":
            mode, _, name = rest.partition("/")
            stages.setdefault(mode, {})[name] = value
        elif kind == "probe":
            probes[rest] = value
    return stages, probes


def keyed_devices(stages: Mapping[str, Mapping[str, str]],
                  probes: Mapping[str, str]) -> dict[str, str]:
    """Devices under the keys of ``keyed_arrays``."""
    return {**{f"stage/{mode}/{k}": v for mode, placed in stages.items()
               for k, v in placed.items()},
            **{f"probe/{k}": v for k, v in probes.items()}}


class ModeUnavailable(Exception):
    """This environment cannot run a mode (the message says why): an XLA-less build, a converter
    that refuses the model, a runtime that is not installed."""
