"""A user's compiled Keras model trained a few steps from its saved weights and optimizer state:
the TensorFlow side of ``envaudit record --model M.keras --train-inputs data.npz``.

The model is loaded compiled (``keras.saving.load_model(compile=True, safe_mode=True)``: its
optimizer with the state it was saved with, its loss); one saved without ``compile()`` is refused.
A step is the one Keras' own ``fit`` takes, written out so that its parts can be read: the forward
pass with ``training=True``, the compiled loss (``model.compute_loss``), the gradients of the
trainable variables, ``model.optimizer.apply``. It runs in the mode the model was recorded in:
eagerly, in one ``tf.function`` (graph), or in one compiled with XLA (xla). Each step trains on
the whole training file as one batch (``usermodel/training.py``), so the model's own batch size
and shuffling play no part. The arrays are recorded by ``custom_training.run_steps`` (the same
recorder as ``envaudit.training.record``); the batch, the same every step, is kept once.

Constraints: the model is loaded fresh for training, so the inference run beside it never sees
trained weights; nothing is written to the model's file. Keras' seed is set before loading, so the
seeds layers draw when they are built (dropout masks) are the same in every process: this sets
Python's, NumPy's and TensorFlow's global seeds in this process too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from envaudit import modes as registry
from envaudit.compare.training import parse
from envaudit.errors import EnvauditError
from envaudit.usermodel.training import (
    BATCH_PREFIX,
    TrainInputs,
    name_problem,
    split_names,
)
from envaudit.workload import devices
from envaudit.workload.custom_training import run_steps
from envaudit.workload.graph_layers import first_line
from envaudit.workload.tf_runtime import silenced_stderr
from envaudit.workload.training_spec import TRAINING_SEED


@dataclass(frozen=True)
class ModelSteps:
    """A model's recorded steps: its arrays (``usermodel/training.py`` names), where they ran and
    what was trained, as the manifest says it."""

    arrays: dict[str, np.ndarray]
    mode: str
    device: str  # where the step's ops ran ("CPU:0", "GPU:0")
    settings: dict[str, str]
    seconds: float


def load_compiled(path: Path) -> Any:
    """The model at ``path`` with its saved optimizer (and its state) and loss; one line when it
    cannot be trained as saved."""
    import keras

    try:
        with silenced_stderr():
            model = keras.saving.load_model(str(path), compile=True, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a broken or unsafe file
        raise EnvauditError(f"{path} could not be loaded as a compiled Keras model"
                            f" ({first_line(exc)})") from None
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        raise EnvauditError(f"{path} was saved without compile(): it has no optimizer or loss"
                            " to train with; call model.compile(optimizer=..., loss=...) before"
                            " model.save")
    if not model.trainable_variables:
        raise EnvauditError(f"{path} has no trainable variables; there is no training to check")
    return model


def train_model(path: Path, data: TrainInputs | Mapping[str, np.ndarray], steps: int,
                mode: str) -> ModelSteps:
    """``steps`` steps of the model at ``path`` on ``data`` (the training file's arrays) in
    ``mode``, every step on the whole file."""
    import keras

    from envaudit.workload.custom_training import RandomState

    # A layer draws its seed when it is built (a dropout mask, a noise layer): seeded the same
    # way in every process, the steps are the same computation here and there. The caller's own
    # random states are put back after (envaudit.check() runs in a user's process).
    before = RandomState.now()
    keras.utils.set_random_seed(TRAINING_SEED)
    try:
        return _trained(path, data, steps, mode)
    finally:
        before.restore()


def _trained(path: Path, data: TrainInputs | Mapping[str, np.ndarray], steps: int,
             mode: str) -> ModelSteps:
    model = load_compiled(path)
    arrays = dict(data.arrays if isinstance(data, TrainInputs) else data)
    inputs = [t.name for t in model.inputs]
    fed, targets = split_names(list(arrays), inputs, list(model.output_names))
    batch = {name: tf.constant(array) for name, array in arrays.items()}
    step = _step(model, fed, targets, mode)
    if not model.optimizer.built:  # variables are made before a traced step, never inside it
        model.optimizer.build(model.trainable_variables)
    settings = describe(model, data if isinstance(data, TrainInputs) else None)  # before it
    started = time.perf_counter()  # trains: the saved iterations
    try:
        with silenced_stderr():
            run = run_steps(step, [batch] * steps, model, steps)
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        raise EnvauditError(f"the model could not be trained on the train inputs:"
                            f" {first_line(exc)}") from None
    seconds = time.perf_counter() - started
    recorded = {n: a for n, a in run.arrays.items()  # the same batch every step: kept once
                if n.startswith(BATCH_PREFIX) or (parse(n) or (0, ""))[1] != "batch"}
    problem = name_problem(list(recorded))
    if problem:
        raise EnvauditError(problem)
    return ModelSteps(recorded, run.mode, devices.default(), settings, seconds)


def _step(model: Any, fed: Mapping[str, str], targets: Mapping[str, str], mode: str) -> Any:
    """One training step over a batch (the training file's arrays by name)."""
    outputs = list(model.output_names)

    def step(batch: Mapping[str, Any]) -> dict[str, Any]:
        x = (batch[next(iter(fed.values()))] if len(fed) == 1
             else {name: batch[array] for name, array in fed.items()})
        y = (batch[targets[outputs[0]]] if len(outputs) == 1
             else [batch[targets[name]] for name in outputs])
        with tf.GradientTape() as tape:
            predicted = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=predicted)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(grads, model.trainable_variables)
        return {"loss": loss, "grad": grads}

    if mode == registry.EAGER:
        return step
    return tf.function(step, jit_compile=mode == registry.XLA)


def describe(model: Any, data: TrainInputs | None) -> dict[str, str]:
    """What was trained, as the manifest's ``training.settings`` say it (``SETTING_KEYS``)."""
    optimizer = model.optimizer
    config = optimizer.get_config()
    rate = config.get("learning_rate")
    said = [type(optimizer).__name__]
    if isinstance(rate, (int, float)):
        said.append(f"learning rate {float(rate):g}")
    if isinstance(config.get("momentum"), (int, float)) and config["momentum"]:
        said.append(f"momentum {float(config['momentum']):g}")
    loss = model.loss
    named = (loss if isinstance(loss, str) else
             ", ".join(f"{k}: {_loss_name(v)}" for k, v in loss.items())
             if isinstance(loss, dict) else
             ", ".join(map(_loss_name, loss)) if isinstance(loss, (list, tuple)) else
             _loss_name(loss))
    examples = data.examples if data is not None else 0
    return {
        "optimizer": ", ".join(said),
        "loss": named,
        "batch": f"the whole training file ({examples} examples) every step",
        "train_inputs": data.describe() if data is not None else "",
        "start": (f"the saved weights and optimizer state (after"
                  f" {int(optimizer.iterations.numpy())} saved iterations), layers seeded by"
                  f" keras.utils.set_random_seed({TRAINING_SEED})"),
    }


def _loss_name(loss: Any) -> str:
    return loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)
