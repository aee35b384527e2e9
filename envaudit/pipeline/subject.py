"""What a check runs and compares: the ``Subject`` protocol, and the data that crosses it.

A subject is the thing whose numbers a check watches: envaudit's canary detector
(``canary.py``) or the user's own model (``own_model.py``); a training step is next. A subject is
opened on a verified golden bundle (every bad input refused before TensorFlow is imported), runs
itself on the recorded inputs with the canary probes beside it, compares its arrays with the
golden's in each execution mode it checks, and describes itself for the result. Everything after
that -- the probes' comparison, the verdict, the fingerprint diff, ranking, confirmation,
bisection, the ``CheckResult`` -- is the composer's (``compose.py``) and exists once.

Constraints for a new subject: ``open`` must refuse bad input with ``EnvauditError`` before any
TensorFlow import; ``run`` returns arrays under the same names the golden bundle stores them by;
``compare`` decides nothing about the probes (the composer compares them); a re-run child must be
able to run the subject again from ``rerun_child``'s arguments alone (``attribute/confirm.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from envaudit.compare.types import DEFAULT_GROWTH_TARGET
from envaudit.workload.types import keyed_arrays

if TYPE_CHECKING:
    from envaudit.compare.types import DetectionDiff, ModeResult, TensorComparison
    from envaudit.provenance import RecordedElsewhere
    from envaudit.result import SubjectInfo
    from envaudit.store import GoldenBundle
    from envaudit.tf32 import Tf32Option
    from envaudit.usermodel.spec import DetectionNames, Tolerances

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CheckOptions:
    """What the user asked of a check (``envaudit check``'s options, ``envaudit.check()``'s
    arguments)."""

    repeat: int = 1
    confirm: bool = True
    strict: bool = False
    bisect: bool = False
    modes: Sequence[str] | None = None  # the canary's execution modes (None: all recorded)
    model: str | None = None  # where the user's model is now, when it moved
    tolerances: Tolerances | None = None
    detections: DetectionNames | None = None
    tf32: Tf32Option = "default"  # TensorFlow's TF32 switch here and in re-runs (``tf32.py``)
    growth_target: float = DEFAULT_GROWTH_TARGET  # training: the difference growth is projected to


@dataclass(frozen=True)
class SubjectRun:
    """One run of a subject here: its arrays in each execution mode that ran, the canary probes
    run beside it, and the device that computed each array."""

    stages: Mapping[str, Mapping[str, np.ndarray]]  # mode -> array name -> array, mode order
    probes: Mapping[str, np.ndarray]
    devices: Mapping[str, str]  # ``keyed_arrays`` key -> "CPU:0", "GPU:0", ...
    not_run: Mapping[str, str] = field(default_factory=dict)  # mode -> why it could not run
    timings: Mapping[str, float] = field(default_factory=dict)  # the subject's own (e.g. load)
    native: Any = None  # the subject's own record of the run, for its ``compare``

    def keyed(self) -> dict[str, np.ndarray]:
        """Every array under its ``keyed_arrays`` key (digests, nondeterminism, re-runs)."""
        return keyed_arrays(self.stages, self.probes)


class Subject(Protocol):
    """One kind of thing a check runs (module docstring)."""

    bundle: GoldenBundle
    modes: tuple[str, ...]  # the execution modes checked, in registry order
    golden: Mapping[str, Mapping[str, np.ndarray]]  # mode -> the golden's arrays in that mode

    def run(self, repeat: int, progress: Progress) -> list[SubjectRun]:
        """Run ``repeat`` times on the recorded inputs, the canary probes beside each run."""
        ...

    def compare(self, run: SubjectRun, spread: float
                ) -> tuple[tuple[TensorComparison, ...], tuple[ModeResult, ...]]:
        """This run's arrays against the golden, mode by mode: each array's comparison and each
        mode's verdict, first divergence and detections. ``spread``: the run-to-run noise."""
        ...

    def describe(self, probes: Sequence[TensorComparison]) -> SubjectInfo:
        """What the result says about the subject (``probes``: the compared canary probes)."""
        ...

    def headline(self, verdict: str, stages: Sequence[TensorComparison],
                 probes: Sequence[TensorComparison], modes: Sequence[ModeResult],
                 info: SubjectInfo, detections: DetectionDiff, first: str | None,
                 top_cause: str | None) -> str:
        """One sentence a person understands at a glance (``detections``: those the result
        reports first; ``first``: the first divergent array; ``top_cause``: the best cause in
        words)."""
        ...

    def notes(self, run: SubjectRun) -> tuple[str, ...]:
        """What the user should know about how this golden was checked, one line each."""
        ...

    def provenance(self, seen: Any) -> RecordedElsewhere | None:
        """Whether the golden was recorded on other hardware or another TensorFlow build than
        ``seen`` (this machine's fingerprint, redacted as the golden's was)."""
        ...

    def rerun_child(self) -> AbstractContextManager[tuple[str, ...]]:
        """A context: the extra arguments of a re-run child that runs this subject again (the
        files it needs live while the context is open)."""
        ...

    def identity(self) -> str:
        """What a re-run computes on, for the environment bisection's result cache."""
        ...
