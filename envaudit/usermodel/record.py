"""``envaudit record --model PATH --inputs PATH [--train-inputs DATA --steps K] [--modes MODE]``:
run the user's model here (and train it K steps from its saved state) and store a bundle.

A model is recorded in one mode: the one its own run uses, or, with ``--modes tflite`` (or an
optimized tflite mode), converted for TFLite here and run by LiteRT (``workload/user_tflite.py``);
the bundle then records what converted and ran it (``runtimes``), and a check measures the
converted model against the model run natively beside it.

Everything a user can get wrong is checked before the model is loaded or anything is written: the
target path, the model's kind, the inputs. What only the model can tell (its signature, input
specs, output names, detection outputs) is checked after one run and before the bundle is written,
so a refused record never leaves a file behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Fingerprint
from envaudit.store import GoldenBundle, check_writable, load_bundle, write_bundle
from envaudit.tf32 import Tf32Option, decide, fingerprint_capabilities, require_option
from envaudit.usermodel import WORKLOAD_ID, WORKLOAD_VERSION
from envaudit.usermodel.detections import shape_problem
from envaudit.usermodel.files import (
    ImageFiles,
    ModelIdentity,
    model_digest,
    model_kind,
    read_arrays,
    read_images,
)
from envaudit.usermodel.golden import outputs_by_image
from envaudit.usermodel.spec import (
    CONVERTED_MODES,
    NATIVE_MODES,
    OD_API,
    PLAIN,
    DetectionNames,
    ModelInfo,
    ModelKind,
    require_outputs,
)
from envaudit.usermodel.training import TrainInputs, read_train_inputs
from envaudit.workload.training_spec import DEFAULT_STEPS, MAX_STEPS
from envaudit.workload.types import keyed_devices

if TYPE_CHECKING:  # TensorFlow is imported only once a recording runs the model
    from envaudit.compare.conversion import ConversionGap
    from envaudit.workload.model_training import ModelSteps
    from envaudit.workload.user_model import LoadedModel, UserModelRun
    from envaudit.workload.user_tflite import ConvertedUserModel


def record_model(
    path: Path,
    *,
    model: Path,
    inputs: Path,
    signature: str | None = None,
    detections: DetectionNames | None = None,
    force: bool = False,
    redact: bool = True,
    progress: Callable[[str], None] = lambda _m: None,
    note: Callable[[str], None] = lambda _m: None,
    tf32: Tf32Option = "default",
    train_inputs: Path | None = None,
    steps: int | None = None,
    mode: str | None = None,
) -> GoldenBundle:
    """Record ``model`` on ``inputs`` as a bundle at ``path`` (refused when one exists, unless
    ``force``), in ``mode``: a tflite mode converts it here; None (or the mode its own run uses)
    runs it as it loads. The fingerprint and the model path are redacted unless ``redact`` is
    False. ``note`` hears what the user should know (which layers a check will see, and why no
    more). ``tf32``: TensorFlow's TF32 switch, recorded as it was. ``train_inputs``: a file to
    train a compiled ``.keras`` model ``steps`` (default 3) steps on."""
    path, model, inputs = Path(path), Path(model), Path(inputs)
    check_writable(path, force)
    require_option(tf32)
    kind = model_kind(model)
    _require_options(kind, signature, mode, train_inputs)
    train = _train_inputs(kind, model, train_inputs, steps)
    images, arrays = _read_inputs(inputs)
    identity = model_digest(model)
    started = time.perf_counter()
    progress("loading the model")
    from envaudit.workload import tf32_switch

    with tf32_switch.switched(tf32):  # TensorFlow imported quietly by the model's run first
        run, seen, runtime = _run(model, kind, signature, images, arrays, identity,
                                  detections, progress, note, mode)
        probes, probe_devices = _probes_beside(run.mode, progress)
        trained = _train(model, train, steps, run.mode, progress) if train else None
        switch = tf32_switch.reading()
    computed = time.perf_counter()
    progress("capturing the fingerprint")
    fingerprint, shown = _fingerprint(model, redact)
    placed, device_names = _devices(run, trained, probe_devices)
    progress("writing the bundle")
    write_bundle(
        path,
        fingerprint=fingerprint,
        workload=_workload(replace(seen, path=shown), run, computed - started),
        images=images.names if images is not None else (),
        stages={run.mode: run.stages},
        probes=probes, inputs=_stored_inputs(images, arrays),
        devices=placed, device_names=device_names,
        force=force, redacted=redact,
        tf32_state=decide(tf32, *switch, placed.values(), fingerprint_capabilities(fingerprint)),
        **({"training": {run.mode: trained.arrays}, "training_settings": trained.settings}
           if trained else {}),
        runtimes={run.mode: runtime} if runtime else None,
    )
    return load_bundle(path)


def _stored_inputs(images: ImageFiles | None, arrays: dict[str, np.ndarray] | None
                   ) -> dict[str, np.ndarray]:
    """The inputs as the bundle keeps them: each image's encoded bytes, or the arrays."""
    if images is None:
        return dict(arrays or {})
    return {f"image.{i}": np.frombuffer(data, np.uint8) for i, data in enumerate(images.encoded)}


def _devices(run: UserModelRun, trained: ModelSteps | None, probes: dict[str, str]
             ) -> tuple[dict[str, str], dict[str, str]]:
    """Where each array was computed (``keyed_arrays`` keys), and which GPU each is."""
    from envaudit.workload.devices import names

    steps = {n: trained.device for n in trained.arrays} if trained else {}
    return keyed_devices({run.mode: {**run.devices, **steps}}, probes), names()


def _train_inputs(kind: ModelKind, model: Path, train_inputs: Path | None,
                  steps: int | None) -> TrainInputs | None:
    """The training file, read and checked before anything is loaded (None: no training)."""
    if train_inputs is None:
        if steps is not None:
            raise EnvauditError("--steps with --model trains your model: pass --train-inputs"
                                " DATA.npz too (its inputs and targets)")
        return None
    if kind != "keras":
        raise EnvauditError(f"--train-inputs needs a compiled .keras model; {model} is a"
                            " SavedModel, which keeps no optimizer or loss to train with")
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise EnvauditError(f"--steps with --train-inputs must be from 1 to {MAX_STEPS}")
    return read_train_inputs(Path(train_inputs))


def _train(model: Path, train: TrainInputs, steps: int | None, mode: str,
           progress: Callable[[str], None]) -> ModelSteps:
    """The model's own training steps, from its saved weights and optimizer state."""
    from envaudit.workload.model_training import train_model

    count = DEFAULT_STEPS if steps is None else steps
    progress(f"training the model {count} step{'s' if count != 1 else ''}")
    return train_model(model, train, count, mode)


def _probes_beside(mode: str, progress: Callable[[str], None]
                   ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The canary probes that run beside a model in ``mode`` (its precision witness), and where
    each ran."""
    progress("running the canary probes")
    from envaudit.workload.assets import load_probe_jpeg
    from envaudit.workload.probes import run_probes_on_devices

    return run_probes_on_devices(load_probe_jpeg(), beside=mode)


def _require_options(kind: ModelKind, signature: str | None, mode: str | None,
                     train_inputs: Path | None) -> None:
    """The signature and the mode, checked before anything is loaded."""
    _require_signature(kind, signature)
    _require_mode(mode, kind, train_inputs)


def _require_mode(mode: str | None, kind: ModelKind, train_inputs: Path | None) -> None:
    """A mode a model of your own can be recorded in: a tflite mode (not with training, which
    runs the model's own steps), or the mode its own run uses (a SavedModel's signature runs as a
    graph; a Keras model's is known once it ran)."""
    if mode is None or mode in CONVERTED_MODES and train_inputs is None:
        return
    if mode in CONVERTED_MODES:
        raise EnvauditError(f"--modes {mode} with --train-inputs: the training steps run in the"
                            " model's own mode; record them in a bundle without --modes")
    if mode not in NATIVE_MODES or (kind == "saved_model" and mode != "graph"):
        runs = "graph mode (its signature)" if kind == "saved_model" else "the mode Keras chooses"
        raise EnvauditError(f"--modes {mode}: a model of your own runs in {runs}, or converted"
                            f" in {', '.join(CONVERTED_MODES)}; record one of those")


def _require_signature(kind: ModelKind, signature: str | None) -> None:
    if kind == "keras" and signature is not None:
        raise EnvauditError("--signature names a SavedModel signature; a Keras model has none")
    if signature is not None and not PLAIN.fullmatch(signature):
        raise EnvauditError(f"--signature {signature!r} is not a plain signature name")


def _workload(info: ModelInfo, run: UserModelRun, total: float) -> dict[str, object]:
    """The manifest's ``workload``: the model, its inputs and how long recording took."""
    model_entry, inputs_entry = info.to_manifest()
    return {"id": WORKLOAD_ID, "version": WORKLOAD_VERSION, "model": model_entry,
            "inputs": inputs_entry,
            "timings": {"load_s": run.load_seconds, "run_s": run.run_seconds, "total_s": total}}


def _read_inputs(inputs: Path) -> tuple[ImageFiles | None, dict[str, np.ndarray] | None]:
    """A folder of images, or an .npz of named arrays (before anything is loaded)."""
    if inputs.is_dir():
        return read_images(inputs), None
    if inputs.suffix == ".npz" or inputs.is_file():
        return None, read_arrays(inputs)
    raise EnvauditError(f"inputs {inputs} do not exist; pass a folder of PNG/JPEG images or"
                        " an .npz of named arrays")


def _run(model: Path, kind: ModelKind, signature: str | None, images: ImageFiles | None,
         arrays: dict[str, np.ndarray] | None, identity: ModelIdentity,
         detections: DetectionNames | None, progress: Callable[[str], None],
         note: Callable[[str], None], mode: str | None
         ) -> tuple[UserModelRun, ModelInfo, dict[str, object] | None]:
    """The model loaded (converted, for a tflite ``mode``) and run once here, what the run
    showed of it (the model as a manifest will describe it, less its shown path) and what
    converted and ran it (None: it ran natively); outputs no check could compare, and detection
    outputs that do not fit, are refused."""
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.user_model import LoadedModel, RunsModel, image_input, run_model

    loaded = LoadedModel(model, kind, signature)
    converted: ConvertedUserModel | None = None
    if mode in CONVERTED_MODES:
        from envaudit.workload.user_tflite import ConvertedUserModel

        progress(f"converting the model for {mode}")
        converted = ConvertedUserModel(loaded, mode, identity.sha256)
        if converted.unmapped:
            note(f"{mode} mode records no output for layer(s) {', '.join(converted.unmapped)}:"
                 " the converted layer model does not return them by name")
    runner: RunsModel = converted or loaded
    progress("running the model")
    if images is not None:
        run = run_model(runner, images=(images.names, images.encoded))
        feed: str | None = image_input(loaded)[0]
    else:
        run = run_model(runner, arrays=arrays)
        feed = None
    if mode is not None and run.mode != mode:
        raise EnvauditError(f"--modes {mode}: this model runs in {run.mode} mode (Keras chose"
                            f" it); record it without --modes, or in"
                            f" {', '.join(CONVERTED_MODES)}")
    seen = ModelInfo(
        kind=kind, path="", sha256=identity.sha256, files=identity.files, size=identity.size,
        signature=loaded.signature, inputs=loaded.inputs, outputs=run.outputs,
        layers=run.layers, detections=None, mode=run.mode,
        input_kind="images" if images is not None else "arrays",
        image_files=images.names if images is not None else (), image_feed=feed,
        per_image=run.per_image)
    by_image = outputs_by_image(seen, run.stages)
    for outputs in by_image:
        _require_recordable(outputs)
    seen = replace(seen, detections=_detection_names(detections, by_image))
    if not run.layers and runner.layer_problem:
        note(f"the check will compare the model's outputs only: no layer output can be recorded"
             f" ({runner.layer_problem})")
    if converted is None:
        return run, seen, None
    note(f"conversion gap: {_conversion_gap(loaded, run, seen, images, arrays).words}")
    return run, seen, converted.record()


def _conversion_gap(loaded: LoadedModel, converted: UserModelRun, info: ModelInfo,
                    images: ImageFiles | None, arrays: dict[str, np.ndarray] | None
                    ) -> ConversionGap:
    """The converted model's run against the model run as it loads on the same inputs, as a
    check measures it (the same layers, detections matched image by image)."""
    from envaudit.pipeline.own_model import conversion_gap
    from envaudit.workload.user_model import run_model

    native = run_model(loaded, layers=converted.layers,
                       **({"images": (images.names, images.encoded)} if images is not None
                          else {"arrays": arrays}))
    return conversion_gap(info, native, converted, None)


def _fingerprint(model: Path, redact: bool) -> tuple[Fingerprint, str]:
    """This environment's fingerprint and the model's path as the manifest shows them: redacted
    by one policy unless ``redact`` is False."""
    from envaudit.fingerprint import capture

    fingerprint = capture()
    shown = str(model.absolute())
    if redact:
        from envaudit.fingerprint.redact import Redactor

        redactor = Redactor.for_trees(fingerprint)
        fingerprint = Fingerprint(redactor.tree(fingerprint.data))
        shown = redactor.text(shown)
    return fingerprint, shown


def _require_recordable(outputs: dict[str, np.ndarray]) -> None:
    """Outputs a later check can compare: plain names, numbers, finite values."""
    for name, array in outputs.items():
        if not PLAIN.fullmatch(name):
            raise EnvauditError(f"model output {name!r} has a name envaudit cannot store (use"
                                " letters, digits, . _ -); rename the output")
        if array.dtype.kind not in "biuf":
            raise EnvauditError(f"model output {name} is {array.dtype}, not numbers; envaudit"
                                " compares numeric outputs")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise EnvauditError(f"model output {name} holds NaN or infinity on these inputs;"
                                " a golden of it could not be compared")


def _detection_names(given: DetectionNames | None,
                     by_image: list[dict[str, np.ndarray]]) -> DetectionNames | None:
    """The outputs read as detections: those given, else the Object Detection API's names when
    the model has them, else none."""
    outputs = by_image[0]
    if given is None:
        if not all(n in outputs for n in (OD_API.boxes, OD_API.scores, OD_API.classes)):
            return None
        given = OD_API if OD_API.count in outputs else DetectionNames(
            OD_API.boxes, OD_API.scores, OD_API.classes)
    require_outputs(given.names(), tuple(outputs), "--detections")
    for each in by_image:
        problem = shape_problem(given, each)
        if problem:
            raise EnvauditError(f"the detection outputs cannot be compared: {problem}; name the"
                                " right outputs with --detections boxes=NAME,scores=NAME,"
                                "classes=NAME[,count=NAME]")
    return given
