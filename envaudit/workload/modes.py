"""The detector pipeline in each execution mode, and one stage replayed alone in a mode.

Graph and XLA stage outputs are the values those modes really compute: every stage tensor is an
output of the one traced function, not of a graph cut at that stage. Exposing an intermediate as
an output could in principle change what grappler or XLA fuse; ``tests/test_workload_modes.py``
checks that it does not here, by tracing the same function with only the final outputs and
requiring the same bits. In ``xla`` mode the image decoders and NMS run outside the compiled
function (``architecture.OUTSIDE_XLA`` says why); everything from resize to the decoded boxes is
one compiled cluster. A mode that cannot run (an XLA-less build) raises ``ModeUnavailable`` with
the reason, which the caller reports as "not run", never as identical.

How each mode is executed is a table of runners keyed by mode name (``_RUNNERS``); a mode added
to the registry (``envaudit.modes.register``) gets its runner with ``register_runner``. Nothing
else changes for a new mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import tensorflow as tf

from envaudit import modes
from envaudit.workload import architecture as arch
from envaudit.workload import devices
from envaudit.workload.detector import Detector, decode_images
from envaudit.workload.tf_runtime import silenced_stderr
from envaudit.workload.types import ModeUnavailable

__all__ = ["CORE", "ModeRunner", "ModeUnavailable", "guarded", "register_runner",
           "unregister_runner"]

T = TypeVar("T")
CORE = arch.CORE


class ModeRunner:
    """Runs the detector in each mode; traced functions are built once per runner."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._graph = tf.function(self._pipeline, autograph=False)
        self._xla = tf.function(self._core, jit_compile=True, autograph=False)
        # the converted modes': each conversion in an interpreter, by (mode, input shape), and
        # what each mode ran on (``tflite.ConvertedModel.record``), for the bundle
        self.converted: dict[tuple[str, tuple[int, ...]], object] = {}
        self.runtimes: dict[str, dict[str, object]] = {}

    def run(self, mode: str, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Every stage output of the whole pipeline in ``mode``, in pipeline order."""
        return self.run_on_devices(mode, encoded)[0]

    def run_on_devices(self, mode: str, encoded: Sequence[bytes]
                       ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """``run``, and the device each stage's output was computed on (``devices.short``)."""
        stages = _runner(mode).run(self, encoded)
        return ({name: stages[name].numpy() for name in arch.STAGES},
                {name: devices.of(stages[name]) for name in arch.STAGES})

    def replay(self, mode: str, name: str, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One stage alone in ``mode``, fed golden inputs (each mode's runner says how)."""
        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        return _runner(mode).replay(self, name, tensors).numpy()

    def _pipeline(self, encoded: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.unstack(encoded, num=encoded.shape[0])
        outputs = {"decode": tf.stack([tf.io.decode_image(data, channels=3,
                                                          expand_animations=False)
                                       for data in images])}
        for name in arch.STAGES[1:]:
            outputs[name] = self.detector.run_stage(name, outputs)
        return outputs

    def _core(self, decoded: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = {"decode": decoded}
        for name in CORE:
            outputs[name] = self.detector.run_stage(name, outputs)
        return {name: outputs[name] for name in CORE}


Stages = Mapping[str, tf.Tensor]
# How a mode runs the whole pipeline: the runner (its detector and traced functions) and the
# encoded images in, every stage's tensor out.
RunPipeline = Callable[[ModeRunner, Sequence[bytes]], Stages]
# How a mode runs one stage alone: the runner, the stage's name and its golden inputs.
ReplayStage = Callable[[ModeRunner, str, Stages], tf.Tensor]


@dataclass(frozen=True)
class Runner:
    """How one execution mode is executed (its record, ``envaudit.modes``, says what it is)."""

    run: RunPipeline
    replay: ReplayStage


def _eager_run(runner: ModeRunner, encoded: Sequence[bytes]) -> Stages:
    return runner.detector.run_tensors(encoded)


def _eager_replay(runner: ModeRunner, name: str, tensors: Stages) -> tf.Tensor:
    return runner.detector.run_stage(name, tensors)


def _graph_run(runner: ModeRunner, encoded: Sequence[bytes]) -> Stages:
    outputs = guarded(modes.GRAPH, lambda: runner._graph(tf.constant(list(encoded))))
    return {name: outputs[name] for name in arch.STAGES}


def _traced_replay(mode: str, jit_compile: bool) -> ReplayStage:
    """A stage traced alone (and compiled alone, with ``jit_compile``)."""
    def replay(runner: ModeRunner, name: str, tensors: Stages) -> tf.Tensor:
        stage = tf.function(lambda t: runner.detector.run_stage(name, t), autograph=False,
                            jit_compile=jit_compile)
        return guarded(mode, lambda: stage(tensors))
    return replay


def _xla_run(runner: ModeRunner, encoded: Sequence[bytes]) -> Stages:
    decoded = decode_images(encoded)
    core = guarded(modes.XLA, lambda: runner._xla(decoded))
    stages = {"decode": decoded, **core}
    stages["nms"] = runner.detector.run_stage("nms", stages)
    return stages


def _xla_replay(runner: ModeRunner, name: str, tensors: Stages) -> tf.Tensor:
    # decode and nms run where the xla pipeline runs them: outside the compiled cluster
    if name in arch.OUTSIDE_XLA:
        return _eager_replay(runner, name, tensors)
    return _traced_replay(modes.XLA, jit_compile=True)(runner, name, tensors)


def _tflite(mode: str) -> Runner:
    """A tflite mode (``canary_tflite``): the core converted here and run by LiteRT."""
    def run(runner: ModeRunner, encoded: Sequence[bytes]) -> Stages:
        from envaudit.workload import canary_tflite

        return canary_tflite.run(runner, mode, encoded)

    def replay(runner: ModeRunner, name: str, tensors: Stages) -> tf.Tensor:
        from envaudit.workload import canary_tflite

        return canary_tflite.replay(runner, mode, name, tensors)
    return Runner(run, replay)


def _onnx() -> Runner:
    """The onnx mode (``onnx_mode``): the core converted with tf2onnx, run by ONNX Runtime."""
    def run(runner: ModeRunner, encoded: Sequence[bytes]) -> Stages:
        from envaudit.workload import onnx_mode

        return onnx_mode.run(runner, encoded)

    def replay(runner: ModeRunner, name: str, tensors: Stages) -> tf.Tensor:
        from envaudit.workload import onnx_mode

        return onnx_mode.replay(runner, name, tensors)
    return Runner(run, replay)


_RUNNERS: dict[str, Runner] = {
    modes.EAGER: Runner(_eager_run, _eager_replay),
    modes.GRAPH: Runner(_graph_run, _traced_replay(modes.GRAPH, jit_compile=False)),
    modes.XLA: Runner(_xla_run, _xla_replay),
    **{mode: _tflite(mode) for mode in (modes.TFLITE, modes.TFLITE_FLOAT16,
                                        modes.TFLITE_DYNAMIC_RANGE)},
    modes.ONNX: _onnx(),
}
_BUILT_IN = tuple(_RUNNERS)


def register_runner(name: str, run: RunPipeline, replay: ReplayStage = _eager_replay) -> None:
    """Execute mode ``name`` (registered in ``envaudit.modes``) with ``run``; a stage replayed
    alone runs op by op unless ``replay`` says otherwise. A name that has a runner is refused."""
    if name in _RUNNERS:
        raise ValueError(f"mode {name!r} already has a runner")
    _RUNNERS[name] = Runner(run, replay)


def unregister_runner(name: str) -> None:
    """Remove a runner that ``register_runner`` added (a test's); the built-ins stay."""
    if name in _BUILT_IN:
        raise ValueError(f"{name!r} is a built-in mode")
    _RUNNERS.pop(name, None)


def _runner(mode: str) -> Runner:
    try:
        return _RUNNERS[mode]
    except KeyError:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(_RUNNERS)}"
                         ) from None


def guarded(mode: str, call: Callable[[], T]) -> T:
    """``call()`` with TensorFlow's compile-time logging kept off the user's stderr, and a
    failure to trace or compile the mode turned into ``ModeUnavailable``."""
    try:
        with silenced_stderr():
            return call()
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError, tf.errors.InternalError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModeUnavailable(f"{mode} mode cannot run here: {first}") from None
