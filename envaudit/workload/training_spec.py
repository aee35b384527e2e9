"""What a recorded training run of the canary holds: its identity, its settings, the name, dtype
and shape of every array, in the order they are computed. NumPy only, so a training bundle is
validated before TensorFlow is imported (``workload/training.py`` computes what this describes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from envaudit import modes as registry
from envaudit.workload import architecture as arch
from envaudit.workload.assets import GOLDEN_SCENES

_LOSS = re.compile(r"step\d+\.loss")  # one per step
TRAINING_SEED = 2026
DEFAULT_STEPS = 3
MAX_STEPS = 1000  # a growth run of 1000 steps records 0.6 GB per mode; more is not a check
LEARNING_RATE = 1e-3
MOMENTUM = 0.9
CROP = 88  # pixels of the 100-pixel scene kept by the random crop
# The modes a training step is meaningful in: eager, graph and XLA (``jit_compile``). XLA compiles
# the whole step, forward and backward, which takes seconds: it is recorded when asked for.
MODES = (registry.EAGER, registry.GRAPH, registry.XLA)
DEFAULT_MODES = (registry.EAGER, registry.GRAPH)
BATCH = len(GOLDEN_SCENES)  # the golden scenes' PNG files, one image each
# How the run trains, as the manifest records it (a bundle of other settings is another run).
SETTINGS = {"optimizer": f"SGD, momentum {MOMENTUM}, learning rate {LEARNING_RATE}",
            "augmentation": f"stateless random crop {CROP}/100, flip, brightness, contrast",
            "seed": str(TRAINING_SEED), "batch": f"{BATCH} golden scenes (PNG)"}


def trainable() -> tuple[str, ...]:
    """The detector's trained weights in a fixed order (batch norm's population statistics are
    measured after training, not trained)."""
    return tuple(n for n in arch.weight_shapes() if not n.endswith(("/mean", "/var")))


def key(step: int, part: str, variable: str | None = None) -> str:
    """The recorded array name: ``step1.loss``, ``step1.grad.stem.conv``, ``step2.var....``."""
    return f"step{step}.{part}" + (f".{variable.replace('/', '.')}" if variable else "")


def array_spec(steps: int) -> dict[str, tuple[int, ...]]:
    """Every float32 array a run of ``steps`` steps records and its shape, in computing order:
    the augmented batch, the loss, every gradient, every weight after the update."""
    shapes = arch.weight_shapes()
    spec: dict[str, tuple[int, ...]] = {}
    for step in range(1, steps + 1):
        spec[key(step, "batch")] = (BATCH, CROP, CROP, 3)
        spec[key(step, "loss")] = ()
        spec.update({key(step, "grad", v): shapes[v] for v in trainable()})
        spec.update({key(step, "var", v): shapes[v] for v in trainable()})
    return spec


def steps_in(arrays: Mapping[str, np.ndarray]) -> int:
    """How many steps one mode's recorded arrays hold (each step records one loss)."""
    return sum(1 for name in arrays if _LOSS.fullmatch(name))


def spec_bytes(steps: int) -> int:
    """The bytes of one mode's arrays over ``steps`` steps."""
    return sum(4 * int(np.prod(shape)) for shape in array_spec(steps).values())


def validate(where: str, arrays: Mapping[str, np.ndarray], steps: int) -> str | None:
    """What is wrong with one mode's recorded training arrays, or None."""
    spec = array_spec(steps)
    if list(arrays) != list(spec):
        missing = [n for n in spec if n not in arrays][:3]
        extra = [n for n in arrays if n not in spec][:3]
        return (f"{where} does not hold the arrays of {steps} training steps"
                + (f" (missing {', '.join(missing)})" if missing else "")
                + (f" (unexpected {', '.join(extra)})" if extra else ""))
    for name, shape in spec.items():
        array = arrays[name]
        if array.dtype != np.float32 or array.shape != shape:
            return (f"{where}: {name} is {array.dtype} {list(array.shape)}, expected float32"
                    f" {list(shape)}")
    return None


def manifest_entry(steps: int, modes: Sequence[str],
                   settings: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The manifest's ``training`` field: what was trained (``settings``: a user model's; the
    canary's by default), and in which modes (None: nothing)."""
    if not steps or not modes:
        return None
    return {"steps": steps, "modes": list(modes),
            "settings": dict(SETTINGS if settings is None else settings)}


def manifest_problem(entry: Any, recorded: Sequence[str]) -> str | None:
    """What is wrong with a manifest's ``training`` field (``recorded``: the bundle's modes)."""
    if not isinstance(entry, dict) or sorted(entry) != ["modes", "settings", "steps"]:
        return "'training' must hold exactly its steps, modes and settings"
    steps, modes, settings = entry["steps"], entry["modes"], entry["settings"]
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        return f"'training.steps' must be a number of steps from 1 to {MAX_STEPS}"
    if not isinstance(modes, list) or not modes or \
            [m for m in recorded if m in modes and m in MODES] != modes:
        return ("'training.modes' must list recorded modes a training step has"
                f" ({', '.join(MODES)}), in the bundle's order")
    if not isinstance(settings, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in settings.items()):
        return "'training.settings' must map the training's settings to text"
    return None


def entry_steps(manifest: Mapping[str, Any]) -> int:
    """The steps a (validated) manifest's training holds; 0 without training."""
    entry = manifest.get("training")
    return int(entry["steps"]) if isinstance(entry, dict) else 0


def entry_modes(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    entry = manifest.get("training")
    return tuple(entry["modes"]) if isinstance(entry, dict) else ()
