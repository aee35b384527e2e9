"""What a bundle says about a user model, validated; and the options that describe one.

A user-model manifest is someone else's data like any other (docs/design.md, "Trust model"): every
field is type-checked here before use, names must be plain, and nothing in it picks code. The model
path it records is only a hint for finding the user's own model, which must still hash to the
recorded SHA-256 and pass ``files.location_problem``; the signature it names must exist in that
model; the layers a check records are derived from the model itself, never read from the manifest.

An array's role (``compare.types.ArrayRole``) is data: ``input`` (decoded images), ``layer`` (a
Keras layer's output, or a conv/matmul output inside a SavedModel's graph), ``output`` (a model
output), in that order, which is the order localization walks. ``ModelInfo.arrays`` knows each
array's role and model name from the manifest's lists; the names in a bundle (arrays of
``stages.MODE``) are spelled from them by ``array_name`` alone (``input.NAME``, ``layer.NAME``,
``output.NAME``: the bundle's file format) and never parsed back. Images of different sizes run
one at a time (``per_image``): each image has its own arrays, named ``STAGE.I`` with I the image's
index in ``inputs.files``, stage by stage (every image's input, then every image's first layer,
...). A manifest without ``per_image`` (recorded before images could run one at a time) is a
batched one. Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from envaudit import modes
from envaudit.compare.types import ArrayRole
from envaudit.errors import EnvauditError

ModelKind = Literal["saved_model", "keras"]
InputKind = Literal["images", "arrays"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)
DEFAULT_SIGNATURE = "serving_default"  # what TF Serving calls when a request names none
# The modes a model of your own is recorded in: the one its own run uses (a SavedModel's
# signature runs as a graph; Keras's predict chooses), or converted for TFLite in this environment
# (``workload/user_tflite.py``).
NATIVE_MODES = (modes.EAGER, modes.GRAPH, modes.XLA)
CONVERTED_MODES = (modes.TFLITE, modes.TFLITE_FLOAT16, modes.TFLITE_DYNAMIC_RANGE)
MODEL_MODES = (*NATIVE_MODES, *CONVERTED_MODES)

# Names that may appear as array names in a bundle (``store._ARRAY_NAME``) and as signature keys.
PLAIN = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# dtypes a model input may have, as NumPy spells them.
INPUT_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32",
                "float64", "bool")
_INPUT_KEYS = ["feed", "files", "kind"]  # ``per_image`` too, since images may run one at a time
_MODEL_KEYS = sorted(("kind", "path", "sha256", "files", "bytes", "signature", "inputs", "outputs",
                      "layers", "detections", "mode"))


@dataclass(frozen=True)
class TensorSpec:
    """An input's dtype and shape as the model declares it (None: any size)."""

    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class DetectionNames:
    """Which outputs hold detections: boxes [N,K,4], scores [N,K], classes [N,K], count [N]."""

    boxes: str
    scores: str
    classes: str
    count: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"boxes": self.boxes, "scores": self.scores, "classes": self.classes,
                "count": self.count}

    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.boxes, self.scores, self.classes, self.count) if n)


# The TF Object Detection API's export signature, recognised without being told.
OD_API = DetectionNames("detection_boxes", "detection_scores", "detection_classes",
                        "num_detections")


@dataclass(frozen=True)
class Tolerance:
    """An accepted difference, as ``numpy.isclose``: |current - golden| <= atol + rtol*|golden|."""

    rtol: float
    atol: float

    def describe(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


@dataclass(frozen=True)
class Tolerances:
    default: Tolerance | None = None
    per_output: Mapping[str, Tolerance] | None = None

    def for_output(self, name: str) -> Tolerance | None:
        return (self.per_output or {}).get(name, self.default)


@dataclass(frozen=True)
class ModelInfo:
    """The manifest's ``workload.model`` and ``workload.inputs``: which model, how it ran,
    on what."""

    kind: ModelKind
    path: str  # where it was recorded from (home shown as ~ in a redacted bundle)
    sha256: str  # over its files (``files.model_digest``)
    files: int
    size: int  # bytes
    signature: str | None  # the SavedModel signature key; None for a Keras model
    inputs: Mapping[str, TensorSpec]
    outputs: tuple[str, ...]  # output names, in the model's order
    layers: tuple[str, ...]  # the layer names whose outputs were recorded, in model order
    detections: DetectionNames | None
    mode: str  # the execution mode the model ran in (``MODEL_MODES``)
    input_kind: InputKind
    image_files: tuple[str, ...] = ()  # image inputs: the file names, in batch order
    image_feed: str | None = None  # image inputs: the input they are fed as
    per_image: bool = False  # image inputs of different sizes, run one at a time

    def to_manifest(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(``workload.model``, ``workload.inputs``) as the manifest stores them."""
        model = {"kind": self.kind, "path": self.path, "sha256": self.sha256,
                 "files": self.files, "bytes": self.size, "signature": self.signature,
                 "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
                 "outputs": list(self.outputs), "layers": list(self.layers),
                 "detections": self.detections.to_dict() if self.detections else None,
                 "mode": self.mode}
        inputs = {"kind": self.input_kind, "files": list(self.image_files),
                  "feed": self.image_feed, "per_image": self.per_image}
        return model, inputs

    @classmethod
    def from_manifest(cls, workload: Mapping[str, Any]) -> ModelInfo:
        """The model a verified manifest describes (``workload_problem`` already passed)."""
        m, i = workload["model"], workload["inputs"]
        d = m["detections"]
        return cls(
            kind=m["kind"], path=m["path"], sha256=m["sha256"], files=m["files"],
            size=m["bytes"], signature=m["signature"],
            inputs={k: TensorSpec(v["dtype"], tuple(v["shape"])) for k, v in m["inputs"].items()},
            outputs=tuple(m["outputs"]), layers=tuple(m["layers"]),
            detections=DetectionNames(d["boxes"], d["scores"], d["classes"], d["count"])
            if d else None,
            mode=m["mode"], input_kind=i["kind"], image_files=tuple(i["files"]),
            image_feed=i["feed"], per_image=i.get("per_image", False))

    def arrays(self) -> tuple[ModelArray, ...]:
        """Every array of a run, in localization order."""
        feeds = (self.image_feed,) if self.input_kind == "images" and self.image_feed else ()
        named: tuple[tuple[ArrayRole, str], ...] = (
            *(("input", n) for n in feeds), *(("layer", n) for n in self.layers),
            *(("output", n) for n in self.outputs))
        if not self.per_image:
            return tuple(ModelArray(array_name(r, n), r, n, None) for r, n in named)
        images = range(len(self.image_files))
        return tuple(ModelArray(per_image_name(array_name(r, n), i), r, n, i)
                     for r, n in named for i in images)

    def stage_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arrays())

    def roles(self) -> dict[str, ArrayRole]:
        """Each array's role by its name in the bundle (``compare_arrays``'s ``roles``)."""
        return {a.name: a.role for a in self.arrays()}

    def output_of(self, name: str) -> str | None:
        """The model output an array holds (all of it, or one image's), or None."""
        return next((a.of for a in self.arrays() if a.name == name and a.role == "output"),
                    None)


@dataclass(frozen=True)
class ModelArray:
    """One array of a run: its name in the bundle, its role, the model's name of the input, layer
    or output it holds, for which image (None: the whole batch)."""

    name: str
    role: ArrayRole
    of: str
    image: int | None


def array_name(role: ArrayRole, name: str) -> str:
    """The one spelling of an array's name in a bundle: ``ROLE.NAME`` (the bundle's format)."""
    return f"{role}.{name}"


def per_image_name(stage: str, image: int) -> str:
    """The array of ``stage`` for image ``image`` when images run one at a time."""
    return f"{stage}.{image}"


# --- validation of someone else's manifest -----------------------------------------------------


def workload_problem(workload: Mapping[str, Any]) -> str | None:
    """What is wrong with a user-model manifest's ``workload`` field, or None."""
    if sorted(workload) != ["id", "inputs", "model", "timings", "version"]:
        return "a user-model 'workload' must hold exactly id, version, model, inputs and timings"
    m, i = workload["model"], workload["inputs"]
    problem = _model_problem(m) or _inputs_problem(i, m["inputs"])
    if problem:
        return problem
    timings = workload["timings"]
    if not isinstance(timings, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in timings.values()):
        return "'workload.timings' must map names to seconds"
    if not isinstance(workload["version"], str):
        return "'workload.version' must be text"
    return None


def _model_problem(m: Any) -> str | None:
    """What is wrong with ``workload.model``: the model, its inputs, outputs, layers, mode."""
    if not isinstance(m, dict) or sorted(m) != _MODEL_KEYS:
        return "'workload.model' must describe the model's kind, path, sha256, files, bytes," \
               " signature, inputs, outputs, layers, detections and mode"
    if m["kind"] not in MODEL_KINDS:
        return f"'workload.model.kind' must be one of {', '.join(MODEL_KINDS)}"
    if not isinstance(m["path"], str) or not m["path"] or "\0" in m["path"]:
        return "'workload.model.path' must be a path"
    if not isinstance(m["sha256"], str) or not _SHA256.fullmatch(m["sha256"]):
        return "'workload.model.sha256' must be a sha256 in hex"
    if not all(_count(m[k]) for k in ("files", "bytes")):
        return "'workload.model.files' and 'bytes' must be whole numbers"
    if m["signature"] is not None and not _plain(m["signature"]):
        return "'workload.model.signature' must be a plain name or null"
    if (m["kind"] == "keras") != (m["signature"] is None):
        return "a SavedModel names its signature, a Keras model none"
    inputs = m["inputs"]
    if not isinstance(inputs, dict) or not inputs or not all(
            _plain(k) and _spec_ok(v) for k, v in inputs.items()):
        return "'workload.model.inputs' must map plain input names to a dtype and a shape"
    for key in ("outputs", "layers"):
        names = m[key]
        if not isinstance(names, list) or not all(_plain(n) for n in names) or \
                len(set(names)) != len(names):
            return f"'workload.model.{key}' must be a list of distinct plain names"
    if not m["outputs"]:
        return "'workload.model.outputs' must name at least one output"
    d = m["detections"]
    if d is not None:
        if not isinstance(d, dict) or sorted(d) != ["boxes", "classes", "count", "scores"] or \
                not all(d[k] in m["outputs"] for k in ("boxes", "scores", "classes")) or \
                not (d["count"] is None or d["count"] in m["outputs"]):
            return "'workload.model.detections' must name outputs of the model"
    if m["mode"] not in MODEL_MODES:
        return f"'workload.model.mode' must be one of {', '.join(MODEL_MODES)}"
    return None


def _inputs_problem(i: Any, inputs: Mapping[str, Any]) -> str | None:
    """What is wrong with ``workload.inputs``, given the model's (valid) inputs."""
    if not isinstance(i, dict) or sorted(i) not in (_INPUT_KEYS, sorted(
            (*_INPUT_KEYS, "per_image"))) or i["kind"] not in INPUT_KINDS:
        return "'workload.inputs' must say the kind of inputs, their files and their feed"
    if not isinstance(i.get("per_image", False), bool) or \
            (i.get("per_image") is True and i["kind"] != "images"):
        return "'workload.inputs.per_image' must be true or false, and true only for images"
    if i["kind"] == "images":
        if not _plain(i["feed"]) or i["feed"] not in inputs or \
                not isinstance(i["files"], list) or not i["files"] or \
                not all(_plain(f) for f in i["files"]):
            return "image inputs must list their plain file names and the input they feed"
    elif i["feed"] is not None or i["files"] != []:
        return "array inputs have no files and no feed"
    return None


def _plain(name: Any) -> bool:
    return isinstance(name, str) and bool(PLAIN.fullmatch(name))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _spec_ok(spec: Any) -> bool:
    return (isinstance(spec, dict) and sorted(spec) == ["dtype", "shape"]
            and spec["dtype"] in INPUT_DTYPES and isinstance(spec["shape"], list)
            and len(spec["shape"]) <= 8
            and all(d is None or _count(d) for d in spec["shape"]))


# --- options --------------------------------------------------------------------------------


def parse_detections(text: str) -> DetectionNames:
    """``boxes=NAME,scores=NAME,classes=NAME[,count=NAME]``."""
    fields: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or key not in ("boxes", "scores", "classes", "count") or not _plain(value):
            raise EnvauditError(f"--detections {text!r}: expected boxes=NAME,scores=NAME,"
                                "classes=NAME[,count=NAME] with output names of the model")
        if key in fields:
            raise EnvauditError(f"--detections {text!r} names {key} twice")
        fields[key] = value
    missing = [k for k in ("boxes", "scores", "classes") if k not in fields]
    if missing:
        raise EnvauditError(f"--detections {text!r} does not name {', '.join(missing)};"
                            " expected boxes=NAME,scores=NAME,classes=NAME[,count=NAME]")
    return DetectionNames(fields["boxes"], fields["scores"], fields["classes"],
                          fields.get("count"))


def parse_tolerances(texts: Iterable[str]) -> Tolerances:
    """Each ``[OUTPUT=]rtol:X,atol:Y`` (either part may be left out: 0); one without an output
    name is the default for every output."""
    default: Tolerance | None = None
    per_output: dict[str, Tolerance] = {}
    for text in texts:
        name, sep, rest = text.partition("=")
        if not sep:
            name, rest = "", text
        values = {"rtol": 0.0, "atol": 0.0}
        seen = set()
        for part in (p.strip() for p in rest.split(",") if p.strip()):
            key, colon, number = part.partition(":")
            value = _number(number) if colon else None
            if key not in values or key in seen or value is None:
                raise EnvauditError(f"--tolerance {text!r}: expected [OUTPUT=]rtol:X,atol:Y with"
                                    " X and Y finite numbers of 0 or more")
            seen.add(key)
            values[key] = value
        if not seen:
            raise EnvauditError(f"--tolerance {text!r} gives no rtol or atol;"
                                " expected [OUTPUT=]rtol:X,atol:Y")
        tolerance = Tolerance(values["rtol"], values["atol"])
        if not name:
            default = tolerance
        elif _plain(name):
            per_output[name] = tolerance
        else:
            raise EnvauditError(f"--tolerance {text!r}: {name!r} is not an output name")
    return Tolerances(default, per_output)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def require_outputs(names: Iterable[str], outputs: Sequence[str], what: str) -> None:
    """Refuse names that are not outputs of the model, showing the ones it has."""
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise EnvauditError(f"{what} names {', '.join(map(repr, unknown))}, which the model does"
                            f" not output; its outputs are {', '.join(outputs)}")
