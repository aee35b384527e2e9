"""A user model's own training steps, as a bundle records them: the training file, which of its
arrays are the model's inputs and which its targets, what the manifest says was trained, and the
recorded steps validated. NumPy only, so everything here runs before TensorFlow is imported.

The training file (``--train-inputs data.npz``) holds, by name:

- the inputs: one array per model input, named like the input, or ``x`` when the model has one;
- the targets: one array per model output, named like the output, or ``y`` when it has one.

Every array holds the same number of examples (its first dimension). Each step trains on the whole
file as one batch, from the saved weights and the saved optimizer state, so every step sees the
same batch: it is recorded once, as step 1's (``step1.batch.NAME``, one array per name in the
file), and a check feeds those arrays again (the bundle alone suffices). The steps' other arrays
are ``workload/custom_training.run_steps``'s: ``stepK.loss``, ``stepK.grad.VARIABLE`` and
``stepK.var.VARIABLE`` (the variable's path with ``/`` written ``.``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envaudit.compare.training import parse
from envaudit.errors import EnvauditError
from envaudit.usermodel.files import read_arrays

INPUTS_ALIAS = "x"  # the inputs of a model with one input
TARGETS_ALIAS = "y"  # the targets of a model with one output
BATCH_PREFIX = "step1.batch."  # the training file as the bundle keeps it
# What a user model's manifest says about its training, one line each (``settings``).
SETTING_KEYS = ("optimizer", "loss", "batch", "train_inputs", "start")
MAX_NAME = 100  # the longest array name a bundle stores (``store._ARRAY_NAME``)
_STEP_LOSS = re.compile(r"step(\d{1,6})\.loss")


@dataclass(frozen=True)
class TrainInputs:
    """The training file's arrays, by name, and the file's SHA-256."""

    arrays: dict[str, np.ndarray]
    sha256: str

    @property
    def examples(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def describe(self) -> str:
        shapes = ", ".join(f"{n} {a.dtype}{list(a.shape)}" for n, a in self.arrays.items())
        return f"sha256 {self.sha256} ({shapes})"


def read_train_inputs(path: Path) -> TrainInputs:
    """The training file's named arrays (no pickles, numbers only, finite), each with the same
    number of examples, refused in one line before anything is loaded."""
    arrays = read_arrays(path, what="train inputs")
    long = [n for n in arrays if len(BATCH_PREFIX + n) > MAX_NAME]
    if long:
        raise EnvauditError(f"train inputs {path}: array name {long[0]!r} is longer than"
                            f" {MAX_NAME - len(BATCH_PREFIX)} characters; rename it")
    counts = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if None in counts or 0 in counts:
        raise EnvauditError(f"train inputs {path}: every array needs one row per example (a"
                            " first dimension of 1 or more)")
    if len(counts) > 1:
        shown = ", ".join(f"{n} {a.shape[0]}" for n, a in arrays.items())
        raise EnvauditError(f"train inputs {path} hold different numbers of examples ({shown});"
                            " give every input and target the same")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return TrainInputs(arrays, digest)


def split_names(names: Sequence[str], inputs: Sequence[str], outputs: Sequence[str]
                ) -> tuple[dict[str, str], dict[str, str]]:
    """Which array of the training file feeds each model input, and which is the target of each
    model output (model name -> array name), by the module docstring's rule; one line naming
    what is missing or left over otherwise."""
    fed = _assigned(names, inputs, INPUTS_ALIAS, "input")
    targets = _assigned(names, outputs, TARGETS_ALIAS, "output")
    extra = [n for n in names if n not in {*fed.values(), *targets.values()}]
    if extra:
        raise EnvauditError(
            f"the train inputs hold {', '.join(map(repr, extra))}, which is neither an input"
            f" ({_spelled(inputs, INPUTS_ALIAS)}) nor a target"
            f" ({_spelled(outputs, TARGETS_ALIAS)}) of the model; remove or rename it")
    return fed, targets


def _assigned(names: Sequence[str], wanted: Sequence[str], alias: str, what: str
              ) -> dict[str, str]:
    by_name = [w for w in wanted if w in names]
    if len(wanted) == 1 and alias in names:
        if by_name and by_name[0] != alias:
            raise EnvauditError(f"the train inputs hold both {alias!r} and {by_name[0]!r} for the"
                                f" model's one {what}; keep one")
        return {wanted[0]: alias}
    missing = [w for w in wanted if w not in names]
    if missing:
        role = "inputs" if what == "input" else "targets"
        raise EnvauditError(f"the train inputs hold no {what} {', '.join(map(repr, missing))};"
                            f" name the {role} {_spelled(wanted, alias)}")
    return {w: w for w in wanted}


def _spelled(names: Sequence[str], alias: str) -> str:
    listed = ", ".join(names)
    return f"{listed}, or {alias}" if len(names) == 1 else listed


def name_problem(names: Sequence[str]) -> str | None:
    """A recorded array name a bundle could not store (a variable's path too long), or None."""
    long = next((n for n in names if len(n) > MAX_NAME), None)
    return (f"the training step's array {long[:60]}... has a name longer than {MAX_NAME}"
            " characters; give the layer a shorter name" if long else None)


def batch_of(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The training file's arrays, by name, from one mode's recorded steps."""
    return {name[len(BATCH_PREFIX):]: array for name, array in arrays.items()
            if name.startswith(BATCH_PREFIX)}


def steps_problem(where: str, arrays: Mapping[str, np.ndarray], steps: int) -> str | None:
    """What is wrong with one mode's recorded steps of a user's model, or None: steps 1..steps
    in order, each a scalar float loss, gradients and variables named alike in every step, the
    training file as step 1's batch and never again."""
    order: list[int] = []
    for name, array in arrays.items():
        parsed = parse(name)
        if parsed is None:
            return f"{where}: {name} is not a training step's array"
        step, part, variable = parsed
        if part not in ("batch", "loss", "grad", "var") or (part == "batch") != (
                name.startswith(BATCH_PREFIX) and len(name) > len(BATCH_PREFIX)):
            return f"{where}: {name} is not an array a model's training step records"
        if part != "batch" and (array.dtype.kind != "f" or (part == "loss") != (variable is None)
                                or (part == "loss" and array.shape != ())):
            return f"{where}: {name} is {array.dtype}{list(array.shape)}, not a float {part}"
        if not order or order[-1] != step:
            order.append(step)
    if order != list(range(1, steps + 1)):
        return f"{where} does not hold {steps} training steps in order"
    if not batch_of(arrays):
        return f"{where} holds no training batch"
    return _variables_problem(where, arrays, steps)


def _variables_problem(where: str, arrays: Mapping[str, np.ndarray], steps: int) -> str | None:
    """Every step records the same variables (shapes alike), and gradients only of those."""
    shapes: list[dict[str, tuple[int, ...]]] = [{} for _ in range(steps)]
    grads: list[dict[str, tuple[int, ...]]] = [{} for _ in range(steps)]
    losses = sum(1 for name in arrays if _STEP_LOSS.fullmatch(name))
    for name, array in arrays.items():
        step, part, variable = parse(name) or (0, "", None)
        if part in ("var", "grad"):
            (shapes if part == "var" else grads)[step - 1][str(variable)] = array.shape
    if losses != steps or not shapes[0] or any(s != shapes[0] for s in shapes):
        return f"{where}: its steps do not each hold one loss and the same variables"
    if any(any(shapes[0].get(v) != shape for v, shape in g.items()) for g in grads):
        return f"{where}: a gradient is not of a recorded variable's shape"
    return None


def settings_problem(settings: Mapping[str, Any]) -> str | None:
    """What is wrong with a user model's ``training.settings``, or None."""
    if sorted(settings) != sorted(SETTING_KEYS):
        return f"'training.settings' of a model must say its {', '.join(SETTING_KEYS)}"
    return None
