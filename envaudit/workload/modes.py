"""The detector pipeline in each execution mode, and one stage replayed alone in a mode.

Graph and XLA stage outputs are the values those modes really compute: every stage tensor is an
output of the one traced function, not of a graph cut at that stage. Exposing an intermediate as
an output could in principle change what grappler or XLA fuse; ``tests/test_workload_modes.py``
checks that it does not here, by tracing the same function with only the final outputs and
requiring the same bits. In ``xla`` mode the image decoders and NMS run outside the compiled
function (``architecture.OUTSIDE_XLA`` says why); everything from resize to the decoded boxes is
one compiled cluster. A mode that cannot run (an XLA-less build) raises ``ModeUnavailable`` with
the reason, which the caller reports as "not run", never as identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from envaudit.workload import architecture as arch
from envaudit.workload import devices
from envaudit.workload.detector import Detector, decode_images
from envaudit.workload.tf_runtime import silenced_stderr

CORE = arch.STAGES[1:-1]  # resize .. boxes: what the xla mode compiles


class ModeUnavailable(Exception):
    """This TensorFlow cannot run a mode (the message says why)."""


class ModeRunner:
    """Runs the detector in each mode; traced functions are built once per runner."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._graph = tf.function(self._pipeline, autograph=False)
        self._xla = tf.function(self._core, jit_compile=True, autograph=False)

    def run(self, mode: str, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Every stage output of the whole pipeline in ``mode``, in pipeline order."""
        return self.run_on_devices(mode, encoded)[0]

    def run_on_devices(self, mode: str, encoded: Sequence[bytes]
                       ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """``run``, and the device each stage's output was computed on (``devices.short``)."""
        if mode == "eager":
            stages = self.detector.run_tensors(encoded)
        elif mode == "graph":
            outputs = _guarded(mode, lambda: self._graph(tf.constant(list(encoded))))
            stages = {name: outputs[name] for name in arch.STAGES}
        elif mode == "xla":
            decoded = decode_images(encoded)
            core = _guarded(mode, lambda: self._xla(decoded))
            stages = {"decode": decoded, **core}
            stages["nms"] = self.detector.run_stage("nms", stages)
        else:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(arch.MODES)}")
        return ({name: stages[name].numpy() for name in arch.STAGES},
                {name: devices.of(stages[name]) for name in arch.STAGES})

    def replay(self, mode: str, name: str, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One stage alone in ``mode``, fed golden inputs: in graph mode traced alone, in xla
        mode compiled alone (decode and nms run where the xla pipeline runs them: outside)."""
        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        if mode == "eager" or (mode == "xla" and name in arch.OUTSIDE_XLA):
            return self.detector.run_stage(name, tensors).numpy()
        stage = tf.function(lambda t: self.detector.run_stage(name, t), autograph=False,
                            jit_compile=mode == "xla")
        return _guarded(mode, lambda: stage(tensors)).numpy()

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


def _guarded(mode: str, call: Callable[[], object]):
    """``call()`` with TensorFlow's compile-time logging kept off the user's stderr, and a
    failure to trace or compile the mode turned into ``ModeUnavailable``."""
    try:
        with silenced_stderr():
            return call()
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError, tf.errors.InternalError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModeUnavailable(f"{mode} mode cannot run here: {first}") from None
