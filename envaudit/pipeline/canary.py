"""The canary subject: envaudit's own small detector, in every execution mode its golden recorded.

Opened on a canary bundle: the workload assets are verified and must be the ones the golden was
recorded with, and the golden's arrays are validated, all before TensorFlow is imported. A run is
``run_workload`` in this process; the comparison is the canary's own: each stage against the
golden and, where the float64 twin says how far each is from exact, its error growth; the first
divergent stage localized by replaying stages alone on golden inputs; detections matched by IoU.
When the golden recorded training steps (by default it does), they run and are compared too
(``training.TrainingSteps``): their arrays join each mode's, with the role ``step``, and come
after the pipeline's in a first divergence.

Two hooks let ``envaudit compare`` use this same comparison on a recorded run (``recorded.py``):
``replay`` (what replays a stage alone; None: nothing is, and the first divergence says only where)
and ``current_twin`` (the float64 reference of the run's arrays).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from envaudit import modes as registry
from envaudit.compare import localize
from envaudit.compare.conversion import ConversionGap, measure
from envaudit.compare.detections import decision_noise, match_detections
from envaudit.compare.ground_truth import missed_objects
from envaudit.compare.tensors import bit_identical, compare_arrays
from envaudit.compare.training import TrainingMode
from envaudit.compare.types import DetectionDiff, ModeResult, TensorComparison
from envaudit.compare.verdict import classify, headline, worst
from envaudit.errors import EnvauditError
from envaudit.pipeline.subject import CheckOptions, Progress, SubjectRun
from envaudit.pipeline.training import TrainingSteps, with_steps, with_training
from envaudit.provenance import RecordedElsewhere, recorded_elsewhere
from envaudit.result import CanaryInfo, SubjectInfo
from envaudit.runtimes import RuntimeCheck
from envaudit.runtimes import checks as runtime_checks
from envaudit.store import REFERENCE_BUNDLE, SCHEMA_V1, GoldenBundle
from envaudit.workload import detections_from_nms
from envaudit.workload.architecture import (
    EAGER_COMPATIBLE_VERSIONS,
    WORKLOAD_ID,
    WORKLOAD_VERSION,
)
from envaudit.workload.assets import Assets, ground_truth, load_assets, used_checksums
from envaudit.workload.spec import validate_golden
from envaudit.workload.types import SCORE_THRESHOLD, Candidates

# Per golden image, in batch order: the normalized boxes [K, 4] and classes [K] rendered into it.
GroundTruth = tuple[list[np.ndarray], list[np.ndarray]]
# What runs stages alone on golden inputs in one mode (``workload.replay_stages``).
Replay = Callable[..., dict[str, np.ndarray]]
# The float64 reference of a run's arrays, for the run that decoded the given pixels.
TwinOf = Callable[[np.ndarray], Mapping[str, np.ndarray]]


class Canary:
    """The canary detector as a check's subject (``subject.Subject``)."""

    def __init__(self, bundle: GoldenBundle, options: CheckOptions) -> None:
        for option, value in (("--model", options.model), ("--tolerance", options.tolerances),
                              ("--detections", options.detections)):
            if value is not None:
                raise EnvauditError(f"{option} applies to a golden of your own model;"
                                    f" {bundle.path} was recorded from envaudit's canary"
                                    " workload")
        self.bundle = bundle
        self.assets = load_assets()
        _require_same_workload(bundle, self.assets)
        validate_golden(str(bundle.path), bundle.stages_by_mode, bundle.probes, bundle.twin,
                        bundle.detections if bundle.schema == SCHEMA_V1 else None)
        self.modes = _checked_modes(bundle, options.modes)
        # a converted mode's conversion gap is measured against the graph mode of the same run,
        # which runs beside it when it is not checked itself
        converted = [m for m in self.modes if registry.get(m).converted]
        self.run_modes = registry.in_order(
            [*self.modes, *([registry.CONVERTED_FROM] if converted else [])])
        self.training = (TrainingSteps(bundle, self.modes, options.growth_target)
                         if bundle.training_steps else None)
        trained = self.training.golden if self.training else {}
        self.golden: Mapping[str, Mapping[str, np.ndarray]] = {
            mode: {**stages, **trained.get(mode, {})}
            for mode, stages in bundle.stages_by_mode.items()}
        self.truth = _ground_truth(self.assets)
        self.trained: list[TrainingMode] = []
        self.gaps: list[ConversionGap] = []
        self.runtimes: tuple[RuntimeCheck, ...] = ()

    def run(self, repeat: int, progress: Progress) -> list[SubjectRun]:
        from envaudit.workload import run_workload

        runs = []
        for i in range(repeat):
            progress("running the workload" + (f" ({i + 1}/{repeat})" if repeat > 1 else ""))
            done = run_workload(self.assets, modes=self.run_modes)
            warmed = done.timings.get("warmup_s")  # a GPU's first runs, not kept
            runs.append(SubjectRun(
                stages={m: r.stages for m, r in done.runs.items() if m in self.modes},
                probes=done.probes,
                devices=done.devices, not_run=done.not_run,
                timings={"warmup": warmed} if warmed else {}, native=done))
        if self.training is None:
            return runs
        started = time.perf_counter()
        trained = self.training.run(self.assets, repeat, progress)
        seconds = time.perf_counter() - started
        return [replace(run, stages={m: {**s, **steps.get(m, {})} for m, s in run.stages.items()},
                        timings={**run.timings, "training": seconds})
                for run, steps in zip(runs, trained)]

    def compare(self, run: SubjectRun, spread: float
                ) -> tuple[tuple[TensorComparison, ...], tuple[ModeResult, ...]]:
        stages: list[TensorComparison] = []
        modes: list[ModeResult] = []
        self.trained = []
        replay = self.replay()
        for mode in self.modes:
            compared, result = _check_mode(mode, self.bundle, self.assets, run, spread,
                                           replay, self.current_twin, self.truth)
            if self.training and mode in self.training.modes and result.verdict is not None:
                steps, trained = self.training.compare(mode, run.stages.get(mode), spread)
                result = with_steps(result, compared, steps)
                compared += steps
                self.trained += [trained] if trained else []
            stages += compared
            modes.append(result)
        self.gaps = [gap for mode in self.modes
                     if (gap := _conversion_gap(mode, run, self.current_twin)) is not None]
        self.runtimes = runtime_checks(self.bundle.runtimes, run.native.runtimes, self.modes)
        return tuple(stages), tuple(modes)

    def replay(self) -> Replay | None:
        """What replays a differing stage alone on golden inputs (None: nothing is replayed)."""
        from envaudit.workload import replay_stages

        return replay_stages

    def current_twin(self, decoded: np.ndarray) -> Mapping[str, np.ndarray]:
        """The float64 reference of a run here that decoded ``decoded``."""
        return current_twin(self.bundle, self.assets, decoded)

    def describe(self, probes: Sequence[TensorComparison]) -> SubjectInfo:
        return CanaryInfo(training=self.training.report(self.trained) if self.training else None,
                          conversion=tuple(self.gaps), runtimes=self.runtimes)

    def headline(self, verdict: str, stages: Sequence[TensorComparison],
                 probes: Sequence[TensorComparison], modes: Sequence[ModeResult],
                 info: SubjectInfo, detections: DetectionDiff, first: str | None,
                 top_cause: str | None) -> str:
        pipeline = [s for s in stages if s.role != "step"]
        report = getattr(info, "training", None)
        if report is None:
            return headline(verdict, pipeline, probes, detections,  # type: ignore[arg-type]
                            first_divergence=first, top_cause=top_cause, modes=tuple(modes))
        alone = worst([classify(pipeline, probes, detections)])
        first_stage = first if first in {s.name for s in pipeline} else None
        # inference that did not move is said without its modes ("in all 3 modes")
        said = headline(alone, pipeline, probes, detections,  # type: ignore[arg-type]
                        first_divergence=first_stage,
                        modes=tuple(modes) if alone == verdict or alone != "identical" else ())
        return with_training(said, verdict, alone, report, top_cause)

    def notes(self, run: SubjectRun) -> tuple[str, ...]:
        notes = []
        if self.bundle.schema == SCHEMA_V1:
            notes.append(f"golden bundle {self.bundle.path} has schema {SCHEMA_V1} (envaudit 0.1):"
                         " checked in eager mode only; re-record it with 'envaudit record"
                         " --golden PATH --force' to check graph and xla modes too")
        for mode, why in self.bundle.not_run.items():
            notes.append(f"the golden recorded no {mode} mode: {why}")
        return tuple(notes)

    def provenance(self, seen: Any) -> RecordedElsewhere | None:
        return recorded_elsewhere(self.bundle.fingerprint, seen,
                                  shipped=is_shipped(self.bundle.path))

    def rerun_child(self) -> contextlib.AbstractContextManager[tuple[str, ...]]:
        # a re-run child runs the canary by default; the training steps when asked
        return contextlib.nullcontext(self.training.child_arguments(self.modes)
                                      if self.training else ())

    def identity(self) -> str:
        return f"{WORKLOAD_ID} {WORKLOAD_VERSION}"


def is_shipped(path: Path) -> bool:
    """Whether ``path`` is envaudit's own reference bundle (recorded on the maintainers'
    machine, not the user's)."""
    try:
        return Path(path).resolve() == REFERENCE_BUNDLE.resolve()
    except OSError:
        return False


def _checked_modes(bundle: GoldenBundle, requested: Sequence[str] | None) -> tuple[str, ...]:
    """The modes to check: those asked for (all the bundle has by default), each one the bundle
    recorded; a schema-1 bundle has the eager mode only."""
    if requested is None:
        return bundle.modes
    unknown = registry.unknown(requested)
    if unknown:
        raise EnvauditError(f"unknown mode {', '.join(unknown)}; choose from"
                            f" {', '.join(registry.names())}")
    missing = [m for m in requested if m not in bundle.modes]
    if missing:
        how = (" (it has schema 1, eager mode only: re-record it with 'envaudit record --golden"
               " PATH --force' to record every mode)" if bundle.schema == SCHEMA_V1 else "")
        raise EnvauditError(f"golden bundle {bundle.path} did not record mode"
                            f" {', '.join(missing)}{how}; choose from {', '.join(bundle.modes)}")
    return registry.in_order(requested)


def _check_mode(mode: str, bundle: GoldenBundle, assets: Assets, run: SubjectRun,
                spread: float, replay: Replay | None, twin: TwinOf,
                truth: GroundTruth | None = None
                ) -> tuple[tuple[TensorComparison, ...], ModeResult]:
    """One mode's stages compared, localized by replay in that mode (``replay`` None: not
    replayed), its detections matched; ``twin``: the float64 reference of a run's arrays."""
    golden = bundle.stages_by_mode[mode]
    current = run.native.runs.get(mode)
    if current is None:
        reason = run.not_run.get(mode, f"{mode} mode did not run")
        stages = compare_arrays("stage", golden, {}, spread=spread, mode=mode)
        return stages, ModeResult(mode, None, None, None, reason)
    stages = compare_arrays(
        "stage", golden, current.stages, spread=spread, mode=mode,
        references=twin(current.stages["decode"]),
        golden_references=current_twin(bundle, assets, golden["decode"]))
    golden_candidates = Candidates(boxes=golden["boxes"], scores=golden["scores"])
    noise = max(decision_noise(golden_candidates, current.candidates), spread)
    golden_detections = detections_from_nms(golden["nms"])
    missed = (missed_objects(*truth, golden_detections, current.detections)
              if truth is not None else None)
    detections = match_detections(golden_detections, current.detections, noise=noise,
                                  golden_candidates=golden_candidates, mode=mode,
                                  score_threshold=SCORE_THRESHOLD, missed=missed)
    differing = [s.name for s in stages if not s.identical]
    replayed = (None if replay is None else
                replay(assets, golden, differing, mode=mode) if differing else {})
    first = localize.first_divergence(stages, golden, replayed)
    return stages, ModeResult(mode, classify(stages, (), detections), first, detections)


def _conversion_gap(mode: str, run: SubjectRun, twin: TwinOf) -> ConversionGap | None:
    """A converted mode that ran against the graph mode of the same run (None: not a converted
    mode, or one of the two did not run); ``twin``: the float64 reference of the run's arrays."""
    if not registry.get(mode).converted:
        return None
    runs = run.native.runs
    reference, converted = runs.get(registry.CONVERTED_FROM), runs.get(mode)
    if reference is None or converted is None:
        return None
    return measure(mode, registry.CONVERTED_FROM, reference.stages, converted.stages,
                   twin=twin(reference.stages["decode"]),
                   detections=(reference.detections, converted.detections),
                   score_threshold=SCORE_THRESHOLD, runtime=run.native.runtimes.get(mode))


def _ground_truth(assets: Assets) -> GroundTruth | None:
    """The objects rendered into the golden scenes, or None where the asset folder does not list
    them (a folder of its own through ENVAUDIT_ASSETS): then nothing is said about them."""
    if not all(n.rsplit(".", 1)[0] + ".labels.npz" in assets.checksums
               for n in assets.image_names):
        return None
    return ground_truth(assets)


def _require_same_workload(bundle: GoldenBundle, assets: Assets) -> None:
    """A bundle of another workload or other assets cannot be compared bit for bit."""
    recorded: Mapping[str, Any] = bundle.manifest.get("workload", {})
    version = recorded.get("version")
    compatible = version == WORKLOAD_VERSION or (
        bundle.schema == SCHEMA_V1 and version in EAGER_COMPATIBLE_VERSIONS)
    if recorded.get("id") != WORKLOAD_ID or not compatible:
        raise EnvauditError(
            f"golden bundle {bundle.path} was recorded with workload {recorded.get('id')}"
            f" v{recorded.get('version')}, this envaudit runs {WORKLOAD_ID} v{WORKLOAD_VERSION};"
            " re-record it with 'envaudit record --golden PATH --force'")
    now = used_checksums(assets)
    for name, recorded_sha in recorded.get("assets", {}).items():
        if now.get(name) != recorded_sha:
            raise EnvauditError(
                f"golden bundle {bundle.path} was recorded with other workload assets ({name}"
                f" sha256 {recorded_sha[:16]}..., now {str(now.get(name))[:16]}...); re-record it"
                " with 'envaudit record --golden PATH --force'")


def current_twin(bundle: GoldenBundle, assets: Assets,
                 decoded: np.ndarray) -> Mapping[str, np.ndarray]:
    """The float64 reference for a run that decoded ``decoded``: the golden twin unless decoding
    changed."""
    if bit_identical(bundle.stages["decode"], decoded):
        return bundle.twin
    from envaudit.workload.twin import Twin

    return Twin(assets.weights).run(decoded)

