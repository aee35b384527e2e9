"""A user-model golden and the model it names, verified before anything runs.

``locate``: the model to run, proven to be the recorded one by its SHA-256; a path read from the
bundle (someone else's data) is used only where no one but this user and root could have put the
model there. ``validated``: the golden arrays, refused unless they are exactly what the manifest
describes. NumPy only; no TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from envaudit import modes
from envaudit.errors import EnvauditError
from envaudit.spelling import MODEL_KIND_WORDS
from envaudit.store import GoldenBundle
from envaudit.usermodel.detections import shape_problem
from envaudit.usermodel.files import location_problem, model_digest, model_kind
from envaudit.usermodel.spec import ModelInfo
from envaudit.workload.spec import PROBE_SPEC


def locate(info: ModelInfo, given: str | None) -> Path:
    """The model to run: ``given`` (the user's choice) or the recorded path, which must not be
    writable by anyone but this user and root; either must hash to the recorded SHA-256."""
    if given is not None:
        path = Path(given)
    else:
        recorded = info.path
        path = Path(os.path.expanduser(recorded) if recorded.startswith("~/") else recorded)
        if not path.is_absolute() or not path.exists():
            raise EnvauditError(f"the recorded model {recorded} is not there (moved, or recorded"
                                " on another machine); pass --model PATH to the model")
        unsafe = location_problem(path)
        if unsafe:
            raise EnvauditError(f"the recorded model path {recorded} is not safe to load from"
                                f" ({unsafe}); pass --model PATH to name the model yourself")
    kind = model_kind(path)
    if kind != info.kind:
        raise EnvauditError(f"{path} is a {MODEL_KIND_WORDS.get(kind, kind)}, the golden was"
                            f" recorded from a {MODEL_KIND_WORDS.get(info.kind, info.kind)};"
                            " pass --model PATH to the recorded model")
    identity = model_digest(path)
    if identity.sha256 != info.sha256:
        raise EnvauditError(f"model {path} changed since the golden was recorded (sha256"
                            f" {identity.sha256[:16]}..., recorded {info.sha256[:16]}...);"
                            " restore it, pass --model PATH to the recorded copy, or re-record"
                            " with 'envaudit record --model ... --force'")
    return path


def validated(bundle: GoldenBundle, info: ModelInfo) -> Mapping[str, np.ndarray]:
    """The golden stages of the recorded mode, refused unless they are exactly the arrays the
    manifest describes (someone else's data: checked before anything is compared)."""
    where = f"golden bundle {bundle.path}"
    if bundle.modes != (info.mode,):
        raise _unusable(where, f"it holds modes {', '.join(bundle.modes)}, its model ran in"
                        f" {info.mode}")
    stages = bundle.stages_by_mode[info.mode]
    if tuple(stages) != info.stage_names():
        raise _unusable(where, "its arrays are not the inputs, layers and outputs its manifest"
                        " lists")
    for decoded in (a for a in info.arrays() if a.role == "input"):
        array = stages[decoded.name]
        if array.dtype != np.uint8 or array.ndim != 4:
            raise _unusable(where, f"{decoded.name} is {array.dtype}{list(array.shape)}, decoded"
                            " images are uint8[N, H, W, C]")
    expected_probes = witness_probes(info.mode)
    if tuple(bundle.probes) != expected_probes:
        raise _unusable(where, "its probes are not the probes this envaudit runs beside a model"
                        f" in {info.mode} mode")
    for name in expected_probes:
        dtype, shape = PROBE_SPEC[name]
        array = bundle.probes[name]
        if array.dtype != dtype or array.shape != shape:
            raise _unusable(where, f"probe {name} is {array.dtype}{list(array.shape)}, expected"
                            f" {dtype}{list(shape)}")
    expected = ([f"image.{i}" for i in range(len(info.image_files))]
                if info.input_kind == "images" else sorted(info.inputs))
    if sorted(bundle.inputs) != sorted(expected):
        raise _unusable(where, "its inputs are not the ones its manifest lists")
    if info.input_kind == "images" and any(
            a.dtype != np.uint8 or a.ndim != 1 for a in bundle.inputs.values()):
        raise _unusable(where, "its image inputs are not encoded image bytes")
    if info.detections:
        for outputs in outputs_by_image(info, stages):
            problem = shape_problem(info.detections, outputs)
            if problem:
                raise _unusable(where, f"its detection outputs do not fit: {problem}")
    return stages


def witness_probes(mode: str) -> tuple[str, ...]:
    """The canary probes that run beside a model in ``mode`` (``modes.runs_beside``)."""
    return tuple(n for n in PROBE_SPEC if modes.runs_beside(n, mode))


def _unusable(where: str, why: str) -> EnvauditError:
    return EnvauditError(f"{where} is unusable: {why}; re-record it with 'envaudit record"
                         " --model MODEL --inputs INPUTS --golden PATH --force'")


def outputs_by_image(info: ModelInfo, stages: Mapping[str, np.ndarray]
                     ) -> list[dict[str, np.ndarray]]:
    """A run's outputs by output name: one mapping for the batch, or one per image when the
    images ran one at a time (``ModelInfo.per_image``)."""
    found: list[dict[str, np.ndarray]] = [{} for _ in (info.image_files if info.per_image
                                                        else (None,))]
    for array in info.arrays():
        if array.role == "output" and array.name in stages:
            found[array.image or 0][array.of] = stages[array.name]
    return found
