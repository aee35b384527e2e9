"""Training steps compared: each step's verdict, the first moved step and array, and how a
difference grows from step to step.

A training run records, per step, arrays named ``stepK.PART[.VARIABLE]`` (``workload/training.py``
for the canary's; a user's own step names its parts). Rounding differences in a training step do
not stay put: the next step starts from weights that already differ, so a difference of one unit
of rounding in the first gradient can grow into a different model. ``growth`` measures that as a
curve -- the relative difference of all weights together, step by step -- and fits its doubling
time on the steps where it grows, so "1e-9 becomes a different model" is a number of steps, not a
guess. NumPy only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envaudit.compare.types import DEFAULT_GROWTH_TARGET, FINDINGS, TensorComparison
from envaudit.compare.verdict import SEVERITY, Verdict, classify
from envaudit.plain import plain

_STEP = re.compile(r"step(\d{1,6})\.([A-Za-z_]+)(?:\.(.+))?")
# What the growth curve is measured on: the variables after each step.
WEIGHTS = "var"
MIN_RISE = 0.1  # the least rise over the measured steps that is called growth


def parse(name: str) -> tuple[int, str, str | None] | None:
    """``step3.grad.stem.conv`` -> (3, "grad", "stem.conv"); None for a name of no step."""
    match = _STEP.fullmatch(name)
    return (int(match.group(1)), match.group(2), match.group(3)) if match else None


def step_of(name: str) -> int | None:
    parsed = parse(name)
    return parsed[0] if parsed else None


@dataclass(frozen=True)
class StepResult:
    """One training step of one mode: its verdict alone and its first array that moved."""

    step: int
    verdict: Verdict
    first_moved: str | None  # in recording order: batch, loss, gradients, variables
    moved: int  # how many of its arrays are not bit-identical
    arrays: int
    largest: str | None  # the array that moved most, relative to its scale
    largest_rel: float  # its max |current - golden| / max |golden|

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @property
    def first_moved_part(self) -> str | None:
        """What the first moved array is, in words ("a gradient (backward pass)"); None when
        nothing moved."""
        return part_in_words(self.first_moved) if self.first_moved else None


# A report's step table lists every step of a run this long or shorter; a longer run is folded
# (``shown_steps``): 100 rows of "identical" or of the same drift say nothing row 3 did not.
FOLD_STEPS_ABOVE = 12


@dataclass(frozen=True)
class ShownSteps:
    """The rows a report shows of one mode's steps, and how many steps are folded before each."""

    rows: tuple[StepResult, ...]
    folded_before: tuple[int, ...]  # per row: the steps left out just before it

    @property
    def folded(self) -> int:
        return sum(self.folded_before)


def shown_steps(steps: Sequence[StepResult], limit: int = FOLD_STEPS_ABOVE) -> ShownSteps:
    """Every step of a run of at most ``limit`` steps; of a longer one: the steps up to and
    including the first that moved (just the first step and that one, when it comes later than
    ``limit``), every step whose verdict differs from the step before, and the last."""
    if len(steps) <= limit:
        return ShownSteps(tuple(steps), (0,) * len(steps))
    moved = next((i for i, s in enumerate(steps) if s.first_moved), 0)
    keep = set(range(moved + 1)) if moved < limit else {0, moved}
    keep |= {i for i in range(1, len(steps)) if steps[i].verdict != steps[i - 1].verdict}
    keep.add(len(steps) - 1)
    rows = sorted(keep)
    before = [rows[0]] + [b - a - 1 for a, b in zip(rows, rows[1:])]
    return ShownSteps(tuple(steps[i] for i in rows), tuple(before))


def step_results(compared: Sequence[TensorComparison]) -> tuple[StepResult, ...]:
    """Each step's verdict and first moved array, from one mode's comparisons (recording order)."""
    by_step: dict[int, list[TensorComparison]] = {}
    for c in compared:
        step = step_of(c.name)
        if step is not None:
            by_step.setdefault(step, []).append(c)
    results = []
    for step, arrays in sorted(by_step.items()):
        moved = [c for c in arrays if not c.identical]
        largest = max(moved, key=lambda c: c.max_rel, default=None)
        results.append(StepResult(step, classify(arrays, ()), moved[0].name if moved else None,
                                  len(moved), len(arrays), largest.name if largest else None,
                                  largest.max_rel if largest else 0.0))
    return tuple(results)


@dataclass(frozen=True)
class Growth:
    """How the relative weight difference between two runs grows, step by step."""

    steps: tuple[int, ...]
    relative: tuple[float, ...]  # ||w - w_golden|| / ||w_golden|| over all weights, per step
    doubling_steps: float | None  # steps for the difference to double (None: it does not grow)
    target: float  # the size the difference is projected to
    reaches_target_at: float | None  # the step it reaches ``target`` (measured or projected)
    measured: bool  # whether ``reaches_target_at`` was measured rather than projected

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @property
    def last(self) -> float:
        return self.relative[-1] if self.relative else 0.0


def relative_difference(golden: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray]
                        ) -> float:
    """||current - golden|| / ||golden|| over every array of ``golden`` together, in float64 (a
    missing or reshaped array counts as entirely different)."""
    num = den = 0.0
    for name, g in golden.items():
        g64 = g.astype(np.float64)
        c = current.get(name)
        diff = g64 if c is None or c.shape != g.shape else c.astype(np.float64) - g64
        num += float(np.sum(diff * diff))
        den += float(np.sum(g64 * g64))
    return math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)


def weights_by_step(arrays: Mapping[str, np.ndarray], part: str = WEIGHTS
                    ) -> dict[int, dict[str, np.ndarray]]:
    """The arrays of ``part`` (the weights after each step, by default), step by step."""
    steps: dict[int, dict[str, np.ndarray]] = {}
    for name, array in arrays.items():
        parsed = parse(name)
        if parsed and parsed[1] == part:
            steps.setdefault(parsed[0], {})[name] = array
    return dict(sorted(steps.items()))


def growth(golden: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray],
           target: float = DEFAULT_GROWTH_TARGET) -> Growth | None:
    """The growth curve of ``current``'s weights away from ``golden``'s (None: no step records
    weights). The doubling time is fitted (least squares on log2 of the difference) over the steps
    from the first that differs; a difference that shrinks or stays put does not double."""
    if not math.isfinite(target) or target <= 0:
        raise ValueError("the growth target must be a positive number")
    golden_steps, current_steps = weights_by_step(golden), weights_by_step(current)
    steps = tuple(s for s in golden_steps if s in current_steps)
    if not steps:
        return None
    relative = tuple(relative_difference(golden_steps[s], current_steps[s]) for s in steps)
    doubling = _doubling_steps(steps, relative)
    reached = next((s for s, r in zip(steps, relative) if r >= target), None)
    if reached is not None:
        return Growth(steps, relative, doubling, target, float(reached), True)
    projected = None
    if doubling is not None and relative[-1] > 0:
        projected = steps[-1] + doubling * math.log2(target / relative[-1])
    return Growth(steps, relative, doubling, target, projected, False)


def _doubling_steps(steps: Sequence[int], relative: Sequence[float]) -> float | None:
    points = [(s, math.log2(r)) for s, r in zip(steps, relative) if r > 0 and math.isfinite(r)]
    if len(points) < 2:
        return None
    xs = np.array([p[0] for p in points], np.float64)
    ys = np.array([p[1] for p in points], np.float64)
    slope = float(np.polyfit(xs, ys, 1)[0])
    # A fitted rise of less than 10% over the steps measured is the difference holding still
    # (float noise in the fit), not a doubling time of billions of steps.
    if slope * (xs[-1] - xs[0]) < math.log2(1 + MIN_RISE):
        return None
    return 1.0 / slope


@dataclass(frozen=True)
class TrainingMode:
    """One mode's training steps against the golden's."""

    mode: str
    steps: tuple[StepResult, ...]
    growth: Growth | None
    first_moved_step: int | None = None  # the first step with an array that moved
    first_moved: str | None = None  # its first array that moved
    device: str | None = None  # where this run computed the steps' loss ("CPU:0", "GPU:0")

    @classmethod
    def of(cls, mode: str, steps: tuple[StepResult, ...], growth: Growth | None,
           device: str | None = None) -> TrainingMode:
        first = next((s for s in steps if s.first_moved), None)
        return cls(mode, steps, growth, first.step if first else None,
                   first.first_moved if first else None, device)

    @property
    def verdict(self) -> Verdict:
        """The most severe verdict of any of its steps (what a report marks the mode's steps
        with)."""
        return max((s.verdict for s in self.steps), key=SEVERITY.index, default="identical")

    def shown(self) -> ShownSteps:
        """The steps a report lists (``shown_steps``)."""
        return shown_steps(self.steps)

    def step_arrays(self, arrays: Sequence[TensorComparison]
                    ) -> dict[int, tuple[TensorComparison, ...]]:
        """This mode's training arrays (role ``step``) among ``arrays`` (a check's stages), by
        step: what a step's pass or failure is judged on."""
        by_step: dict[int, list[TensorComparison]] = {}
        for a in arrays:
            step = step_of(a.name) if a.role == "step" and a.mode == self.mode else None
            if step is not None:
                by_step.setdefault(step, []).append(a)
        return {step: tuple(members) for step, members in sorted(by_step.items())}


@dataclass(frozen=True)
class OpDeterminism:
    """The same runs again with TensorFlow's op determinism on
    (``tf.config.experimental.enable_op_determinism``): what raised, and whether the runs then
    agree bit for bit (None: they could not run)."""

    identical: bool | None
    raised: tuple[str, ...]  # TensorFlow's own words for each op that refused to run
    processes: int

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class Determinism:
    """``--repeat N`` of training: N fresh processes in this one environment, compared bit for
    bit; where they differ, the first step and array, and what op determinism changed."""

    processes: int
    seconds: float
    deterministic: bool
    first_step: int | None
    first_array: str | None  # the first array (recording order) that differs between processes
    differing: int  # how many arrays differ
    op_determinism: OpDeterminism | None = None
    suspects: tuple[str, ...] = ()  # known kernels that may explain it (possible, not confirmed)
    # Each run a fresh process (the canary's ``--repeat``), or all in one process
    # (``envaudit.training.determinism``: they share that process's kernel choices).
    fresh_processes: bool = True

    @property
    def first_part(self) -> str | None:
        """What the first differing array is, in words (None: the processes agreed)."""
        return part_in_words(self.first_array.rsplit("/", 1)[-1]) if self.first_array else None

    @property
    def fix_confirmed(self) -> bool:
        """Op determinism made the processes agree: the confirmed fix."""
        return bool(self.op_determinism and self.op_determinism.identical)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class TrainingReport:
    """What a check of training steps found, beside the arrays' own comparisons."""

    steps: int
    settings: Mapping[str, str]
    modes: tuple[TrainingMode, ...]
    determinism: Determinism | None = None

    @property
    def verdict(self) -> Verdict:
        """The most severe verdict of any step in any mode."""
        return max((m.verdict for m in self.modes), key=SEVERITY.index, default="identical")

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


def first_difference(runs: Sequence[Mapping[str, np.ndarray]]) -> tuple[str | None, int]:
    """The first array (the first run's order) on which any run differs from the first, and how
    many arrays differ."""
    from envaudit.compare.tensors import bit_identical

    first, count = None, 0
    for name, base in runs[0].items():
        if any(name not in other or not bit_identical(other[name], base) for other in runs[1:]):
            first = first or name
            count += 1
    return first, count


PARTS = {"batch": "the augmented batch (input pipeline)", "loss": "the loss (forward pass)",
         "grad": "a gradient (backward pass)", "var": "a weight (the update)"}


def part_in_words(name: str) -> str:
    """What a recorded training array is, in words (``step1.grad.stem.conv`` -> "a gradient
    (backward pass)")."""
    parsed = parse(name)
    return PARTS.get(parsed[1], parsed[1]) if parsed else name


def first_moved_mode(report: TrainingReport) -> TrainingMode | None:
    """The mode whose training moved earliest (by step, then by mode order)."""
    moved = [m for m in report.modes if m.first_moved_step is not None]
    return min(moved, key=lambda m: (m.first_moved_step, report.modes.index(m)), default=None)


def training_phrase(report: TrainingReport) -> str:
    """A clause for a headline: whether the training steps moved, where first, how far by the
    last step."""
    steps = f"{report.steps} training step{'s' if report.steps != 1 else ''}"
    first = first_moved_mode(report)
    if first is None:
        return f"all {steps} bit-identical"
    others = [m.mode for m in report.modes if m.first_moved_step is not None and m is not first]
    text = (f"training moved from step {first.first_moved_step} on, first in"
            f" {part_in_words(first.first_moved or '')} '{first.first_moved}' in {first.mode}"
            f" mode" + (f" (also {', '.join(others)})" if others else ""))
    beyond = next((s.step for s in first.steps if s.verdict in FINDINGS), None)
    if beyond is not None:
        text += f", beyond rounding noise from step {beyond}"
    if first.growth is not None and first.growth.relative:
        text += (f"; after step {first.growth.steps[-1]} the weights differ by"
                 f" {first.growth.last:.1e} relative")
    return text
