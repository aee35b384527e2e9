"""The canary detector in the onnx mode: its core converted with tf2onnx, run by ONNX Runtime.

Optional: ``pip install 'envaudit[onnx]'`` installs tf2onnx and onnxruntime. Without them, or
where tf2onnx cannot convert with the installed TensorFlow (it supports TensorFlow releases up to
its own), the mode is not run and the reason is said; never identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from envaudit.workload.detector import STAGE_INPUTS, decode_images
from envaudit.workload.modes import CORE, ModeRunner, ModeUnavailable

INSTALL = "pip install 'envaudit[onnx]'"


def _libraries() -> tuple[Any, Any]:
    try:
        import onnxruntime  # type: ignore[import-not-found]
        import tf2onnx  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 -- missing, or failing to import with this TF
        missing = getattr(exc, "name", None)
        why = (f"{missing} is not installed" if isinstance(exc, ImportError) and missing
               else f"tf2onnx or onnxruntime cannot be imported here ({type(exc).__name__}:"
               f" {str(exc).splitlines()[0][:200] if str(exc) else ''})")
        raise ModeUnavailable(f"onnx mode needs tf2onnx and onnxruntime: {why} ({INSTALL})"
                              ) from None
    return tf2onnx, onnxruntime


def run(runner: ModeRunner, encoded: Sequence[bytes]) -> dict[str, tf.Tensor]:
    tf2onnx, onnxruntime = _libraries()
    decoded = decode_images(encoded)
    traced = tf.function(lambda d: tuple(runner._core(d)[n] for n in CORE), autograph=False)
    session = _session(tf2onnx, onnxruntime, traced,
                       [tf.TensorSpec(decoded.shape, tf.uint8, name="decoded")])
    outputs = session.run(None, {session.get_inputs()[0].name: decoded.numpy()})
    stages: dict[str, tf.Tensor] = {"decode": decoded}
    stages.update({name: tf.constant(value) for name, value in zip(CORE, outputs)})
    stages["nms"] = runner.detector.run_stage("nms", stages)
    runner.runtimes["onnx"] = {"converter": f"tf2onnx {tf2onnx.__version__}",
                               "interpreter": f"onnxruntime {onnxruntime.__version__}",
                               "providers": ",".join(session.get_providers())}
    return stages


def replay(runner: ModeRunner, name: str, tensors: Mapping[str, tf.Tensor]) -> tf.Tensor:
    if name not in CORE:
        return runner.detector.run_stage(name, tensors)
    tf2onnx, onnxruntime = _libraries()
    names = STAGE_INPUTS[name]
    traced = tf.function(lambda *xs: (runner.detector.run_stage(name, dict(zip(names, xs))),),
                         autograph=False)
    specs = [tf.TensorSpec(tensors[k].shape, tensors[k].dtype, name=f"in{i}")
             for i, k in enumerate(names)]
    session = _session(tf2onnx, onnxruntime, traced, specs)
    feeds = {i.name: np.asarray(tensors[k]) for i, k in zip(session.get_inputs(), names)}
    return tf.constant(session.run(None, feeds)[0])


def _session(tf2onnx: Any, onnxruntime: Any, traced: Any, specs: list[tf.TensorSpec]) -> Any:
    try:
        proto, _ = tf2onnx.convert.from_function(traced, input_signature=specs, opset=17)
        return onnxruntime.InferenceSession(proto.SerializeToString(),
                                            providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 -- tf2onnx raises many kinds; all say why
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModeUnavailable(f"onnx mode: tf2onnx cannot convert the canary with TensorFlow"
                              f" {tf.__version__} ({type(exc).__name__}: {first})") from None
