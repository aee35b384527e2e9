"""What a golden bundle of this workload must hold: every array's name, dtype and shape.

A bundle is data from someone else. Its checksums prove that nobody changed it after it was
written, not that its writer was envaudit: a forged bundle can hold a float16 stage, a NaN score
or a box array of the wrong shape, and comparing against it would give a verdict with no meaning
("at most inf of scale", "Equivalent" against NaN). So before anything is compared, the golden
arrays are held against this table and refused (exit 2) when they do not fit.

The table is literal on purpose: the shapes follow from the architecture, the probes' fixed inputs
and the shipped scenes (whose checksums are verified), and ``tests/test_workload.py`` asserts that
a real run produces exactly these arrays. Change the workload -> change this table and bump
``WORKLOAD_VERSION``. NumPy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from envaudit.errors import EnvauditError
from envaudit.workload.architecture import NUM_CLASSES, PROBE_FAMILIES, PROBES_V1, STAGES
from envaudit.workload.types import MAX_DETECTIONS

IMAGES = 6  # three golden scenes, each as PNG and as JPEG
ANCHORS = 500
_U8, _F32, _I32 = np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.int32)

STAGE_SPEC: Mapping[str, tuple[np.dtype, tuple[int, ...]]] = {
    "decode": (_U8, (IMAGES, 100, 100, 3)),
    "resize": (_F32, (IMAGES, 80, 80, 3)),
    "normalize": (_F32, (IMAGES, 80, 80, 3)),
    "stem": (_F32, (IMAGES, 40, 40, 16)),
    "block1": (_F32, (IMAGES, 20, 20, 32)),
    "block2": (_F32, (IMAGES, 10, 10, 48)),
    "block3": (_F32, (IMAGES, 5, 5, 64)),
    "context": (_F32, (IMAGES, 5, 5, 64)),
    "class_logits": (_F32, (IMAGES, ANCHORS, NUM_CLASSES)),
    "box_deltas": (_F32, (IMAGES, ANCHORS, 4)),
    "scores": (_F32, (IMAGES, ANCHORS, NUM_CLASSES)),
    "boxes": (_F32, (IMAGES, ANCHORS, 4)),
    "nms": (_F32, (IMAGES, MAX_DETECTIONS, 6)),
}

PROBE_SPEC: Mapping[str, tuple[np.dtype, tuple[int, ...]]] = {
    **{name: (_F32, (4096,)) for name in
       ("exp", "log", "tanh", "sigmoid", "erf", "gelu", "softplus")},
    "reduce_sum_long": (_F32, ()),
    "reduce_mean_rows": (_F32, (64,)),
    "matmul_square": (_F32, (64, 64)),
    "matmul_long_inner": (_F32, (8, 8)),
    "matmul_wide": (_F32, (96, 96)),
    "conv3x3": (_F32, (1, 16, 16, 16)),
    "conv1x1": (_F32, (1, 16, 16, 16)),
    "conv_strided": (_F32, (1, 8, 8, 16)),
    "conv_dilated": (_F32, (1, 16, 16, 16)),
    "depthwise3x3": (_F32, (1, 16, 16, 8)),
    "resize_bilinear": (_F32, (1, 21, 21, 3)),
    "resize_bicubic": (_F32, (1, 21, 21, 3)),
    "resize_area_antialias": (_F32, (1, 13, 13, 3)),
    "jpeg_decode_default": (_U8, (100, 100, 3)),
    "jpeg_decode_accurate": (_U8, (100, 100, 3)),
    "softmax": (_F32, (64, 100)),
    "nms_near_tie": (_F32, (4,)),
}

PROBE_SPEC = {**PROBE_SPEC, **{name: PROBE_SPEC[name[4:]] for name in PROBE_FAMILIES
                              if name.startswith("xla.")}}
PROBE_SPEC_V1 = {name: PROBE_SPEC[name] for name in PROBES_V1}

# The float64 twin covers every stage after decoding (decoding is the input it is given).
TWIN_SPEC: Mapping[str, tuple[np.dtype, tuple[int, ...]]] = {
    name: (np.dtype(np.float64), shape) for name, (_dtype, shape) in STAGE_SPEC.items()
    if name != "decode"
}

assert tuple(STAGE_SPEC) == STAGES and tuple(PROBE_SPEC) == tuple(PROBE_FAMILIES)


def validate_golden(where: str, stages: Mapping[str, Mapping[str, np.ndarray]],
                    probes: Mapping[str, np.ndarray], twin: Mapping[str, np.ndarray],
                    detections: Mapping[str, np.ndarray] | None = None) -> None:
    """Raise ``EnvauditError`` unless the arrays are exactly what this workload records: the
    stages of each recorded mode (``stages``: mode -> stage arrays), the probes and the twin,
    every float finite, and (schema 1, given ``detections``) the stored detections consistent
    with the ``nms`` shape and the probes of workload version 1."""
    probe_spec = PROBE_SPEC if detections is None else PROBE_SPEC_V1
    groups = [(f"stages.{mode}", arrays, STAGE_SPEC) for mode, arrays in stages.items()]
    for group, arrays, spec in (*groups, ("probes", probes, probe_spec),
                                ("twin", twin, TWIN_SPEC)):
        if tuple(arrays) != tuple(spec):
            raise _unusable(where, f"its {group} are {_names(arrays)}, this workload records"
                            f" {_names(spec)}")
        for name, (dtype, shape) in spec.items():
            _require(where, f"{group}/{name}", arrays[name], dtype, shape)
    if detections is not None:
        _validate_detections(where, detections)


def _validate_detections(where: str, d: Mapping[str, np.ndarray]) -> None:
    expected = ("image", "boxes", "classes", "scores")
    if sorted(d) != sorted(expected):
        raise _unusable(where, f"its detections are {_names(d)}, expected {_names(expected)}")
    count = d["scores"].shape[0] if d["scores"].ndim == 1 else -1
    for name, dtype, shape in (("image", _I32, (count,)), ("boxes", _F32, (count, 4)),
                               ("classes", _I32, (count,)), ("scores", _F32, (count,))):
        _require(where, f"detections/{name}", d[name], dtype, shape)
    if count > IMAGES * MAX_DETECTIONS:
        raise _unusable(where, f"it holds {count} detections, at most"
                        f" {IMAGES * MAX_DETECTIONS} are possible")
    if d["image"].size and (d["image"].min() < 0 or d["image"].max() >= IMAGES):
        raise _unusable(where, f"a detection names an image outside 0..{IMAGES - 1}")
    if d["classes"].size and (d["classes"].min() < 0 or d["classes"].max() >= NUM_CLASSES):
        raise _unusable(where, f"a detection names a class outside 0..{NUM_CLASSES - 1}")
    if d["scores"].size and (d["scores"].min() < 0.0 or d["scores"].max() > 1.0):
        raise _unusable(where, "a detection score lies outside [0, 1]")


def _require(where: str, label: str, array: np.ndarray, dtype: np.dtype,
             shape: tuple[int, ...]) -> None:
    if array.dtype != dtype or array.shape != shape:
        raise _unusable(where, f"{label} is {array.dtype}{list(array.shape)}, this workload"
                        f" records {dtype}{list(shape)}")
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise _unusable(where, f"{label} holds NaN or infinity, which no comparison can use")


def _unusable(where: str, why: str) -> EnvauditError:
    return EnvauditError(f"golden bundle {where} is unusable: {why}; re-record it with"
                         " 'envaudit record --golden PATH --force'")


def _names(names: Iterable[str]) -> str:
    listed = list(names)
    shown = ", ".join(map(str, listed[:4])) + (", ..." if len(listed) > 4 else "")
    return f"{len(listed)} arrays ({shown})" if listed else "none"
