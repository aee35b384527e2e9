"""The canary detector in the tflite modes: its core converted to TFLite, run by LiteRT.

What is converted is what the xla mode compiles (``modes.CORE``: resize to decoded boxes), as one
function that returns every stage's output, so each stage of the converted model is a real output
of the model a device would run, read by position. Decoding and NMS run in TensorFlow around it,
as a deployed detector's host code does (``architecture.OUTSIDE_XLA`` says why they stay out of a
compiled cluster; LiteRT's NMS ops are other ops than the canary's, so they would not compute the
canary's stage). A stage replayed alone (localization) is that stage alone, converted with the same
optimization. Conversions are cached (``tflite.convert``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from envaudit.workload import architecture as arch
from envaudit.workload.architecture import CORE
from envaudit.workload.detector import STAGE_INPUTS, decode_images
from envaudit.workload.tflite import OPTIMIZATION, ConversionFailed, ConvertedModel, convert
from envaudit.workload.types import ModeUnavailable

if TYPE_CHECKING:  # the runner's own module imports this one when a tflite mode runs
    from envaudit.workload.modes import ModeRunner


def run(runner: ModeRunner, mode: str, encoded: Sequence[bytes]) -> dict[str, tf.Tensor]:
    """Every stage of the pipeline with the core converted for ``mode``; the runtime's record
    is kept on ``runner.runtimes[mode]``."""
    decoded = decode_images(encoded)
    shape = tuple(decoded.shape)
    model = runner.converted.get((mode, shape))
    if not isinstance(model, ConvertedModel):
        traced = tf.function(lambda d: tuple(runner._core(d)[n] for n in CORE), autograph=False)
        model = _converted(mode, f"core {shape}", runner, lambda: _converter(
            traced, traced.get_concrete_function(tf.TensorSpec(shape, tf.uint8))))
        runner.converted[(mode, shape)] = model
    outputs = model.run([decoded.numpy()])
    if len(outputs) != len(CORE) or any(o.shape[:1] != shape[:1] for o in outputs):
        raise ModeUnavailable(f"{mode} mode: the converted model's outputs"
                                 f" ({[o.shape for o in outputs]}) are not the canary's stages")
    stages: dict[str, tf.Tensor] = {"decode": decoded}
    with tf.device("/CPU:0"):  # LiteRT computed them on the CPU, as the device record must say
        stages.update({name: tf.constant(value) for name, value in zip(CORE, outputs)})
    stages["nms"] = runner.detector.run_stage("nms", stages)
    runner.runtimes[mode] = model.record()
    return stages


def replay(runner: ModeRunner, mode: str, name: str, tensors: Mapping[str, tf.Tensor]
           ) -> tf.Tensor:
    """Stage ``name`` alone, converted for ``mode``, on ``tensors`` (decode and NMS run in
    TensorFlow, as in the pipeline)."""
    if name not in CORE:
        return runner.detector.run_stage(name, tensors)
    names = STAGE_INPUTS[name]
    specs = [tf.TensorSpec(tensors[k].shape, tensors[k].dtype) for k in names]
    traced = tf.function(lambda *xs: (runner.detector.run_stage(name, dict(zip(names, xs))),),
                         autograph=False)
    shapes = [tuple(s.shape) for s in specs]
    model = _converted(mode, f"stage {name} {shapes}", runner,
                       lambda: _converter(traced, traced.get_concrete_function(*specs)))
    with tf.device("/CPU:0"):
        return tf.constant(model.run([np.asarray(tensors[k]) for k in names])[0])


def _converter(traced: Any, concrete: Any) -> Any:
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], traced)


def _converted(mode: str, part: str, runner: ModeRunner, make: Callable[[], Any]
               ) -> ConvertedModel:
    identity = f"{arch.WORKLOAD_ID} {arch.WORKLOAD_VERSION} {weights_digest(runner)} {part}"
    try:
        return ConvertedModel(convert(make, identity, OPTIMIZATION[mode]))
    except ConversionFailed as exc:
        raise ModeUnavailable(f"{mode} mode cannot convert the canary here: {exc}") from None


def weights_digest(runner: ModeRunner) -> str:
    """The canary's weights as the cache knows them (name, dtype, shape and bytes)."""
    h = hashlib.sha256()
    for key in sorted(runner.detector.w):
        value = np.asarray(runner.detector.w[key])
        h.update(f"{key} {value.dtype} {value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()
