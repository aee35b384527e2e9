"""Which confirmation re-runs a check starts, in which order, and what each cause is marked.

Confirmation spends time only where a re-run can decide. The plan (``confirm_causes``):

- Only ranked causes are re-run, in rank order (``rank.py``): a change that cannot reach what
  moved (another device; only NumPy's float64 references, e.g. ``OPENBLAS_CORETYPE``) is no
  cause, and a cause nothing here can put back (a richer CPU than this one, another GPU, a
  package, a value the settings refuse) gets no child: it is marked "cannot be confirmed here".
- To confirm a cause, its change is put back ALONE: a child with two changes put back that gives
  the golden bits confirms neither. So each candidate needs its own child, and the children go
  in waves of as many as this process has cores, best-ranked first.
- As soon as one of them reproduces the golden bits exactly, the difference is explained: the
  causes ranked below it are not re-run (marked "not re-run", with the reason).
- Only when no single change did, and two or more variables changed, one more child puts all of
  them back together: it tells whether they moved the numbers jointly (then that set is one
  confirmed cause). On a machine with more cores it may run beside the last single ones.
- Experiments whose environments are the same (a variable that is also the ISA cap the emulation
  would set) share one child.

A progress line names each re-run and the time spent: "re-run 2/3 (TF_ENABLE_ONEDNN_OPTS), 9 s".
With --no-confirm the same plan is made and nothing runs: every cause a re-run could test reads
"likely, not yet confirmed", so the headline is the cause confirmation would test first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from envaudit.attribute.confirm import (
    NO_RERUN,
    Experiment,
    Outcome,
    apply_outcomes,
    bisectable,
    limits,
    plan,
    run_experiments,
)
from envaudit.attribute.types import Cause, TrialState
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.modes import DEFAULT as DEFAULT_MODE


@dataclass(frozen=True)
class Confirmation:
    """What the confirmation plan did: the causes, updated and marked, and its children."""

    causes: tuple[Cause, ...]
    reruns: tuple[str, ...]  # each child started, by the name of what it put back, in order


def confirm_causes(
    causes: Sequence[Cause],
    changes: Sequence[Change],
    golden: Fingerprint,
    current: Fingerprint,
    golden_arrays: Mapping[str, np.ndarray],
    differing_now: int,
    *,
    run: bool = True,
    progress: Callable[[str], None] = lambda _m: None,
    modes: Sequence[str] = (DEFAULT_MODE,),
    child: Sequence[str] = (),
    on_gpu: bool = False,
) -> Confirmation:
    """The plan of the module docstring: the re-runs that can decide, best-ranked first, until one
    reproduces the golden bits; with ``run`` False, nothing runs and the causes are only marked
    (``Cause.trial``). ``differing_now``: how many arrays differ in this run; ``on_gpu``:
    never two children at once (``run_experiments``)."""
    experiments = plan(changes, golden, current, causes)
    notes = limits(changes, golden, current)
    if not run:
        return Confirmation(tuple(_marked(causes, experiments, None, notes)), ())
    outcomes = run_experiments(experiments, golden_arrays, progress, modes, child,
                               until_reproduced=True, on_gpu=on_gpu)
    winner = next((o.experiment.label for o in outcomes
                   if o.identical and not o.experiment.joint), None)
    tried = {p for o in outcomes for p in o.experiment.cause_paths}
    if winner:
        for experiment in experiments:
            for path in set(experiment.cause_paths) - tried:
                notes[path] = (f"not re-run: re-running with {winner} already reproduced the"
                               " golden bits")
    updated = apply_outcomes(causes, outcomes, differing_now, notes)
    children = {o.experiment.child_key: o.experiment.name for o in outcomes}
    return Confirmation(tuple(_marked(updated, experiments, outcomes, {})),
                        tuple(children.values()))


def _marked(causes: Sequence[Cause], experiments: Sequence[Experiment],
            outcomes: Sequence[Outcome] | None, notes: Mapping[str, str]) -> list[Cause]:
    """Each cause with its ``trial``: tested, untested (a re-run or a bisection could: with
    ``outcomes`` None nothing ran), not needed (planned, but another change sufficed), or
    untestable (with the reason from ``notes`` added to its evidence)."""
    marked = []
    for cause in causes:
        paths = cause.paths
        planned = any(set(e.cause_paths) & paths for e in experiments)
        trial: TrialState
        evidence = cause.evidence
        if not paths:
            trial = "tested" if cause.confidence == "confirmed" else ""
        elif outcomes and any(set(o.experiment.cause_paths) & paths for o in outcomes):
            trial = "tested"
        elif planned:
            trial = "untested" if outcomes is None else "not_needed"
        elif bisectable(cause) and not set(notes) & paths:
            trial = "untested"
        else:
            trial = "untestable"
            why = next((notes[p] for p in sorted(paths) if p in notes), None)
            if outcomes is None and cause.path:
                evidence = (*evidence, why or NO_RERUN)
        marked.append(replace(cause, trial=trial, evidence=evidence))
    return marked
