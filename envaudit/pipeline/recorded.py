"""A golden bundle's recorded arrays as a run: the subjects of ``envaudit compare A B`` on bundles.

Offline nothing runs. B's recorded arrays stand for the run a check would make, and A is the
golden. The subjects here are the canary's and the user model's own (``canary.py``,
``own_model.py``), so every array, mode, training step and detection is compared exactly as a
check compares it: the same statuses, first divergence, detections and verdict. Running nothing
makes two differences. No stage is replayed alone: the first divergence is known, but which later
stages changed by themselves is not. A user's model is never located or loaded: the two bundles
must have recorded the same model on the same inputs (its identity), and that is all that is read.
B's own float64 twin is the reference for B's arrays, as a check computes one for its own run.

Both bundles are opened as goldens (verified by the store, their arrays validated by the subject
as a check validates its golden), so B is held to everything A is. Training steps are compared
only where both bundles recorded the same steps in the same modes; otherwise they are left out,
and the reason is given (``left_out``). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envaudit.pipeline.canary import Canary, Replay, current_twin
from envaudit.pipeline.own_model import ModelRun, OwnModel
from envaudit.pipeline.subject import CheckOptions, Progress, SubjectRun
from envaudit.store import GoldenBundle
from envaudit.usermodel.spec import ModelInfo
from envaudit.workload import detections_from_nms
from envaudit.workload.types import Candidates, ModeRun, WorkloadResult, stage_key


class _Recorded:
    """What both recorded subjects share: B's arrays are the run; nothing is replayed, re-run or
    said about where A was recorded (``provenance``: A and B are both someone's recordings, and
    the fingerprint diff shows how their machines differ)."""

    recorded: Any  # B, opened as a golden by the same subject class
    modes: tuple[str, ...]
    training: Any
    # B's recording in the form the subject's own comparison reads (each subject defines it)
    native_run: Callable[[], Any]

    def run(self, repeat: int, progress: Progress) -> list[SubjectRun]:
        bundle = self.recorded.bundle
        if self.training is not None:
            self.training.devices = bundle.devices  # where B computed its steps
        return [SubjectRun(stages={m: self.recorded.golden[m] for m in self.modes},
                           probes=bundle.probes, devices=bundle.devices,
                           native=self.native_run())]

    def replay(self) -> Replay | None:
        return None

    def notes(self, run: SubjectRun) -> tuple[str, ...]:
        return ()

    def provenance(self, seen: Any) -> None:
        return None

    def rerun_child(self) -> contextlib.AbstractContextManager[tuple[str, ...]]:
        return contextlib.nullcontext(())  # never entered: nothing is re-run offline


class RecordedCanary(_Recorded, Canary):
    """The canary of golden A, its run the arrays golden B recorded in ``modes``."""

    def __init__(self, golden: GoldenBundle, recorded: GoldenBundle, modes: Sequence[str],
                 training: bool) -> None:
        options = CheckOptions(modes=modes)
        super().__init__(golden, options)
        self.recorded = Canary(recorded, options)
        if not training:
            for subject in (self, self.recorded):
                subject.training = None
                subject.golden = dict(subject.bundle.stages_by_mode)

    def current_twin(self, decoded: np.ndarray) -> Mapping[str, np.ndarray]:
        """B's twin, as B's recording computed it (or for another decode, computed as a check
        would)."""
        return current_twin(self.recorded.bundle, self.assets, decoded)

    def native_run(self) -> WorkloadResult:
        """Every mode B recorded (a converted mode's gap is measured against B's graph mode, as
        a check measures it against its own), with the detections its nms stage holds."""
        bundle = self.recorded.bundle
        runs = {mode: ModeRun(mode=mode, stages=stages,
                              detections=detections_from_nms(stages["nms"]),
                              candidates=Candidates(boxes=stages["boxes"],
                                                    scores=stages["scores"]),
                              seconds=0.0,
                              devices={n: bundle.devices.get(stage_key(mode, n), "unknown")
                                       for n in stages})
                for mode, stages in bundle.stages_by_mode.items()}
        workload = bundle.manifest["workload"]
        return WorkloadResult(workload_id=workload["id"], workload_version=workload["version"],
                              images=tuple(bundle.manifest["images"]), runs=runs,
                              probes=bundle.probes, not_run=bundle.not_run,
                              runtimes=bundle.runtimes)


class _Unlocated(OwnModel):
    """A user model's golden opened for its arrays only: the model itself is never looked for."""

    def model_path(self, info: ModelInfo, given: str | None) -> Path:
        return Path(info.path)  # as recorded; nothing loads it


class RecordedModel(_Recorded, _Unlocated):
    """The user model of golden A, its run the arrays golden B recorded of the same model."""

    def __init__(self, golden: GoldenBundle, recorded: GoldenBundle, training: bool) -> None:
        super().__init__(golden, CheckOptions())
        self.recorded = _Unlocated(recorded, CheckOptions())
        if not training:
            for subject in (self, self.recorded):
                subject.training = None
                subject.golden = {subject.info.mode: subject.stages}

    def native_run(self) -> ModelRun:
        """No run to hold: only what converted and ran a converted mode, as B recorded it."""
        mode = self.recorded.info.mode
        return ModelRun(run=None, runtime=self.recorded.bundle.runtimes.get(mode))


def training_left_out(golden: GoldenBundle, recorded: GoldenBundle,
                      modes: Sequence[str]) -> str | None:
    """Why the two bundles' training steps cannot be compared (None: they can, or neither
    recorded any): another number of steps, other modes among those compared, or other training
    settings."""
    steps = golden.training_steps, recorded.training_steps
    trained = tuple(tuple(m for m in b.training if m in modes) for b in (golden, recorded))
    settings = tuple(b.manifest.get("training", {}).get("settings") for b in (golden, recorded))
    if steps == (0, 0):
        return None
    if steps[0] == steps[1] and trained[0] == trained[1]:
        return None if settings[0] == settings[1] else "training steps (recorded with other" \
            " training settings)"
    said = [f"{n} step{'' if n == 1 else 's'}" + (f" in {', '.join(t)}" if t else "")
            for n, t in zip(steps, trained)]
    return f"training steps (A recorded {said[0]}, B {said[1]})"


def other_model(subject: RecordedModel) -> str | None:
    """Why A and B did not record the same model on the same inputs (None: they did: the same
    identity, as a re-run child's result cache knows a model by)."""
    if subject.identity() == subject.recorded.identity():
        return None
    a, b = subject.info, subject.recorded.info
    for what, mine, theirs in (("model sha256", a.sha256[:16], b.sha256[:16]),
                               ("mode", a.mode, b.mode),
                               ("signature", a.signature, b.signature),
                               ("layers", len(a.layers), len(b.layers))):
        if mine != theirs:
            return f"A recorded {what} {mine}, B {theirs}"
    return "A and B ran the model on other inputs"
