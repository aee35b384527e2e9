"""The registry of execution modes: one record per mode, with every fact about it.

A mode is its own computation (docs/design.md, "Execution modes"): the same model run op by op,
as one traced graph, or compiled by XLA gives other bits. What the rest of envaudit needs to know
about a mode is on its record here: its name, what it runs (in words), which code computes its
arrays (``settings.Code``: a setting says which code it reaches, a mode which code it runs, and
``attribute.rank.mode_reach`` intersects them, so a new mode needs no edit in the settings table),
the kinds of device it can run on, and which op probes witness its own code (the ``xla.*`` probes
are XLA's; the others run op by op). How a mode is executed lives with its runner
(``workload/modes.py``, ``register_runner``), which is the only part that imports TensorFlow.

Add a mode -> ``register`` its record here (a built-in: add it to ``BUILT_IN`` and ``Mode``) and
its runner in ``workload/modes.py``. ``names()`` is read at call time, never frozen at import, so
a mode registered later (a test's, a plugin's) is checked like the built-ins.

Constraints: TF-free and cheap (``envaudit fingerprint`` and the CLI's argument parsing may import
it); the only envaudit import is the leaf table of settings, for the vocabulary of code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from envaudit.settings import (
    CPU,
    CPU_AND_GPU,
    ONNX_CODE,
    TF_KERNELS,
    TFLITE_CODE,
    TRACED_GRAPH,
    XLA_CODE,
    Code,
)

# The built-in modes, in the order every table, bundle and report lists them.
Mode = Literal["eager", "graph", "xla", "tflite", "tflite-float16", "tflite-dynamic-range",
               "onnx"]
EAGER: Mode = "eager"
GRAPH: Mode = "graph"
XLA: Mode = "xla"
TFLITE: Mode = "tflite"
TFLITE_FLOAT16: Mode = "tflite-float16"
TFLITE_DYNAMIC_RANGE: Mode = "tflite-dynamic-range"
ONNX: Mode = "onnx"
# The mode a check runs when none is asked for, a confirmation child runs by default, a bundle of
# schema 1 holds, and the op probes without a mode's prefix run in.
DEFAULT: Mode = EAGER


@dataclass(frozen=True)
class ExecutionMode:
    """One execution mode: what it runs, which code computes it, and which probes are its own."""

    name: str
    runs: str  # what it runs, in words
    codes: frozenset[Code]  # the code that computes its arrays (what settings can reach)
    devices: frozenset[str] = CPU_AND_GPU  # the kinds of device it can run on
    probe_prefix: str | None = None  # the op probes compiled for it ("xla."); None: none of its
    #                                  own (the probes without a prefix run in ``DEFAULT``)
    recorded_by_default: bool = True  # ``envaudit record`` records it unless --modes says
    converted: bool = False  # a model converted for deployment and run by another runtime: its
    #                          conversion gap is measured against ``CONVERTED_FROM`` in each run
    precision: str | None = None  # the precision it gives up on purpose, in words: its error
    #                               growth against the float64 twin is expected, never drift


BUILT_IN: tuple[ExecutionMode, ...] = (
    ExecutionMode(EAGER, "op by op, as a notebook or a Keras model called directly runs it",
                  TF_KERNELS),
    ExecutionMode(GRAPH, "one tf.function over the whole pipeline, optimised by grappler, as a"
                  " SavedModel signature runs under TF Serving", TF_KERNELS | TRACED_GRAPH),
    # XLA compiles its own code for what it can; what it cannot compile (image decoders, NMS on
    # the CPU) runs outside the cluster (``workload.architecture.OUTSIDE_XLA``).
    ExecutionMode(XLA, "tf.function(jit_compile=True), as Keras 3 compiles predict() on GPUs",
                  TRACED_GRAPH | XLA_CODE, probe_prefix="xla."),
    # The deployment runtimes: the model converted in this environment and run by the runtime a
    # user ships (``workload/tflite.py``, ``workload/onnx_mode.py``). Recorded when asked for.
    ExecutionMode(TFLITE, "converted with TFLiteConverter, run by the LiteRT interpreter, as a"
                  " phone or an edge device runs it", TFLITE_CODE, devices=CPU,
                  recorded_by_default=False, converted=True),
    ExecutionMode(TFLITE_FLOAT16, "converted with float16 weights (Optimize.DEFAULT, float16"
                  " types), run by the LiteRT interpreter", TFLITE_CODE, devices=CPU,
                  recorded_by_default=False, converted=True,
                  precision="its weights are stored in float16"),
    ExecutionMode(TFLITE_DYNAMIC_RANGE, "converted with dynamic-range quantization (int8 weights,"
                  " Optimize.DEFAULT), run by the LiteRT interpreter", TFLITE_CODE, devices=CPU,
                  recorded_by_default=False, converted=True,
                  precision="its weights are quantized to int8 (dynamic range)"),
    ExecutionMode(ONNX, "converted with tf2onnx, run by ONNX Runtime (envaudit[onnx])",
                  ONNX_CODE, recorded_by_default=False, converted=True),
)
# What a converted mode's conversion gap is measured against: the same model as one traced
# graph in this run, the form the converters read.
CONVERTED_FROM: Mode = GRAPH
# ``--tflite-optimize``'s choices and the mode each records.
TFLITE_OPTIMIZATIONS: dict[str, str] = {"float16": TFLITE_FLOAT16,
                                        "dynamic-range": TFLITE_DYNAMIC_RANGE}
_REGISTRY: dict[str, ExecutionMode] = {m.name: m for m in BUILT_IN}


def names() -> tuple[str, ...]:
    """The registered modes, built-ins first, in registration order (read at call time)."""
    return tuple(_REGISTRY)


def recorded_by_default() -> tuple[str, ...]:
    """The modes ``envaudit record`` records when not told which (the deployment runtimes are
    asked for: each converts the model first)."""
    return tuple(m.name for m in _REGISTRY.values() if m.recorded_by_default)


def get(name: str) -> ExecutionMode:
    """The record of mode ``name``; ``KeyError`` (naming the registered modes) if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown mode {name!r}; expected one of {', '.join(_REGISTRY)}") from None


def register(record: ExecutionMode) -> None:
    """Add a mode after the registered ones; a name already registered is refused."""
    if record.name in _REGISTRY:
        raise ValueError(f"mode {record.name!r} is already registered")
    _REGISTRY[record.name] = record


def unregister(name: str) -> None:
    """Remove a mode that ``register`` added (a test's); the built-ins stay."""
    if name in get_args(Mode):
        raise ValueError(f"{name!r} is a built-in mode")
    _REGISTRY.pop(name, None)


def unknown(requested: Sequence[str]) -> list[str]:
    """The requested mode names that are not registered, in the order given."""
    return [m for m in requested if m not in _REGISTRY]


def in_order(requested: Sequence[str]) -> tuple[str, ...]:
    """The requested registered modes in registry order, each once."""
    wanted = set(requested)
    return tuple(m for m in _REGISTRY if m in wanted)


def runs_beside(probe: str, mode: str | None) -> bool:
    """Whether op probe ``probe`` runs beside a run in ``mode`` (None: every probe, as the canary
    records them): the probes of ``DEFAULT`` always, a mode's own probes only beside that mode
    (the ``xla.*`` probes witness XLA's code generation, which no other mode uses)."""
    return mode is None or probe_mode(probe) in (DEFAULT, mode)


def probe_mode(probe: str) -> str:
    """The mode an op probe runs in: the mode whose prefix it carries, else ``DEFAULT``."""
    return next((m.name for m in _REGISTRY.values()
                 if m.probe_prefix and probe.startswith(m.probe_prefix)), DEFAULT)
