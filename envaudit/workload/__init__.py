"""The golden detection workload: the instrument every check measures with.

``run_workload()`` decodes the golden images, runs the trained detector stage by stage and the op
probes, and returns every float output. It is the only code that imports TensorFlow, and it does so
lazily: importing this package stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from envaudit import modes as registry
from envaudit.errors import EnvauditError
from envaudit.workload.architecture import MODES, STAGES, WORKLOAD_ID, WORKLOAD_VERSION
from envaudit.workload.assets import Assets, load_assets
from envaudit.workload.types import Candidates, Detections, ModeRun, WorkloadResult

__all__ = ["run_workload", "replay_stages", "detections_from_nms", "MODES", "STAGES",
           "WORKLOAD_ID", "WORKLOAD_VERSION"]


def detections_from_nms(nms: np.ndarray) -> Detections:
    """Final detections from the ``nms`` stage rows (box, score, class; zero rows are padding)."""
    image, slot = np.nonzero(nms[..., 4] > 0)
    rows = nms[image, slot]
    return Detections(
        image=image.astype(np.int32),
        boxes=rows[:, :4].astype(np.float32),
        classes=rows[:, 5].astype(np.int32),
        scores=rows[:, 4].astype(np.float32),
    )


def run_workload(assets: Assets | None = None,
                 modes: Sequence[str] | None = None) -> WorkloadResult:
    """Run the whole golden workload once in this process, in each of ``modes`` (default: the
    modes a recording records unless told, ``envaudit.modes.recorded_by_default()``, read now;
    imports TensorFlow). A mode this TensorFlow cannot run is listed in ``not_run`` with the
    reason."""
    requested = registry.recorded_by_default() if modes is None else modes
    unknown = registry.unknown(requested)
    if unknown:
        raise EnvauditError(f"unknown mode {', '.join(unknown)}; choose from"
                            f" {', '.join(registry.names())}")
    assets = assets or load_assets()  # verified before TensorFlow's import cost is paid
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload import devices
    from envaudit.workload.detector import Detector
    from envaudit.workload.modes import ModeRunner, ModeUnavailable
    from envaudit.workload.probes import run_probes_on_devices

    runner = ModeRunner(Detector(assets.weights))
    runs: dict[str, ModeRun] = {}
    not_run: dict[str, str] = {}
    warmed = 0.0
    for mode in registry.in_order(requested):
        try:
            warmed += tf_runtime.warm_up(lambda m=mode: runner.run_on_devices(m, assets.encoded))
            start = time.perf_counter()
            stages, placed = runner.run_on_devices(mode, assets.encoded)
        except ModeUnavailable as exc:
            not_run[mode] = str(exc)
            continue
        runs[mode] = ModeRun(
            mode=mode, stages=stages, detections=detections_from_nms(stages["nms"]),
            candidates=Candidates(boxes=stages["boxes"], scores=stages["scores"]),
            seconds=time.perf_counter() - start, devices=placed)
    if not runs:
        raise EnvauditError("no execution mode could run here: " + "; ".join(not_run.values()))
    probes_start = time.perf_counter()
    probes, probe_devices = run_probes_on_devices(assets.probe_jpeg)
    done = time.perf_counter()
    return WorkloadResult(
        workload_id=WORKLOAD_ID,
        workload_version=WORKLOAD_VERSION,
        images=assets.image_names,
        runs=runs,
        probes=probes,
        not_run=not_run,
        timings={**{f"{m}_s": r.seconds for m, r in runs.items()},
                 "probes_s": done - probes_start, **({"warmup_s": warmed} if warmed else {})},
        probe_devices=probe_devices,
        device_names=devices.names(),
        runtimes={m: dict(runner.runtimes[m]) for m in runs if m in runner.runtimes},
    )


def replay_stages(assets: Assets, golden_stages: Mapping[str, np.ndarray],
                  names: Iterable[str], mode: str = registry.DEFAULT) -> dict[str, np.ndarray]:
    """Each named stage run alone in ``mode`` on the golden outputs of the stages it reads
    ("decode" re-decodes the golden image files)."""
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.detector import STAGE_INPUTS, Detector, decode_images
    from envaudit.workload.modes import ModeRunner

    runner = ModeRunner(Detector(assets.weights))
    replayed = {}
    for name in names:
        if name == "decode":
            replayed[name] = decode_images(assets.encoded).numpy()
        else:
            inputs = {k: golden_stages[k] for k in STAGE_INPUTS[name]}
            replayed[name] = runner.replay(mode, name, inputs)
    return replayed
