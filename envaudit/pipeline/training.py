"""The canary's training steps, checked beside its inference: the training half of "same data,
different results".

A canary bundle records a few steps of the detector's own training by default
(``workload/training.py``). ``TrainingSteps`` validates them before TensorFlow is imported, trains
the same steps here in each mode they were recorded in, and compares each step's arrays with the
golden's in the order they were computed, so the first moved array says where training first
parted: in the augmented batch (the input pipeline), the loss (the forward pass), a gradient (the
backward pass) or only a weight (the update). How the difference grows over the steps is measured
on the weights (``compare/training.py``). Ranking and confirmation are the canary's: a re-run child
trains the same steps (``child_arguments``).

``--repeat N`` asks another question -- is training deterministic *here*? -- and a repeat inside
one process would reuse that process's kernel choices, so runs 2..N are fresh processes (the
re-run child). Where they differ, the same processes run again with TensorFlow's op determinism
on: an op that refuses to run under it is named in TensorFlow's words, and processes that then
agree bit for bit confirm the fix; nothing is said that those runs did not show.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from envaudit.attribute.gpu_kernels import suspected
from envaudit.compare import training as steps_compared
from envaudit.compare.tensors import compare_arrays
from envaudit.compare.types import FirstDivergence, ModeResult, TensorComparison
from envaudit.compare.verdict import Verdict, classify
from envaudit.errors import EnvauditError
from envaudit.pipeline.subject import Progress
from envaudit.store import GoldenBundle
from envaudit.usermodel.training import steps_problem
from envaudit.workload import training_spec as spec
from envaudit.workload.assets import Assets
from envaudit.workload.types import keyed_arrays, stage_key, unkeyed

CHILD_TIMEOUT_S = 900.0  # one process's steps (a GPU's first compile included)


# What trains the steps in this process: (modes, steps) -> each mode's arrays, and where each was
# computed (``keyed_arrays`` keys).
TrainHere = Callable[[Sequence[str], int],
                     tuple[dict[str, dict[str, np.ndarray]], Mapping[str, str]]]


class TrainingSteps:
    """The training steps a golden recorded, checked as part of its subject: the canary's
    (``canary.Canary``) or, with ``own_model``, a user model's (``own_model.OwnModel``)."""

    def __init__(self, bundle: GoldenBundle, modes: Sequence[str], growth_target: float,
                 own_model: bool = False) -> None:
        self.steps = bundle.training_steps
        rerecord = ("re-record it with 'envaudit record --model MODEL --inputs INPUTS"
                    " --train-inputs DATA --golden PATH --force'" if own_model else
                    "re-record it with 'envaudit record --golden PATH --force'")
        for mode, arrays in bundle.training.items():
            where = f"golden bundle {bundle.path} ({mode} training)"
            problem = (steps_problem(where, arrays, self.steps) if own_model else
                       spec.validate(where, arrays, self.steps))
            if problem:
                raise EnvauditError(f"{problem}; {rerecord}")
        settings = dict(bundle.manifest["training"]["settings"])
        if not own_model and settings != spec.SETTINGS:
            raise EnvauditError(f"golden bundle {bundle.path} was recorded with other training"
                                f" settings; {rerecord}")
        self.settings = settings
        self.modes = tuple(m for m in bundle.training if m in modes)
        self.golden: Mapping[str, Mapping[str, np.ndarray]] = bundle.training
        self.growth_target = growth_target
        self.determinism: steps_compared.Determinism | None = None
        self.devices: Mapping[str, str] = {}  # this run's, by ``keyed_arrays`` key

    def run(self, assets: Assets, repeat: int, progress: Progress
            ) -> list[dict[str, dict[str, np.ndarray]]]:
        """The canary's steps: each run's arrays by mode (``run_here``)."""
        def here(modes: Sequence[str], steps: int
                 ) -> tuple[dict[str, dict[str, np.ndarray]], Mapping[str, str]]:
            from envaudit.workload.training import run_training

            done = run_training(assets, modes, steps, probes=False)
            return {m: r.arrays for m, r in done.runs.items()}, done.devices

        return self.run_here(here, repeat, progress)

    def run_here(self, here: TrainHere, repeat: int, progress: Progress,
                 child: Sequence[str] = ()) -> list[dict[str, dict[str, np.ndarray]]]:
        """Each run's arrays by mode: the first in this process (``here``), the others
        (``repeat``) each in a fresh process (the re-run child, with ``child``'s arguments before
        the training's); with more than one, whether they agree (``self.determinism``)."""
        if not self.modes:
            return [{} for _ in range(repeat)]
        progress(f"training {self.steps} step{'s' if self.steps != 1 else ''}")
        started = time.perf_counter()
        arrays, self.devices = here(self.modes, self.steps)
        runs = [arrays]
        for i in range(2, repeat + 1):
            progress(f"training again in a fresh process ({i}/{repeat})")
            runs.append(_child_run(tuple(arrays), self.steps, child=child))
        if repeat > 1:
            self.determinism = _determinism(runs, tuple(arrays), self.steps, repeat,
                                            time.perf_counter() - started, progress,
                                            self.devices, child)
        return runs

    def compare(self, mode: str, current: Mapping[str, np.ndarray] | None, spread: float
                ) -> tuple[tuple[TensorComparison, ...], steps_compared.TrainingMode | None]:
        """One mode's steps against the golden's: each array's comparison (role ``step``) and
        the mode's steps, first moved array and growth (None when the mode did not train)."""
        golden = self.golden[mode]
        arrays = compare_arrays("stage", golden, current or {}, spread=spread, mode=mode,
                                roles={name: "step" for name in golden})
        if current is None:
            return arrays, None
        return arrays, steps_compared.TrainingMode.of(
            mode, steps_compared.step_results(arrays),
            steps_compared.growth(golden, current, self.growth_target),
            self.devices.get(stage_key(mode, spec.key(1, "loss"))))

    def report(self, modes: Sequence[steps_compared.TrainingMode]
               ) -> steps_compared.TrainingReport:
        return steps_compared.TrainingReport(self.steps, self.settings, tuple(modes),
                                             self.determinism)

    def child_arguments(self, modes: Sequence[str]) -> tuple[str, ...]:
        """A re-run child's arguments that train these steps in those of ``modes`` that train."""
        trained = [m for m in self.modes if m in modes]
        return (f"--training={self.steps}", f"--training-modes={','.join(trained)}") \
            if trained else ()


def first_moved(arrays: Sequence[TensorComparison]) -> FirstDivergence | None:
    """The first array in computing order that moved. A step is not replayed alone (it would
    need the optimizer's state), so which later arrays changed by themselves is not known."""
    names = [a.name for a in arrays]
    moved = next((a for a in arrays if not a.identical), None)
    if moved is None:
        return None
    return FirstDivergence(stage=moved.name, index=names.index(moved.name), replay=(),
                           changed_stages=(), step=steps_compared.step_of(moved.name),
                           part=steps_compared.part_in_words(moved.name))


def with_steps(result: ModeResult, pipeline: Sequence[TensorComparison],
               steps: Sequence[TensorComparison]) -> ModeResult:
    """A mode's result with its training steps' arrays judged beside the pipeline's: the verdict
    over both, the first divergence the pipeline's, else the first training array that moved."""
    verdict = classify([*pipeline, *steps], (), result.detections)
    first = result.first_divergence
    if first is None:
        moved = first_moved(steps)
        first = moved and replace(moved, index=moved.index + len(pipeline))  # after the pipeline
    return replace(result, verdict=verdict, first_divergence=first)


def with_training(said: str, verdict: Verdict, alone: Verdict,
                  report: steps_compared.TrainingReport, top_cause: str | None) -> str:
    """A headline with the training steps in it: ``said`` is the subject's own headline of its
    inference alone (verdict ``alone``, no cause), ``verdict`` the check's over both."""
    word = verdict.replace("_", " ").capitalize()
    phrase = steps_compared.training_phrase(report)
    if verdict == alone:
        text = f"{said[:-1]}; {phrase}"
    elif alone == "identical":  # training alone moved
        text = f"{word}: inference did not move ({said.split(': ', 1)[1][:-1]}), but {phrase}"
    else:  # training moved further than inference did
        text = f"{word}: {phrase}; inference alone is {said[0].lower()}{said[1:-1]}"
    return text + (f"; cause: {top_cause}." if top_cause else ".")


def _child_run(modes: Sequence[str], steps: int, determinism: bool = False,
               child: Sequence[str] = ()) -> dict[str, dict[str, np.ndarray]]:
    """The steps trained in a fresh process (the re-run child; ``child``: the arguments that
    make it train a user's model); raises ``_Refused`` with TensorFlow's words when an op
    refuses to run under op determinism."""
    from envaudit.workload.child import run_child

    with tempfile.TemporaryDirectory(prefix="envaudit-training-") as tmp:
        out = Path(tmp) / "arrays.npz"
        extra = [*child, f"--training={steps}", f"--training-modes={','.join(modes)}",
                 "--no-workload", *(["--op-determinism"] if determinism else [])]
        done = run_child(sys.executable, out, modes, extra, env=os.environ,
                         timeout=CHILD_TIMEOUT_S)
        if done.returncode == 3:
            raise _Refused(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
        if done.returncode != 0 or not out.is_file():
            said = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise EnvauditError(f"a fresh training process failed: {said[0]}")
        with np.load(out, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    return unkeyed(arrays)[0]


class _Refused(Exception):
    """An op refused to run under op determinism (the message is TensorFlow's)."""


def _determinism(runs: Sequence[Mapping[str, Mapping[str, np.ndarray]]], modes: Sequence[str],
                 steps: int, repeat: int, seconds: float, progress: Progress,
                 devices: Mapping[str, str], child: Sequence[str] = ()
                 ) -> steps_compared.Determinism:
    """Whether ``runs`` (each a fresh process) agree bit for bit; where they do not, the known
    kernels that may explain the first difference, and the same processes with op determinism
    on (``devices``: where the first run computed each array)."""
    keyed = [keyed_arrays(r, {}) for r in runs]
    first, count = steps_compared.first_difference(keyed)
    if first is None:
        return steps_compared.Determinism(repeat, seconds, True, None, None, 0)
    step, part, variable = steps_compared.parse(first.rsplit("/", 1)[-1]) or (None, "", None)
    trial = _op_determinism(modes, steps, repeat, progress, child)
    return steps_compared.Determinism(repeat, seconds, False, step, first, count, trial,
                                      suspected(part, variable, devices.get(first)))


def _op_determinism(modes: Sequence[str], steps: int, repeat: int, progress: Progress,
                    child: Sequence[str] = ()) -> steps_compared.OpDeterminism:
    again: list[dict[str, np.ndarray]] = []
    raised: list[str] = []
    for i in range(1, repeat + 1):
        progress(f"training with op determinism on ({i}/{repeat})")
        try:
            stages = _child_run(modes, steps, determinism=True, child=child)
        except _Refused as refused:
            raised.append(str(refused))
            break
        again.append(keyed_arrays(stages, {}))
    identical = None if raised else steps_compared.first_difference(again)[0] is None
    return steps_compared.OpDeterminism(identical, tuple(dict.fromkeys(raised)), len(again))
