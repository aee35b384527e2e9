"""The canary detector in the onnx mode: its core converted with tf2onnx, run by ONNX Runtime.

Optional: ``pip install 'envaudit[onnx]'`` installs tf2onnx and onnxruntime (``onnxruntime-gpu``
in its place runs on a GPU). Without them, or where tf2onnx cannot convert with the installed
TensorFlow, or ONNX Runtime cannot load what it wrote, the mode is not run and the reason names
the versions and what failed (``ModeUnavailable``); never identical, never a traceback.

What is converted is what the tflite modes convert (``modes.CORE``: resize to decoded boxes) as
one function returning every stage, read by position; each output's shape and dtype are checked
against the traced TensorFlow function's, so a converter that reorders or drops outputs is
refused rather than compared as the wrong stage. Decoding and NMS run in TensorFlow around it, as
a deployed detector's host code does. A stage replayed alone is that stage alone, converted.

Constraints for the next editor:
- The weights are constants *inside* the traced function (a ``Detector`` built while tracing).
  tf2onnx's ``from_function`` lists every captured tensor of a concrete function as a graph
  input, and TensorFlow captures the canary's eager weights rather than inlining them: the model
  it writes then asks for 46 weight inputs (tf2onnx 1.17.0, TensorFlow 2.21).
- tf2onnx names and orders the nodes it writes differently from one process to the next (it
  folds identical constants and keeps whichever it met first), so the model's bytes are no
  identity. The recorded digest (``graph_digest``) is over what the graph computes -- operators,
  attributes, weights, how they are wired, in output order -- and is the same for the same
  conversion in any process; the bytes are cached (``$XDG_CACHE_HOME/envaudit/onnx``) by the
  model's identity, the opset and the versions of tf2onnx, onnx and TensorFlow.
- Everything tf2onnx and ONNX Runtime do runs under ``silenced_stderr`` (they log freely), and a
  failure is caught *inside* it and raised after: raised inside, the silenced chatter would be
  replayed onto the user's terminal.
- Execution providers are chosen from ``get_available_providers()``: CUDA's first where present,
  then the CPU's; what the session really registered is recorded (a CUDA provider that cannot load
  falls back to the CPU, and the record says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import tensorflow as tf

from envaudit.modes import ONNX
from envaudit.workload import architecture as arch
from envaudit.workload import conversion_cache
from envaudit.workload.architecture import CORE
from envaudit.workload.canary_tflite import weights_digest
from envaudit.workload.detector import STAGE_INPUTS, Detector, decode_images
from envaudit.workload.tf_runtime import silenced_stderr
from envaudit.workload.types import ModeUnavailable

if TYPE_CHECKING:  # the runner's own module imports this one when the onnx mode runs
    from envaudit.workload.modes import ModeRunner

T = TypeVar("T")
INSTALL = "pip install 'envaudit[onnx]'"
# Fixed, not tf2onnx's default, so a tf2onnx upgrade that changes its default does not change
# the model unseen; every onnxruntime the extra accepts (>= 1.19) runs opset 17.
OPSET = 17
# Bumped when how envaudit drives tf2onnx changes, so older cached models are not used.
RECIPE = 1
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
MAX_MODEL_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Libraries:
    """tf2onnx, onnx (which tf2onnx writes with) and onnxruntime, imported."""

    tf2onnx: Any
    onnxruntime: Any
    onnx: Any

    @property
    def converter(self) -> str:
        return f"tf2onnx {self.tf2onnx.__version__}, opset {OPSET}"

    @property
    def cache_version(self) -> str:
        return (f"{self.converter}, onnx {self.onnx.__version__}, tensorflow {tf.__version__}"
                f" ({tf.version.GIT_VERSION})")


@dataclass(frozen=True)
class Conversion:
    """One converted model and how it came to be."""

    model: bytes  # the ONNX model as tf2onnx serialized it
    digest: str  # ``graph_digest``: the same for the same conversion in any process
    seconds: float  # the conversion's time here (0.0 when it came from the cache)
    cached: bool


class ConvertedModel:
    """A converted model in an ONNX Runtime session: fed by the names its input specs gave
    (tf2onnx keeps them), read by position."""

    def __init__(self, libraries: Libraries, conversion: Conversion,
                 inputs: Sequence[tf.TensorSpec], expected: Sequence[tf.TensorSpec]) -> None:
        self.libraries = libraries
        self.conversion = conversion
        self.inputs = tuple(spec.name for spec in inputs)
        self.expected = tuple(expected)
        self.session = _quietly("ONNX Runtime", libraries, lambda: _session(libraries, conversion))
        self.providers = tuple(self.session.get_providers())

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs in the converted function's order, each checked against what the traced
        TensorFlow function returns (``ModeUnavailable`` if one is not)."""
        outputs = _quietly("ONNX Runtime", self.libraries, lambda: self.session.run(
            None, {n: np.asarray(v) for n, v in zip(self.inputs, feeds)}))
        got = [(tuple(o.shape), o.dtype.name) for o in outputs]
        want = [(tuple(s.shape), np.dtype(s.dtype.as_numpy_dtype).name) for s in self.expected]
        if got != want:
            raise ModeUnavailable(f"onnx mode: the converted model's outputs {got} are not the"
                                  f" canary's {want}")
        return outputs

    @property
    def device(self) -> str:
        """Where TensorFlow should say the outputs were computed (``devices.of`` reads it)."""
        return "/GPU:0" if self.providers[0] == "CUDAExecutionProvider" else "/CPU:0"

    def record(self) -> dict[str, Any]:
        """What a bundle's manifest keeps of this run (``envaudit/runtimes.py`` reads it)."""
        return {"converter": self.libraries.converter,
                "interpreter": f"onnxruntime {self.libraries.onnxruntime.__version__}",
                "providers": ",".join(self.providers),
                "graph_sha256": self.conversion.digest,
                "flatbuffer_bytes": len(self.conversion.model),
                "conversion_s": round(self.conversion.seconds, 4),
                "cached": self.conversion.cached}


def run(runner: ModeRunner, encoded: Sequence[bytes]) -> dict[str, tf.Tensor]:
    """Every stage of the pipeline with the core converted and run by ONNX Runtime; the
    runtime's record is kept on ``runner.runtimes["onnx"]``."""
    decoded = decode_images(encoded)
    shape = tuple(decoded.shape)
    model = runner.converted.get((ONNX, shape))
    if not isinstance(model, ConvertedModel):
        model = _converted(runner, f"core {shape}", _core_function(runner),
                           [tf.TensorSpec(shape, tf.uint8, name="decoded")])
        runner.converted[(ONNX, shape)] = model
    outputs = model.run([decoded.numpy()])
    stages: dict[str, tf.Tensor] = {"decode": decoded}
    with tf.device(model.device):
        stages.update({name: tf.constant(value) for name, value in zip(CORE, outputs)})
    stages["nms"] = runner.detector.run_stage("nms", stages)
    runner.runtimes[ONNX] = model.record()
    return stages


def replay(runner: ModeRunner, name: str, tensors: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Stage ``name`` alone, converted, on ``tensors`` (decode and NMS run in TensorFlow, as in
    the pipeline)."""
    if name not in CORE:
        return runner.detector.run_stage(name, tensors)
    names = STAGE_INPUTS[name]
    specs = [tf.TensorSpec(tensors[k].shape, tensors[k].dtype, name=f"in{i}")
             for i, k in enumerate(names)]
    model = _converted(runner, f"stage {name} {[tuple(s.shape) for s in specs]}",
                       _stage_function(runner, name), specs)
    with tf.device(model.device):
        return tf.constant(model.run([np.asarray(tensors[k]) for k in names])[0])


def _core_function(runner: ModeRunner) -> Any:
    weights = _weights(runner)

    def core(decoded: tf.Tensor) -> tuple[tf.Tensor, ...]:
        inlined, outputs = Detector(weights), {"decode": decoded}
        for name in CORE:
            outputs[name] = inlined.run_stage(name, outputs)
        return tuple(outputs[name] for name in CORE)
    return tf.function(core, autograph=False)


def _stage_function(runner: ModeRunner, name: str) -> Any:
    weights, names = _weights(runner), STAGE_INPUTS[name]
    return tf.function(lambda *xs: (Detector(weights).run_stage(name, dict(zip(names, xs))),),
                       autograph=False)


def _weights(runner: ModeRunner) -> dict[str, np.ndarray]:
    """The canary's weights as NumPy arrays: built into a ``Detector`` while tracing, they are
    constants of the graph (see the module's constraints)."""
    return {key: value.numpy() for key, value in runner.detector.w.items()}


def _converted(runner: ModeRunner, part: str, function: Any, specs: list[tf.TensorSpec]
               ) -> ConvertedModel:
    libraries = _libraries()
    identity = f"{arch.WORKLOAD_ID} {arch.WORKLOAD_VERSION} {weights_digest(runner)} {part}"
    expected = _quietly("tf2onnx", libraries, lambda: [
        tf.TensorSpec(t.shape, t.dtype) for t in function.get_concrete_function(*specs).outputs])
    conversion = convert(libraries, function, specs, identity)
    return ConvertedModel(libraries, conversion, specs, expected)


def convert(libraries: Libraries, function: Any, specs: list[tf.TensorSpec], identity: str
            ) -> Conversion:
    """The tf.function ``function`` converted on ``specs`` (cached by ``identity`` -- which
    must name the model's weights, the part converted and its input shapes -- the opset and the
    versions of tf2onnx, onnx and TensorFlow). Raises ``ModeUnavailable``."""
    key = hashlib.sha256(json.dumps([RECIPE, identity, libraries.cache_version]).encode()
                         ).hexdigest()
    found = conversion_cache.load("onnx", key, "onnx", MAX_MODEL_BYTES)
    if found is not None:
        return Conversion(found[0], _digest(libraries, found[0]), 0.0, True)
    started = time.perf_counter()
    proto, _ = _quietly("tf2onnx", libraries, lambda: libraries.tf2onnx.convert.from_function(
        function, input_signature=specs, opset=OPSET))
    model = proto.SerializeToString()
    conversion = Conversion(model, _digest(libraries, model), time.perf_counter() - started,
                            False)
    conversion_cache.store("onnx", key, "onnx", model, {})
    return conversion


def _digest(libraries: Libraries, model: bytes) -> str:
    return _quietly("tf2onnx", libraries, lambda: graph_digest(libraries, model))


def graph_digest(libraries: Libraries, model: bytes) -> str:
    """SHA-256 of what the model computes: each value named by what computes it (a graph input
    by its position, a weight by its bytes, a node's output by its operator, attributes and
    inputs), then the opsets and the outputs in order. Node names and node order, which tf2onnx
    varies between processes, do not enter it."""
    graph, opsets = _parsed(libraries, model)
    names = {value.name: f"input {i}" for i, value in enumerate(graph.input)}
    names[""] = ""  # an optional input left out
    for tensor in graph.initializer:
        names[tensor.name] = _sha(_without_name(tensor))
    for node in graph.node:  # ONNX requires topological order
        inputs = [names[i] for i in node.input]
        attributes = sorted(a.SerializeToString(deterministic=True) for a in node.attribute)
        computed = _sha(json.dumps([node.domain, node.op_type, inputs,
                                    [a.hex() for a in attributes]]).encode())
        names.update({out: f"{computed}:{k}" for k, out in enumerate(node.output)})
    return _sha(json.dumps([opsets, [names[o.name] for o in graph.output]]).encode())


def _parsed(libraries: Libraries, model: bytes) -> tuple[Any, list[str]]:
    proto = libraries.onnx.load_from_string(model)
    return proto.graph, sorted(f"{o.domain}:{o.version}" for o in proto.opset_import)


def _without_name(tensor: Any) -> bytes:
    copy = type(tensor)()
    copy.CopyFrom(tensor)
    copy.name = ""
    return copy.SerializeToString(deterministic=True)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _session(libraries: Libraries, conversion: Conversion) -> Any:
    ort = libraries.onnxruntime
    available = set(ort.get_available_providers())
    providers = [p for p in PREFERRED_PROVIDERS if p in available]
    if not providers:
        raise RuntimeError(f"none of its execution providers ({', '.join(sorted(available))})"
                           f" is one envaudit runs ({', '.join(PREFERRED_PROVIDERS)})")
    return ort.InferenceSession(conversion.model, providers=providers)


def _libraries() -> Libraries:
    """tf2onnx, onnx and onnxruntime, imported quietly; ``ModeUnavailable`` says which one is
    missing or why one fails to import."""
    imported: dict[str, Any] = {}
    problems = []
    for name in ("tf2onnx", "onnx", "onnxruntime"):
        module, exc = _attempt(lambda n=name: __import__(n))
        if exc is None:
            imported[name] = module
        elif isinstance(exc, ImportError) and exc.name == name:
            problems.append(f"{name} is not installed")
        else:
            problems.append(f"{name} cannot be imported here ({_first_line(exc)})")
    if problems:
        raise ModeUnavailable(f"onnx mode needs tf2onnx and onnxruntime: {'; '.join(problems)}"
                              f" ({INSTALL})")
    return Libraries(imported["tf2onnx"], imported["onnxruntime"], imported["onnx"])


def _quietly(who: str, libraries: Libraries, call: Callable[[], T]) -> T:
    """``call()`` with stderr silenced; a failure is ``ModeUnavailable`` naming ``who`` failed
    and the versions (raised after stderr is back, so nothing silenced is replayed)."""
    result, exc = _attempt(call)
    if exc is None:
        return result  # type: ignore[return-value]
    action = ("cannot convert the canary" if who == "tf2onnx"
              else "cannot run the canary as tf2onnx converted it")
    raise ModeUnavailable(
        f"onnx mode: {who} {action} (tf2onnx {libraries.tf2onnx.__version__}, onnxruntime"
        f" {libraries.onnxruntime.__version__}, TensorFlow {tf.__version__}):"
        f" {_first_line(exc)}")


def _attempt(call: Callable[[], T]) -> tuple[T | None, BaseException | None]:
    """``call()``'s result, or what it raised, with stderr and warnings silenced throughout and
    the process environment as it was before: tf2onnx sets ``TF_CPP_MIN_LOG_LEVEL`` when its
    converter is imported, which the recording's fingerprint would otherwise show as the user's."""
    before = dict(os.environ)
    with silenced_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call(), None
        except Exception as exc:  # noqa: BLE001 -- tf2onnx and onnxruntime raise many kinds
            return None, exc
        finally:
            sys.stderr.flush()
            for name in set(os.environ) - set(before):
                del os.environ[name]
            os.environ.update({k: v for k, v in before.items() if os.environ.get(k) != v})


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
