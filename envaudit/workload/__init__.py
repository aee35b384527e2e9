"""The golden detection workload: the instrument every check measures with.

``run_workload()`` decodes the golden images, runs the trained detector stage by stage and the op
probes, and returns every float output. It is the only code that imports TensorFlow, and it does so
lazily: importing this package stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import numpy as np

from envaudit.workload.architecture import STAGES, WORKLOAD_ID, WORKLOAD_VERSION
from envaudit.workload.assets import Assets, load_assets
from envaudit.workload.types import Candidates, Detections, WorkloadResult

__all__ = ["run_workload", "replay_stages", "detections_from_nms", "STAGES", "WORKLOAD_ID",
           "WORKLOAD_VERSION"]


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


def run_workload(assets: Assets | None = None) -> WorkloadResult:
    """Run the whole golden workload once in this process (imports TensorFlow)."""
    assets = assets or load_assets()  # verified before TensorFlow's import cost is paid
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.detector import Detector
    from envaudit.workload.probes import run_probes

    start = time.perf_counter()
    detector = Detector(assets.weights)
    stages = detector.run(assets.encoded)
    pipeline_done = time.perf_counter()
    jpeg = assets.encoded[assets.image_names.index(next(
        n for n in assets.image_names if n.endswith(".jpg")))]
    probes = run_probes(jpeg)
    done = time.perf_counter()
    return WorkloadResult(
        workload_id=WORKLOAD_ID,
        workload_version=WORKLOAD_VERSION,
        images=assets.image_names,
        stages=stages,
        probes=probes,
        detections=detections_from_nms(stages["nms"]),
        candidates=Candidates(boxes=stages["boxes"], scores=stages["scores"]),
        timings={"pipeline_s": pipeline_done - start, "probes_s": done - pipeline_done},
    )


def replay_stages(assets: Assets, golden_stages: Mapping[str, np.ndarray],
                  names: Iterable[str]) -> dict[str, np.ndarray]:
    """Each named stage run alone on the golden outputs of the stages it reads ("decode" re-decodes
    the golden image files)."""
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.detector import STAGE_INPUTS, Detector, decode_images

    detector = Detector(assets.weights)
    replayed = {}
    for name in names:
        if name == "decode":
            replayed[name] = decode_images(assets.encoded).numpy()
        else:
            inputs = {k: golden_stages[k] for k in STAGE_INPUTS[name]}
            replayed[name] = detector.replay(name, inputs)
    return replayed
