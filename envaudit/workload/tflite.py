"""A model converted with TensorFlow's TFLite converter and run by LiteRT's interpreter.

This is what a detector shipped as TFLite computes: the model is converted here, in the
environment under check (the converter is part of TensorFlow, so a TensorFlow upgrade is a
converter upgrade), and run by the interpreter the user deploys with: ``ai_edge_litert``'s when it
is installed and the model needs no TensorFlow ops, else TensorFlow's own ``tf.lite.Interpreter``
(the same LiteRT runtime, deprecated in TensorFlow's package; it also runs the select-TF ops a
converted Object Detection API model may need). The kernels and thread count come from
``tflite_settings`` (XNNPACK by default).

Conversion first tries LiteRT's built-in ops only and, where the model needs TensorFlow ops,
converts again with the select-TF ops, as the Object Detection API's own TFLite export does; the
result says which. ``--tflite-optimize`` adds the optimizations users apply (float16 weights,
dynamic-range quantization). Each conversion is cached by the model's identity (its digest, what
part of it is converted and on which input shapes), the optimization and the converter's version
(``conversion_cache``, in ``$XDG_CACHE_HOME/envaudit/tflite``): the same converter writes the
same flatbuffer byte for byte (checked across processes), so the cache saves the conversion's
seconds and changes no number; a converter upgrade converts again. The flatbuffer's SHA-256 is
recorded with every run, so a converter that writes another model is seen as such.

Outputs are read by position: a converted concrete function has no signature, and the converter
names its outputs ``Identity_N``; the callers convert functions that return a tuple in a known
order, and every output's shape is checked against what the caller expects.

Imports TensorFlow: only ever imported by the workload.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from envaudit import modes as registry
from envaudit.tflite_settings import InterpreterSettings, from_environment
from envaudit.workload import conversion_cache
from envaudit.workload.tf_runtime import silenced_stderr

# The optimization each tflite mode converts with (None: a plain float32 conversion).
OPTIMIZATION: dict[str, str | None] = {
    registry.TFLITE: None, **{mode: name for name, mode in registry.TFLITE_OPTIMIZATIONS.items()}}
# Bumped when how envaudit drives the converter changes, so older cached flatbuffers are not used.
RECIPE = 1
MAX_FLATBUFFER_BYTES = 512 * 2**20


class ConversionFailed(Exception):
    """The converter refused the model (the message says what it said)."""


@dataclass(frozen=True)
class Conversion:
    """One converted model: its flatbuffer and how it came to be."""

    flatbuffer: bytes
    optimization: str | None
    select_tf_ops: bool  # it needs TensorFlow ops (the Flex delegate) beside LiteRT's own
    seconds: float  # the conversion's time here (0.0 when it came from the cache)
    cached: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.flatbuffer).hexdigest()


def converter_version() -> str:
    return f"tensorflow {tf.__version__} ({tf.version.GIT_VERSION})"


def convert(make: Callable[[], Any], identity: str, optimization: str | None) -> Conversion:
    """The model ``make()`` returns a converter for, converted with ``optimization`` (cached by
    ``identity`` -- which must name the model's bytes, the part converted and its input shapes --
    the optimization and the converter's version). Raises ``ConversionFailed``."""
    key = hashlib.sha256(json.dumps([RECIPE, identity, optimization, converter_version()])
                         .encode()).hexdigest()
    found = _cached(key)
    if found is not None:
        flatbuffer, select = found
        return Conversion(flatbuffer, optimization, select, 0.0, True)
    started = time.perf_counter()
    try:
        flatbuffer, select = _convert(make, optimization, select_tf_ops=False), False
    except ConversionFailed:
        flatbuffer, select = _convert(make, optimization, select_tf_ops=True), True
    conversion = Conversion(flatbuffer, optimization, select, time.perf_counter() - started,
                            False)
    _store(key, conversion)
    return conversion


def _convert(make: Callable[[], Any], optimization: str | None, select_tf_ops: bool) -> bytes:
    converter = make()
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.target_spec.supported_ops = ops + ([tf.lite.OpsSet.SELECT_TF_OPS]
                                                 if select_tf_ops else [])
    if optimization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if optimization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # The failure is caught inside the silence: ``silenced_stderr`` replays what the converter
    # logged when its body raises, and a first try without the select-TF ops is expected to fail
    # for a model that needs them. Keras's export prints where it saved the model on stdout.
    with silenced_stderr(), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return bytes(converter.convert())
        except Exception as exc:  # noqa: BLE001 -- the converter raises many kinds; all say why
            failure = _first_line(exc)
    raise ConversionFailed(failure)


def _cached(key: str) -> tuple[bytes, bool] | None:
    """A cached flatbuffer and whether it needs TensorFlow ops (``conversion_cache``)."""
    found = conversion_cache.load("tflite", key, "tflite", MAX_FLATBUFFER_BYTES)
    if found is None or not isinstance(found[1].get("select_tf_ops"), bool):
        return None
    return found[0], found[1]["select_tf_ops"]


def _store(key: str, conversion: Conversion) -> None:
    conversion_cache.store("tflite", key, "tflite", conversion.flatbuffer, {
        "select_tf_ops": conversion.select_tf_ops, "converter": converter_version(),
        "optimization": conversion.optimization})


@dataclass(frozen=True)
class Runtime:
    """The interpreter a converted model ran in, for the bundle's ``runtimes`` record."""

    interpreter: str  # "ai-edge-litert 1.4.0", "tensorflow 2.21.0 (tf.lite.Interpreter)"
    settings: InterpreterSettings


class ConvertedModel:
    """A converted model in an interpreter, fed and read by position."""

    def __init__(self, conversion: Conversion, settings: InterpreterSettings | None = None
                 ) -> None:
        self.conversion = conversion
        settings = settings or from_environment()
        self.interpreter, name = _interpreter(conversion, settings)
        self.runtime = Runtime(name, settings)
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs, in the converted function's order, for ``feeds`` in its input order."""
        if len(feeds) != len(self.inputs):
            raise ValueError(f"the converted model takes {len(self.inputs)} inputs, not"
                             f" {len(feeds)}")
        with silenced_stderr():
            for detail, value in zip(self.inputs, feeds):
                value = np.asarray(value, dtype=detail["dtype"])
                if tuple(detail["shape"]) != value.shape:
                    self.interpreter.resize_tensor_input(detail["index"], value.shape)
                    self.interpreter.allocate_tensors()
                self.interpreter.set_tensor(detail["index"], value)
            self.interpreter.invoke()
            return [np.array(self.interpreter.get_tensor(d["index"])) for d in self.outputs]

    def record(self) -> dict[str, Any]:
        """What a bundle's manifest keeps of this run (``envaudit/runtimes.py`` reads it)."""
        return {"converter": converter_version(), "interpreter": self.runtime.interpreter,
                "kernels": self.runtime.settings.kernels,
                "threads": self.runtime.settings.threads or 0,
                "optimization": self.conversion.optimization or "none",
                "select_tf_ops": self.conversion.select_tf_ops,
                "flatbuffer_sha256": self.conversion.sha256,
                "flatbuffer_bytes": len(self.conversion.flatbuffer),
                "conversion_s": round(self.conversion.seconds, 4),
                "cached": self.conversion.cached}


def _interpreter(conversion: Conversion, settings: InterpreterSettings) -> tuple[Any, str]:
    """LiteRT's interpreter for ``conversion`` with ``settings``, allocated, and its name."""
    litert = None if conversion.select_tf_ops else _litert()
    if litert is not None:
        module, version = litert
        name = f"ai-edge-litert {version}"
    else:
        module = tf.lite
        name = f"tensorflow {tf.__version__} (tf.lite.Interpreter)"
    resolver = module.experimental.OpResolverType if litert is None else module.OpResolverType
    kind = {"xnnpack": resolver.AUTO, "builtin": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "reference": resolver.BUILTIN_REF}[settings.kernels]
    with silenced_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = module.Interpreter(model_content=conversion.flatbuffer,
                                         num_threads=settings.threads,
                                         experimental_op_resolver_type=kind)
        interpreter.allocate_tensors()
    return interpreter, name


def _litert() -> tuple[Any, str] | None:
    """``ai_edge_litert.interpreter`` and its version, when installed."""
    try:
        from importlib import metadata

        from ai_edge_litert import interpreter  # type: ignore[import-not-found]

        return interpreter, metadata.version("ai-edge-litert")
    except Exception:  # noqa: BLE001 -- not installed, or broken: TensorFlow's runs it
        return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "error:" in line.lower()] or lines
    return (useful[0] if useful else type(exc).__name__)[:300]
