"""Your own training loop, checked: is a training step the same twice, and the same here as
there?

For a user whose training loop is their own (the canary's training is checked by ``envaudit
check``). Four functions, plain data back:

- ``record(step_fn, batches, variables=model)`` runs ``step_fn(batch)`` per batch and keeps, per
  step, the batch, what the step returned (its loss, or a mapping of loss, gradients, anything)
  and every variable after the step, with the seeds the run had and the random ops that ran
  unseeded (``envaudit/seeds.py``);
- ``compare(golden, current)`` (``check(golden, step_fn, batches)`` records and compares in one
  call): per step, the verdict with envaudit's statuses, the first step and
  array that moved, and how the weights' difference grows;
- ``determinism(build, repeat=3)``: the same steps ``repeat`` times from fresh models and
  pipelines, compared bit for bit; where they differ, the runs again under TensorFlow's op
  determinism, which names the ops that refuse and confirms the fix when the runs then agree;
- ``save(record, path)`` / ``load(path)``: a record kept in a file to compare with later or
  elsewhere (``training_file.py``).

Importing this module does not import TensorFlow; ``record`` and ``determinism`` do (through
``workload/custom_training.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from envaudit.compare import training as steps_compared
from envaudit.compare.tensors import compare_arrays
from envaudit.compare.types import TensorComparison, Verdict
from envaudit.compare.verdict import classify
from envaudit.plain import plain
from envaudit.seeds import SeedReport
from envaudit.training_file import load, save
from envaudit.training_record import TrainingRecord

if TYPE_CHECKING:
    from envaudit.workload.custom_training import RandomState, StepsRun

# What ``build`` returns to ``determinism``: a fresh step function, its batches and variables.
Build = Callable[[], tuple[Callable[[Any], Any], Iterable[Any], Any]]


def record(step_fn: Callable[[Any], Any], batches: Iterable[Any], *, variables: Any = (),
           steps: int | None = None) -> TrainingRecord:
    """Run ``step_fn(batch)`` for each of ``batches`` (the first ``steps``; all when None) and
    record every step's batch, outputs and ``variables`` (tf.Variables, a mapping of them, or a
    Keras model / tf.Module: its trainable variables) after it. ``step_fn`` returns the loss (a
    tensor), a mapping name -> tensor (a list of one tensor per variable, such as gradients, is
    named by the variables), or None. Imports TensorFlow."""
    from envaudit.workload.custom_training import run_steps

    run = run_steps(step_fn, batches, variables, steps)
    return TrainingRecord.of(run.arrays, run.steps, run.mode, run.seeds, run.seconds,
                             run.tensorflow)


@dataclass(frozen=True)
class TrainingComparison:
    """A record compared with a golden one: each array, each step and the first that moved."""

    verdict: Verdict  # of every array together, as ``envaudit check`` judges stages
    mode: steps_compared.TrainingMode  # per-step results, first moved step and array, growth
    golden_seeds: SeedReport
    current_seeds: SeedReport
    arrays: tuple[TensorComparison, ...] = field(metadata={"json": False})

    @property
    def first_moved_step(self) -> int | None:
        return self.mode.first_moved_step

    @property
    def first_moved(self) -> str | None:
        return self.mode.first_moved

    @property
    def identical(self) -> bool:
        return all(a.identical for a in self.arrays)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


def compare(golden: TrainingRecord, current: TrainingRecord, *,
            growth_target: float = steps_compared.DEFAULT_GROWTH_TARGET) -> TrainingComparison:
    """``current``'s arrays against ``golden``'s, in the golden's computing order (an array the
    current run lacks is not run); growth over the recorded variables, projected to
    ``growth_target`` (a relative weight difference)."""
    arrays = compare_arrays("stage", golden.arrays, current.arrays, mode=current.mode,
                            roles={name: "step" for name in golden.arrays})
    mode = steps_compared.TrainingMode.of(
        current.mode, steps_compared.step_results(arrays),
        steps_compared.growth(golden.arrays, current.arrays, growth_target))
    return TrainingComparison(classify(arrays, ()), mode, golden.seeds, current.seeds, arrays)


def check(golden: TrainingRecord | str | os.PathLike[str], step_fn: Callable[[Any], Any],
          batches: Iterable[Any], *, variables: Any = (),
          growth_target: float = steps_compared.DEFAULT_GROWTH_TARGET) -> TrainingComparison:
    """Train the golden's steps again here and compare: ``golden`` is a record, or the path
    ``save`` wrote it to; as many steps are run as it holds."""
    if not isinstance(golden, TrainingRecord):
        golden = load(golden)
    current = record(step_fn, batches, variables=variables, steps=golden.steps)
    return compare(golden, current, growth_target=growth_target)


def determinism(build: Build, *, repeat: int = 3, steps: int | None = None
                ) -> steps_compared.Determinism:
    """Whether ``repeat`` runs of the steps agree bit for bit. ``build()`` makes a fresh
    ``(step_fn, batches, variables)`` each time (a new model, a new pipeline); every run starts
    from the random states this process had when called (Python's, NumPy's, TensorFlow's and
    Keras' seeds), as a fresh process seeded the same way would. Where runs differ: the first
    step and array, what in the first run may explain it (``suspects``: its unseeded random ops,
    its pipeline's ops told ``deterministic=False``), then the same runs with op determinism on
    (switched back after): the ops that refused, in TensorFlow's words, and whether the runs
    then agree (``fix_confirmed``).

    The runs share this process, so they share its kernel choices (thread pools, autotuning):
    a difference only a new process shows is not seen here; ``envaudit check --repeat`` trains
    the canary in fresh processes. ``processes`` in the result counts these in-process runs
    (``fresh_processes`` is False)."""
    from envaudit.workload.custom_training import RandomState

    if repeat < 2:
        raise ValueError("determinism needs at least 2 runs to compare")
    start = RandomState.now()
    began = time.perf_counter()
    runs = [_run(build, start, steps) for _ in range(repeat)]
    seconds = time.perf_counter() - began
    first, count = steps_compared.first_difference(_aligned([r.arrays for r in runs]))
    if first is None:
        return steps_compared.Determinism(repeat, seconds, True, None, None, 0,
                                          fresh_processes=False)
    return steps_compared.Determinism(repeat, seconds, False, steps_compared.step_of(first),
                                      first, count, _under_op_determinism(build, start, steps,
                                                                          repeat),
                                      runs[0].suspects, fresh_processes=False)


def _run(build: Build, start: RandomState, steps: int | None) -> StepsRun:
    from envaudit.workload.custom_training import run_steps

    start.restore()
    step_fn, batches, variables = build()
    return run_steps(step_fn, batches, variables, steps)


def _under_op_determinism(build: Build, start: RandomState, steps: int | None, repeat: int
                          ) -> steps_compared.OpDeterminism:
    """The runs again with op determinism on: they agree (the fix), or what refused."""
    from envaudit.workload.custom_training import op_determinism, refusal

    again: list[Mapping[str, np.ndarray]] = []
    raised: list[str] = []
    with op_determinism():
        for _ in range(repeat):
            try:
                again.append(_run(build, start, steps).arrays)
            except Exception as exc:  # only TensorFlow's refusal is a finding; the rest raises
                said = refusal(exc)
                if said is None:
                    raise
                raised.append(said)
                break
    start.restore()
    identical = None if raised else steps_compared.first_difference(_aligned(again))[0] is None
    return steps_compared.OpDeterminism(identical, tuple(dict.fromkeys(raised)), len(again))


def _aligned(runs: Sequence[Mapping[str, np.ndarray]]) -> list[Mapping[str, np.ndarray]]:
    """The runs under the first run's names. A model built again in one process gets new
    variable names (Keras numbers its layers: ``dense``, ``dense_1``), so a run with as many
    arrays, each of the same step and part, is matched by position; any other is compared as
    named."""
    first = list(runs[0])
    shape = [steps_compared.parse(n)[:2] if steps_compared.parse(n) else n for n in first]
    aligned: list[Mapping[str, np.ndarray]] = [runs[0]]
    for run in runs[1:]:
        names = list(run)
        same = len(names) == len(first) and all(
            (steps_compared.parse(n)[:2] if steps_compared.parse(n) else n) == s
            for n, s in zip(names, shape))
        aligned.append(dict(zip(first, run.values())) if same else run)
    return aligned


__all__ = ["Build", "TrainingComparison", "TrainingRecord", "check", "compare", "determinism",
           "load", "record", "save"]
