"""Where a difference starts, and whether this environment disagrees with itself.

``first_divergence``: the first stage (pipeline order) that is not bit-identical, and, from a
stage-isolated replay (each differing stage fed the golden outputs of the stages it reads, run
here), which stages changed by themselves and which only carry an earlier change. Without a
replay (a user model's layers, a training step, two recordings compared offline) only the first
stage is known: which later ones changed by themselves is left empty, never guessed.
``nondeterminism``: whether repeated runs in this one environment differ among themselves, and by
how much; the spread becomes the noise floor of the comparison. Pure NumPy: the replay itself is
run by the workload, which the caller passes in as arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from envaudit.compare.tensors import bit_identical
from envaudit.compare.types import FirstDivergence, Nondeterminism, StageReplay, TensorComparison


def first_divergence(stages: Sequence[TensorComparison], golden: Mapping[str, np.ndarray],
                     replayed: Mapping[str, np.ndarray] | None) -> FirstDivergence | None:
    """The first non-identical stage and each differing stage's replay (None: all identical).
    ``replayed`` holds, for every differing stage, its output on the golden inputs; None: nothing
    was replayed (``replay`` and ``changed_stages`` are empty)."""
    differing = [s for s in stages if not s.identical]
    if not differing:
        return None
    replays = ([] if replayed is None else
               [_replay(s.name, replayed[s.name], golden[s.name]) for s in differing])
    return FirstDivergence(
        stage=differing[0].name,
        index=[s.name for s in stages].index(differing[0].name),
        replay=tuple(replays),
        changed_stages=tuple(r.stage for r in replays if not r.identical),
    )


def _replay(stage: str, out: np.ndarray, reference: np.ndarray) -> StageReplay:
    same = bit_identical(out, reference)
    delta = 0.0 if same or out.shape != reference.shape else _max_abs(out, reference)
    return StageReplay(stage=stage, identical=same, max_abs=delta)


def nondeterminism(runs: Sequence[Mapping[str, np.ndarray]]) -> Nondeterminism:
    """Do repeated runs (each a mapping of array key -> array) differ from the first?"""
    first = runs[0]
    differing: list[str] = []
    spread = 0.0
    for key, base in first.items():
        for other in runs[1:]:
            if not bit_identical(other[key], base):
                if key not in differing:
                    differing.append(key)
                spread = max(spread, _max_abs(other[key], base))
    return Nondeterminism(runs=len(runs), deterministic=not differing,
                          differing_arrays=tuple(differing), max_spread=spread)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
