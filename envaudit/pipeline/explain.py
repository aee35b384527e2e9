"""Why the numbers moved, for any subject: device reach, ranking, confirmation re-runs, bisection.

Nothing here is said with more confidence than a run proved: ranking alone says "likely" or
"possible" (``attribute/rank.py``); only a re-run that put a change back and reproduced the golden
bits says "confirmed" (``attribute/trials.py``); a package change is confirmed or ruled out only
by rebuilding an environment (``attribute/bisect.py``). Re-runs re-run only the modes that moved
(the probes always run): with none, the first mode that ran keeps the child's work meaningful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envaudit.attribute import reach
from envaudit.attribute.bisect import Bisection, apply_bisection, bisection_note, run_bisection
from envaudit.attribute.confirm import Experiment, run_experiments
from envaudit.attribute.rank import rank_causes
from envaudit.attribute.reach import DeviceEvidence
from envaudit.attribute.trials import confirm_causes
from envaudit.attribute.types import Cause, Unreachable
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.pipeline.subject import CheckOptions, Progress, Subject
from envaudit.tf32 import child_arguments, suspected
from envaudit.workload.types import keyed_arrays

if TYPE_CHECKING:
    from envaudit.pipeline.compose import Found

SECOND_PROCESS = "nothing changed (a second process)"


@dataclass(frozen=True)
class Explanation:
    causes: tuple[Cause, ...] = ()
    cannot_affect: tuple[Unreachable, ...] = ()
    bisection: Bisection | None = None
    reruns: tuple[str, ...] = ()  # the confirmation re-runs started, in order
    notes: tuple[str, ...] = ()


def explain(subject: Subject, found: Found, changes: Sequence[Change], fingerprint: Fingerprint,
            options: CheckOptions, progress: Progress) -> Explanation:
    """The causes of what ``found`` shows, ranked, then confirmed or ruled out by re-runs as
    ``options`` allow (nothing to explain when everything is identical)."""
    if found.verdict == "identical":
        return Explanation()
    bundle = subject.bundle
    causes, suspects, devices = ranked(subject, found, changes)
    tf32_args = child_arguments(options.tf32)  # every child computes under the same switch
    ran = found.moved_modes or tuple(m for m in subject.modes if m in found.run.stages)[:1]
    golden_arrays = keyed_arrays({m: subject.golden[m] for m in ran}, bundle.probes)
    bisection = None
    with subject.rerun_child() as subject_child:
        child = (*subject_child, *tf32_args)
        # Without --no-confirm the same plan marks what a re-run could have decided ("likely,
        # not yet confirmed").
        confirmation = confirm_causes(
            causes, suspects, bundle.fingerprint, fingerprint, golden_arrays,
            len(found.differing), run=options.confirm, progress=progress, modes=ran,
            child=child, on_gpu=found.on_gpu)
        causes, reruns = list(confirmation.causes), confirmation.reruns
        if options.bisect:
            bisection = run_bisection(
                bundle.fingerprint, fingerprint, golden_arrays,
                keyed_arrays({m: found.run.stages[m] for m in ran}, found.run.probes), ran,
                extra=child, identity=" ".join((subject.identity(), *tf32_args)),
                progress=progress)
            causes = apply_bisection(causes, bisection)
        second = (another_process(golden_arrays, ran, child, progress)
                  if found.on_gpu and options.confirm and not any(c.numerics for c in suspects)
                  else None)
    return Explanation(tuple(causes), tuple(reach.unreachable(changes, devices)), bisection,
                       (*reruns, *([SECOND_PROCESS] if second else [])),
                       tuple(filter(None, [bisection_note(bisection), second])))


def ranked(subject: Subject, found: Found, changes: Sequence[Change]
           ) -> tuple[list[Cause], tuple[Change, ...], DeviceEvidence | None]:
    """The causes of what ``found`` shows ranked from the evidence alone ("likely" or
    "possible"), the suspects they were ranked from, and where the arrays that moved were
    computed: what a check confirms next, and all that ``envaudit compare`` says offline."""
    first = found.first_divergence
    devices = reach.evidence(list(found.differing), subject.bundle.fingerprint)
    # TF32 is no fingerprint field: where it can explain lost precision on a GPU, it is ranked
    # and confirmed as a change of its own (``tf32.suspected``).
    suspects = (*changes, *filter(None, [suspected(found.tf32, found.differing)]))
    causes = rank_causes(suspects, found.families, first.stage if first else None,
                         first.changed_stages if first else (), found.verdict == "precision_loss",
                         moved_modes=found.moved_modes, checked_modes=subject.modes,
                         devices=devices)
    return causes, suspects, devices


def another_process(golden_arrays: Mapping[str, np.ndarray], modes: Sequence[str],
                    child: Sequence[str], progress: Progress) -> str:
    """What a second process in this very environment says, when a GPU computed what moved and
    nothing numerics-relevant changed: cuDNN and XLA choose kernels by timing them in each
    process, so one process can differ from another on the same machine. A repeat inside this
    process would reuse its choices; only another process separates that noise from a change."""
    [outcome] = run_experiments([Experiment(SECOND_PROCESS, {}, ())], golden_arrays, progress,
                                modes, child, on_gpu=True)
    if outcome.error:
        return f"a second process in this same environment could not tell: {outcome.error}"
    if outcome.identical:
        return ("a second process in this same environment reproduced the golden bits: the"
                " difference is this process's own GPU kernel choice (cuDNN and XLA autotune by"
                " timing, per process), not the environment; check again to see how often")
    return ("a second process in this same environment did not reproduce the golden bits"
            f" either ({len(outcome.differing)} arrays differ): not one process's kernel choice")
