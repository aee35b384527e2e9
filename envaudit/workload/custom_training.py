"""A user's own training step, run and read: the TensorFlow side of ``envaudit.training``.

``run_steps`` calls the user's ``step_fn(batch)`` for each batch and copies out, per step ``K``
and in this order (the order a first difference is read in): the batch (``stepK.batch``, or
``stepK.batch.<part>`` for a tuple or mapping), what the step returned (a tensor is
``stepK.loss``; a mapping's entries are ``stepK.<key>``, and a list under a key that has one
entry per variable is named by the variables: ``stepK.grad.<variable>``) and every variable after
the step (``stepK.var.<variable>``, its path or name with ``/`` and ``:`` written ``.``). Only
numeric arrays are kept (a batch's file names are not an array a step computes with).

Seeds and random ops are read, never set: the states of Python's, NumPy's, TensorFlow's and
Keras' seeds before and after (``envaudit/seeds.py`` says what can and cannot be told), and the
random ops in the graphs TensorFlow lets us read -- a ``tf.function`` step's traced graphs and a
``tf.data`` pipeline's -- whose seeds say they had none.

Constraints: nothing here may change the user's process beyond what they asked for: op
determinism is switched back to what it was, and the random states a repeat restores are the ones
the user had. Keras is read only when the user's program imported it.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from envaudit import modes as registry
from envaudit.errors import EnvauditError
from envaudit.seeds import SeedReport, SeedState, UnseededOp
from envaudit.workload.training_spec import MAX_STEPS

# The parts a step's own outputs may not take: the batch and the weights are recorded by name.
RESERVED = ("batch", "var")
_KEY = re.compile(r"[A-Za-z_]{1,40}")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]")
# Input-pipeline ops that take their seeds as inputs (the positions of seed and seed2), not as
# attributes.
_SEED_INPUTS = {"ShuffleDataset": (2, 3), "ShuffleDatasetV3": (2, 3),
                "ShuffleAndRepeatDataset": (2, 3), "ShuffleAndRepeatDatasetV2": (2, 3),
                "RandomDataset": (0, 1), "RandomDatasetV2": (0, 1)}


@dataclass(frozen=True)
class StepsRun:
    """The arrays of one run of a user's steps, and what was known about its randomness."""

    arrays: Mapping[str, np.ndarray]  # computing order
    steps: int
    mode: str  # eager, or graph / xla for a tf.function step
    seeds: SeedReport
    seconds: float
    tensorflow: str  # the version that ran it
    # What may make the run differ from itself: its unseeded random ops and the input pipeline's
    # ops that deliver in the order their threads finish (possible causes, not confirmed ones).
    suspects: tuple[str, ...] = ()


def run_steps(step_fn: Callable[[Any], Any], batches: Iterable[Any], variables: Any = (),
              steps: int | None = None) -> StepsRun:
    """``step_fn`` over ``batches`` (at most ``steps``; all of them, up to ``MAX_STEPS``, when
    None), every step's arrays copied out as the module docstring says."""
    before = RandomState.now()
    arrays: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    done = 0
    for done, batch in _numbered(batches, steps):
        arrays.update(_parts(f"step{done}.batch", batch))
        out = step_fn(batch)
        names = variable_names(variables)  # after the step: a Keras model builds on first call
        arrays.update(_outputs(done, out, names))
        arrays.update({f"step{done}.var.{n}": _array(v) for n, v in names.items()})
    seconds = time.perf_counter() - started
    if done == 0:
        raise EnvauditError("the batches gave no batch to train on; pass a non-empty iterable")
    pipeline = _dataset_graph(batches)
    seeds = SeedReport(seed_states(before, RandomState.now()), *_scan_ops(step_fn, pipeline))
    suspects = tuple(f"{o.op} '{o.name}' ran unseeded"
                     + (f" in {o.function}" if o.function else "") for o in seeds.unseeded_ops)
    if not isinstance(pipeline, str):
        suspects += _unordered(pipeline)
    return StepsRun(arrays, done, mode_of(step_fn), seeds, seconds, tf.__version__, suspects)


def _numbered(batches: Iterable[Any], steps: int | None) -> Iterator[tuple[int, Any]]:
    limit = MAX_STEPS if steps is None else steps
    for step, batch in enumerate(batches, start=1):
        if step > limit:
            if steps is None:
                raise EnvauditError(f"the batches hold more than {MAX_STEPS} steps; pass"
                                    " steps=N to record the first N")
            return
        yield step, batch


def mode_of(step_fn: Callable[..., Any]) -> str:
    """How the step runs: a ``tf.function`` is one traced graph (XLA when it compiles)."""
    if not hasattr(step_fn, "get_concrete_function"):
        return registry.EAGER
    return registry.XLA if getattr(step_fn, "_jit_compile", None) else registry.GRAPH


def variable_names(variables: Any) -> dict[str, Any]:
    """The variables by their recorded names (a Keras model or a ``tf.Module``: its trainable
    variables; a mapping: its own names; else a sequence of variables)."""
    if isinstance(variables, Mapping):
        pairs = [(str(k), v) for k, v in variables.items()]
    else:
        found = getattr(variables, "trainable_variables", variables)
        pairs = [(str(getattr(v, "path", None) or v.name), v) for v in found]
    named: dict[str, Any] = {}
    for name, variable in pairs:
        clean = _NOT_IN_NAME.sub(".", name)
        unique, n = clean, 1
        while unique in named:  # tf.Variables are all "Variable:0" unless named
            n += 1
            unique = f"{clean}.{n}"
        named[unique] = variable
    return named


def _array(value: Any) -> np.ndarray:
    value = value.numpy() if hasattr(value, "numpy") else value
    return np.array(value, copy=True)


def _parts(prefix: str, value: Any) -> dict[str, np.ndarray]:
    """A (possibly nested) batch as named numeric arrays: ``prefix``, or ``prefix.<part>``."""
    if isinstance(value, Mapping):
        parts = [(_NOT_IN_NAME.sub(".", str(k)), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        parts = [(str(i), v) for i, v in enumerate(value)]
    else:
        array = _array(value)
        return {prefix: array} if array.dtype.kind in "biuf" else {}
    named: dict[str, np.ndarray] = {}
    for part, inner in parts:
        named.update(_parts(f"{prefix}.{part}", inner))
    return named


def _outputs(step: int, out: Any, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if out is None:
        return {}
    if not isinstance(out, Mapping):
        return {f"step{step}.loss": _array(out)}
    named: dict[str, np.ndarray] = {}
    for key, value in out.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key) or key in RESERVED:
            raise EnvauditError(f"the step returned the key {key!r}; name its outputs with"
                                f" letters and _ only, other than {' and '.join(RESERVED)}")
        if isinstance(value, (list, tuple)):
            labels = list(variables) if len(value) == len(variables) else \
                [str(i) for i in range(len(value))]
            named.update({f"step{step}.{key}.{label}": _array(v)
                          for label, v in zip(labels, value) if v is not None})
        elif value is not None:
            named[f"step{step}.{key}"] = _array(value)
    return named


# --- seeds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomState:
    """Every random state a training step may draw from, as the process holds it now."""

    python: Any
    numpy: Any
    tensorflow: int | None  # the global seed
    keras: int | None  # the seed keras.utils.set_random_seed recorded
    keras_loaded: bool

    @classmethod
    def now(cls) -> RandomState:
        from tensorflow.python.eager import context

        keras_seed = None
        if "keras" in sys.modules:
            from keras.src.utils import rng_utils

            keras_seed = rng_utils.get_random_seed()
        return cls(random.getstate(), np.random.get_state(), context.global_seed(), keras_seed,
                   "keras" in sys.modules)

    def restore(self) -> None:
        """Put these states back, as a fresh process seeded the same way would start: a seed
        that was not set is unset again (a ``build`` may have set one)."""
        if self.keras is not None:
            import keras

            keras.utils.set_random_seed(self.keras)  # also forgets Keras' own generator
        elif "keras" in sys.modules:
            from keras.src.backend.common import global_state
            from keras.src.utils import rng_utils

            global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, None)
        tf.random.set_seed(self.tensorflow)  # also restarts the op seeds drawn from it
        random.setstate(self.python)
        np.random.set_state(self.numpy)


def _same_numpy(a: Any, b: Any) -> bool:
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
               for x, y in zip(a, b))


def seed_states(before: RandomState, after: RandomState) -> tuple[SeedState, ...]:
    """Each seed source as the run found it, and whether the run drew from it."""
    known = [s for s in (before.keras, before.tensorflow) if s is not None]
    cannot = (" a fresh process seeds it from the operating system, and a seeded state cannot be"
              " told from an unseeded one unless it matches a known seed")
    python = next((s for s in known if random.Random(s).getstate() == before.python), None)
    numpy = next((s for s in known
                  if _same_numpy(np.random.RandomState(s).get_state(), before.numpy)), None)
    tf_how = ("tf.random.set_seed was called" if before.tensorflow is not None else
              "tf.random.set_seed was not called: an op without its own seed draws from the"
              " operating system")
    if not before.keras_loaded:
        keras = SeedState("keras", "not_set", None, False, "Keras was not imported")
    else:
        keras = SeedState("keras", "set" if before.keras is not None else "not_set",
                          before.keras, None, "keras.utils.set_random_seed was called"
                          if before.keras is not None else
                          "keras.utils.set_random_seed was not called: layers draw their"
                          " seeds from Python's random")
    return (
        SeedState("python", "set" if python is not None else "unknown", python,
                  before.python != after.python,
                  f"its state is what random.seed({python}) gives" if python is not None
                  else "random.getstate():" + cannot),
        SeedState("numpy", "set" if numpy is not None else "unknown", numpy,
                  not _same_numpy(before.numpy, after.numpy),
                  f"its state is what np.random.seed({numpy}) gives" if numpy is not None
                  else "np.random.get_state():" + cannot),
        SeedState("tensorflow", "set" if before.tensorflow is not None else "not_set",
                  before.tensorflow, None, tf_how),
        keras,
    )


# --- random ops in graphs ---------------------------------------------------------------------


def _dataset_graph(batches: Any) -> Any:
    """The GraphDef of a ``tf.data`` pipeline, or why there is none to read (text)."""
    if not isinstance(batches, tf.data.Dataset):
        return "the batches are not a tf.data pipeline: what made them is not visible"
    try:
        return tf.compat.v1.GraphDef.FromString(batches._as_serialized_graph().numpy())
    except (tf.errors.OpError, ValueError, TypeError, AttributeError) as exc:
        # AttributeError: a TensorFlow without this (private) reader
        return f"the tf.data pipeline's graph could not be read ({exc})"


def _unordered(graph: Any) -> tuple[str, ...]:
    """The pipeline's parallel ops told not to keep their order (``deterministic=False``)."""
    return tuple(f"{n.op} '{n.name}' with deterministic=False: the pipeline's order follows"
                 " its threads" for n in graph.node
                 if "deterministic" in n.attr and n.attr["deterministic"].s == b"false")


def _scan_ops(step_fn: Any, pipeline: Any
              ) -> tuple[tuple[UnseededOp, ...], int, tuple[str, ...], tuple[str, ...]]:
    """The unseeded random ops of the step's traced graphs and of the ``tf.data`` pipeline's
    graph (``pipeline``: or why it cannot be read), how many seeded ones, what was read, and
    what could not be and why."""
    unseeded: list[UnseededOp] = []
    seeded = 0
    scanned: list[str] = []
    not_scanned: list[str] = []
    if hasattr(step_fn, "get_concrete_function") and \
            not hasattr(step_fn, "_list_all_concrete_functions"):
        not_scanned.append("the step's traced graphs could not be listed by this TensorFlow")
    elif hasattr(step_fn, "_list_all_concrete_functions"):
        traced = step_fn._list_all_concrete_functions()
        for concrete in traced:
            found, count = _random_ops(concrete.graph.as_graph_def(), "step")
            unseeded += found
            seeded += count
        scanned.append(f"the step's {len(traced)} traced graph{'s' if len(traced) != 1 else ''}")
    else:
        not_scanned.append("the step ran eagerly: its random ops leave no graph to read (under"
                           " op determinism an unseeded one raises)")
    if isinstance(pipeline, str):
        not_scanned.append(pipeline)
    else:
        found, count = _random_ops(pipeline, "dataset")
        unseeded += found
        seeded += count
        scanned.append("the tf.data pipeline's graph")
    return tuple(unseeded), seeded, tuple(scanned), tuple(not_scanned)


def _random_ops(graph: Any, where: str) -> tuple[list[UnseededOp], int]:
    """The unseeded random ops of a GraphDef and its function library, and the seeded count.
    A random op carries ``seed`` and ``seed2``, both 0 when nothing seeded it."""
    unseeded: list[UnseededOp] = []
    seeded = 0
    bodies = [(None, list(graph.node))] + [(f.signature.name, list(f.node_def))
                                          for f in graph.library.function]
    for function, nodes in bodies:
        consts = {n.name: n for n in nodes if n.op == "Const"}
        for node in nodes:
            seeds = _seeds(node, consts)
            if seeds is None:
                continue
            if seeds == (0, 0):
                unseeded.append(UnseededOp(node.op, node.name, where, function))
            else:
                seeded += 1
    return unseeded, seeded


def _seeds(node: Any, consts: Mapping[str, Any]) -> tuple[int, int] | None:
    """A node's (seed, seed2), or None for a node that has none (or whose seeds are computed)."""
    if "seed" in node.attr and "seed2" in node.attr:
        return node.attr["seed"].i, node.attr["seed2"].i
    positions = _SEED_INPUTS.get(node.op)
    if positions is None or len(node.input) <= max(positions):
        return None
    found = [consts.get(node.input[i].split(":")[0].lstrip("^")) for i in positions]
    if any(c is None for c in found):
        return None
    first, second = (int(tf.make_ndarray(c.attr["value"].tensor)) for c in found)
    return first, second


# --- op determinism ---------------------------------------------------------------------------


@contextmanager
def op_determinism() -> Iterator[None]:
    """TensorFlow's op determinism on for the block, then back to what it was."""
    from tensorflow.python.framework import config

    was = config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was:
            config.disable_op_determinism()


def refusal(exc: BaseException) -> str | None:
    """TensorFlow's own line for an op that refused to run under op determinism (its message is
    nested in autograph's "in user code:" text), or None for any other error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if "determinis" in line.lower()), None)
