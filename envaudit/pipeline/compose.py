"""The one check pipeline: verify, run, compare, explain, and build the ``CheckResult``.

``check()`` opens the golden bundle's subject (the canary or the user's model, ``subject.py``),
runs it here, captures this environment's fingerprint while the arrays are compared, compares the
canary probes and judges the verdict, then explains a difference (``explain.py``: device reach,
ranking, confirmation re-runs, bisection). Every step after the subject's own run and comparison is
written once, here, for every subject. It returns a ``CheckResult`` and prints nothing. The golden
bundle and everything the subject needs are verified before TensorFlow is imported, so bad input
fails in milliseconds.

``envaudit compare`` (``offline.py``) uses the same steps on two recordings: its subject's run is
golden bundle B's recorded arrays (``compare_runs``, ``environment_changes``, ``build_result``),
and two check JSONs compared by digest are made a result here too (``digest_result``). Every
``CheckResult`` is constructed in ``_made``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from envaudit.compare import digests, localize
from envaudit.compare.probes import compare_probes
from envaudit.compare.tensors import digest, placed
from envaudit.compare.types import (
    DEFAULT_GROWTH_TARGET,
    DetectionDiff,
    DigestComparison,
    FirstDivergence,
    ModeResult,
    Nondeterminism,
    TensorComparison,
)
from envaudit.compare.verdict import Verdict, classify, exit_code, worst
from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.pipeline.explain import Explanation, explain
from envaudit.pipeline.subject import CheckOptions, Subject, SubjectRun
from envaudit.provenance import RecordedElsewhere
from envaudit.result import EMPTY_DETECTIONS, CheckResult, OfflineComparison
from envaudit.store import GoldenBundle, load_bundle, resolve_golden
from envaudit.tf32 import (
    Tf32Check,
    Tf32Option,
    compare_tf32,
    decide,
    fingerprint_capabilities,
    require_option,
)
from envaudit.usermodel.spec import DetectionNames, Tolerances
from envaudit.workload import tf32_switch

if TYPE_CHECKING:
    from envaudit.pipeline.check_json import CheckRecord

__all__ = ["check", "CheckResult", "open_subject"]


def check(
    golden: str | None = None,
    *,
    repeat: int = 1,
    confirm: bool = True,
    strict: bool = False,
    modes: Sequence[str] | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    model: str | None = None,
    tolerances: Tolerances | None = None,
    detections: DetectionNames | None = None,
    bisect: bool = False,
    tf32: Tf32Option = "default",
    growth_target: float = DEFAULT_GROWTH_TARGET,
) -> CheckResult:
    """Check this environment against a golden bundle (``golden``, else the user's bundle, else
    the shipped reference). A canary bundle is checked in each execution mode of ``modes``
    (default: every mode it recorded); a bundle of a user's model re-runs that model (``model``:
    where it is now, when it moved; ``tolerances``: what differences to accept per output;
    ``detections``: which outputs hold boxes, scores and classes). ``bisect``: confirm or rule out
    package changes by rebuilding environments (``attribute/bisect.py``). ``tf32``: TensorFlow's
    TF32 switch for the run, its replays and every re-run (``default``: TensorFlow's choice).
    Training steps the golden recorded are checked step by step; ``growth_target``: the
    relative weight difference their growth is projected to."""
    if repeat < 1:
        raise EnvauditError("--repeat must be 1 or more")
    require_option(tf32)
    if not (0 < growth_target < float("inf")):
        raise EnvauditError("--growth-target must be a positive number, e.g. 1e-3")
    options = CheckOptions(repeat=repeat, confirm=confirm, strict=strict, bisect=bisect,
                           modes=modes, model=model, tolerances=tolerances,
                           detections=detections, tf32=tf32, growth_target=growth_target)
    started = time.perf_counter()
    path = resolve_golden(golden)
    progress("verifying the golden bundle")
    subject = open_subject(load_bundle(path), options)
    from envaudit.fingerprint import capture

    with tf32_switch.switched(tf32), ThreadPoolExecutor(1) as pool:
        runs = subject.run(repeat, progress)
        ran = time.perf_counter()
        # Captured after every TensorFlow run (so the libraries it loaded are listed), while
        # the arrays are compared (the replays under the same TF32 switch).
        captured = pool.submit(capture)
        progress("comparing")
        found = compare_runs(subject, runs)
        switch = tf32_switch.reading()
        fingerprint = captured.result()
    found = replace(found, tf32=compare_tf32(subject.bundle.tf32, decide(
        tf32, *switch, runs[0].devices.values(), fingerprint_capabilities(fingerprint))))
    changes, elsewhere = environment_changes(subject, fingerprint)
    compared = time.perf_counter()
    explanation = explain(subject, found, changes, fingerprint, options, progress)
    finished = time.perf_counter()
    timings = {**runs[0].timings, "workload": ran - started, "compare": compared - ran,
               "confirm": finished - compared, "total": finished - started}
    return build_result(subject, found, explanation,
                        Environment(fingerprint, changes, elsewhere), options, timings)


def open_subject(bundle: GoldenBundle, options: CheckOptions) -> Subject:
    """The subject a golden bundle recorded, opened on it (bad input refused here)."""
    if bundle.is_user_model:
        from envaudit.pipeline.own_model import OwnModel

        return OwnModel(bundle, options)

    from envaudit.pipeline.canary import Canary

    return Canary(bundle, options)


@dataclass(frozen=True)
class Found:
    """What the comparison found, before any cause is ranked."""

    run: SubjectRun  # the first run: the one compared and reported
    stages: tuple[TensorComparison, ...]  # placed on the devices that computed them
    probes: tuple[TensorComparison, ...]
    modes: tuple[ModeResult, ...]
    verdict: Verdict
    nondeterminism: Nondeterminism | None
    tf32: Tf32Check | None = None  # TF32 in the golden and in this run

    @property
    def families(self) -> tuple[str, ...]:
        """The probe families that are not bit-identical."""
        return tuple(sorted({p.family for p in self.probes if not p.identical}))

    @property
    def moved_modes(self) -> tuple[str, ...]:
        return tuple(m.mode for m in self.modes if m.moved)

    @property
    def first_divergence(self) -> FirstDivergence | None:
        first = next((m for m in self.modes if m.first_divergence), None)
        return first.first_divergence if first else None

    @property
    def on_gpu(self) -> bool:
        """Whether a GPU computed any array of this run."""
        return any(device.startswith("GPU") for device in self.run.devices.values())

    @property
    def differing(self) -> tuple[TensorComparison, ...]:
        return tuple(a for a in (*self.stages, *self.probes) if not a.identical)

    @property
    def detections(self) -> DetectionDiff:
        """The detections a check reports first: of the first mode whose boxes changed, else of
        the first mode that moved at all, else of the first mode that ran."""
        ran = [m for m in self.modes if m.detections is not None]
        if not ran:
            return EMPTY_DETECTIONS
        changed = next((m for m in ran if not m.detections.same), None)
        moved = next((m for m in ran if m.detections.changes), None)
        return (changed or moved or ran[0]).detections


def compare_runs(subject: Subject, runs: Sequence[SubjectRun]) -> Found:
    """The first run against the golden: its spread over the repeats, the subject's own arrays
    mode by mode, the canary probes; each mode judged on its own, the probes on their own."""
    nondeterminism = (localize.nondeterminism([r.keyed() for r in runs])
                      if len(runs) > 1 else None)
    spread = nondeterminism.max_spread if nondeterminism else 0.0
    run, bundle = runs[0], subject.bundle
    stages, modes = subject.compare(run, spread)
    probes = compare_probes(bundle.probes, run.probes, spread)
    stages = placed(stages, bundle.devices, run.devices)
    probes = placed(probes, bundle.devices, run.devices)
    verdict = worst([*(m.verdict for m in modes), classify((), probes)])
    return Found(run, stages, probes, modes, verdict, nondeterminism)


def environment_changes(subject: Subject, fingerprint: Fingerprint, redacted: bool = False
             ) -> tuple[tuple[Change, ...], RecordedElsewhere | None]:
    """This environment as the golden's was recorded (redacted alike when it was), what changed,
    and whether the golden came from elsewhere. ``redacted``: ``fingerprint`` was itself stored
    redacted (a bundle compared offline), so the golden's is redacted alike for the diff."""
    from envaudit.fingerprint import diff
    from envaudit.fingerprint.redact import like

    bundle = subject.bundle
    seen = like(bundle.fingerprint, bool(bundle.manifest.get("redacted")), fingerprint)
    golden = like(fingerprint, redacted, bundle.fingerprint)
    return tuple(diff(golden, seen)), subject.provenance(seen)


@dataclass(frozen=True)
class Environment:
    """The environment compared with the golden's: its fingerprint, what changed, and whether
    the golden came from other hardware or another build."""

    fingerprint: Fingerprint
    changes: tuple[Change, ...]
    elsewhere: RecordedElsewhere | None


def build_result(subject: Subject, found: Found, explained: Explanation, env: Environment,
                 options: CheckOptions, timings: dict[str, float],
                 offline: OfflineComparison | None = None) -> CheckResult:
    """The one place a ``CheckResult`` is built from a subject's comparison: a check's, or two
    recordings' compared offline (``offline``: what that comparison could not do)."""
    bundle, first, causes = subject.bundle, found.first_divergence, explained.causes
    info = subject.describe(found.probes)
    top = f"{causes[0].change} ({causes[0].label})" if causes else None
    return _made(
        found.verdict, options, offline,
        headline=subject.headline(found.verdict, found.stages, found.probes, found.modes, info,
                                  found.detections, first.stage if first else None, top),
        golden_path=str(bundle.path),
        golden_sha256=str(bundle.manifest["manifest_sha256"]),
        golden_fingerprint_id=bundle.fingerprint.fingerprint_id,
        current_fingerprint_id=env.fingerprint.fingerprint_id,
        fingerprint_changes=env.changes,
        stages=found.stages,
        probes=found.probes,
        changed_probe_families=found.families,
        first_divergence=first,
        detections=found.detections,
        causes=causes,
        cannot_affect=explained.cannot_affect,
        bisection=explained.bisection,
        array_digests={k: digest(v) for k, v in found.run.keyed().items()},
        nondeterminism=found.nondeterminism,
        confirmation_ran=bool(explained.reruns),
        reruns=explained.reruns,
        modes=found.modes,
        moved_modes=found.moved_modes,
        golden_schema=bundle.schema,
        notes=(*subject.notes(found.run), *explained.notes),
        subject=info,
        recorded_elsewhere=env.elsewhere,
        tf32=found.tf32,
        golden_fingerprint=bundle.fingerprint,
        current_fingerprint=env.fingerprint,
        timings=timings,
    )


def digest_result(golden: CheckRecord, current: CheckRecord, compared: DigestComparison,
                  changes: tuple[Change, ...], offline: OfflineComparison, *, strict: bool,
                  seconds: float) -> CheckResult:
    """The ``CheckResult`` of two check JSONs compared by digest (``check_json.py``): A's run is
    the golden, B's the current one. No array was compared by value, so it holds no stages,
    probes, detections or causes; its verdict is what digests support
    (``DigestComparison.verdict``)."""
    first = digests.first_divergence(compared, golden.digests)
    moved = digests.moved_modes(compared)
    return _made(
        compared.verdict, CheckOptions(strict=strict, confirm=False), offline,
        headline=digests.headline(compared, first, moved),
        golden_path=golden.path,
        golden_fingerprint_id=golden.fingerprint_id,
        current_fingerprint_id=current.fingerprint_id,
        fingerprint_changes=changes,
        stages=(),
        probes=(),
        changed_probe_families=(),
        first_divergence=first,
        detections=EMPTY_DETECTIONS,
        causes=(),
        nondeterminism=None,
        confirmation_ran=False,
        moved_modes=moved,
        array_digests=dict(current.digests),
        timings={"compare": seconds, "total": seconds},
    )


def _made(verdict: Verdict, options: CheckOptions, offline: OfflineComparison | None,
          **fields: Any) -> CheckResult:
    """The one construction of a ``CheckResult``, for a subject's comparison and for two checks
    compared by digest: the exit code follows from the verdict and --strict, and confirmation
    counts as skipped only where it could have run (--no-confirm on a check that moved; offline,
    nothing can be re-run)."""
    return CheckResult(verdict=verdict, exit_code=exit_code(verdict, options.strict),
                       strict=options.strict, offline=offline,
                       confirmation_skipped=(not options.confirm and verdict != "identical"
                                             and offline is None), **fields)
