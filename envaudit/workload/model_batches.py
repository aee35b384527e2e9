"""How a user's inputs are cut into the batches a model takes, and its arrays joined back.

A model whose inputs fix the batch size (the TF Object Detection API exports batch one) is fed
batches of exactly that size. When the number of examples is not a multiple of it, the last batch
is filled up by repeating its last example and the rows computed for the filling are dropped from
every array: filling rather than refusing, so any number of images can be recorded; the same
filling at record and at check keeps the comparison exact. Joining needs every array (each output
and layer) to hold one row per example; one that does not is refused with a line saying so.
A batch's arrays travel as ``ModelArrays``: layers and outputs apart, each by the model's own
name, so no one reads a role back out of a name. NumPy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from envaudit.errors import EnvauditError


@dataclass(frozen=True)
class ModelArrays:
    """What one run of a model computed: the recorded layers' outputs and the model's outputs,
    each by the model's name, in model order."""

    layers: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def within_budget(run: ModelArrays, budget: int) -> ModelArrays:
    """``run`` with its layers, in model order, up to the last one whose bytes still fit
    ``budget`` all together (the outputs always)."""
    kept, total = {}, 0
    for name, array in run.layers.items():
        total += array.nbytes
        if total > budget:
            continue  # and every later layer: ``total`` only grows
        kept[name] = array
    return replace(run, layers=kept)


def batches(feeds: Mapping[str, np.ndarray], size: int | None, count: int
            ) -> list[tuple[dict[str, np.ndarray], int]]:
    """``feeds`` cut into batches of ``size`` examples (one batch when the model takes any), the
    last filled up by repeating its last example; each with its number of real examples."""
    if size is None or count in (0, size):
        return [(dict(feeds), count)]
    cut = []
    for first in range(0, count, size):
        real = min(size, count - first)
        batch = {}
        for name, array in feeds.items():
            rows = array[first:first + real]
            batch[name] = np.concatenate([rows, np.repeat(rows[-1:], size - real, axis=0)])
        cut.append((batch, real))
    return cut


def joined(parts: Sequence[tuple[ModelArrays, int]], size: int | None) -> ModelArrays:
    """The arrays of every batch, joined along the examples, the filled-up rows dropped."""
    first, real = parts[0]
    if len(parts) == 1 and (size is None or real == size):
        return first
    for role, arrays in (("layer", first.layers), ("output", first.outputs)):
        for name, array in arrays.items():
            if array.ndim == 0 or array.shape[0] != size:
                raise EnvauditError(f"{role} {name} is {list(array.shape)}, not one row per"
                                    " example, so the inputs cannot be fed in the model's"
                                    f" batches of {size}; give exactly {size} examples")
    return ModelArrays(
        layers={k: np.concatenate([p.layers[k][:rows] for p, rows in parts]) for k in first.layers},
        outputs={k: np.concatenate([p.outputs[k][:rows] for p, rows in parts])
                 for k in first.outputs})
