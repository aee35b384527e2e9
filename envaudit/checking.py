"""The one place a check is composed: workload + golden store + comparison + attribution.

(Named ``checking`` rather than ``check`` so that importing it never replaces the public
``envaudit.check()`` function with a module of the same name.)

``check()`` runs the workload here, captures this environment's fingerprint, compares both with a
golden bundle and explains the difference. It returns a ``CheckResult``; it prints nothing. The
golden bundle and the workload assets are verified before TensorFlow is imported, so a bad bundle
fails in milliseconds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envaudit.attribute import reach
from envaudit.attribute.bisect import Bisection, apply_bisection, bisection_note, run_bisection
from envaudit.attribute.rank import rank_causes
from envaudit.attribute.trials import confirm_causes
from envaudit.attribute.types import Cause, Unreachable
from envaudit.compare import localize
from envaudit.compare.detections import decision_noise, match_detections
from envaudit.compare.probes import compare_probes
from envaudit.compare.tensors import bit_identical, compare_arrays, digest, placed
from envaudit.compare.types import DetectionDiff, ModeResult, TensorComparison
from envaudit.compare.verdict import classify, exit_code, headline, worst
from envaudit.errors import EnvauditError
from envaudit.provenance import recorded_elsewhere
from envaudit.result import CheckResult
from envaudit.store import (
    REFERENCE_BUNDLE,
    SCHEMA_V1,
    GoldenBundle,
    load_bundle,
    resolve_golden,
)
from envaudit.usermodel.spec import DetectionNames, Tolerances
from envaudit.workload import detections_from_nms
from envaudit.workload.architecture import (
    EAGER_COMPATIBLE_VERSIONS,
    MODES,
    WORKLOAD_ID,
    WORKLOAD_VERSION,
)
from envaudit.workload.assets import Assets, load_assets, used_checksums
from envaudit.workload.spec import validate_golden
from envaudit.workload.types import Candidates, WorkloadResult, keyed_arrays

__all__ = ["check", "CheckResult"]


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
) -> CheckResult:
    """Check this environment against a golden bundle (``golden``, else the user's bundle, else
    the shipped reference), in each execution mode of ``modes`` (default: every mode the bundle
    recorded). A bundle of a user's model re-runs that model (``model``: where it is now, when it
    moved; ``tolerances`` and ``detections``: see ``usermodel/check.py``). ``bisect``: confirm or
    rule out package changes by rebuilding environments (``attribute/bisect.py``)."""
    if repeat < 1:
        raise EnvauditError("--repeat must be 1 or more")
    started = time.perf_counter()
    path = resolve_golden(golden)
    progress("verifying the golden bundle")
    bundle = load_bundle(path)
    if bundle.is_user_model:
        if modes is not None:
            raise EnvauditError("--modes applies to the canary workload; a user model is checked"
                                " in the mode it was recorded in")
        from envaudit.usermodel.check import check_model

        found = check_model(bundle, model=model, tolerances=tolerances, detections=detections,
                            repeat=repeat, confirm=confirm, strict=strict, progress=progress,
                            bisect=bisect)
        return _with_provenance(found, bundle)
    for option, value in (("--model", model), ("--tolerance", tolerances),
                          ("--detections", detections)):
        if value is not None:
            raise EnvauditError(f"{option} applies to a golden of your own model; {path} was"
                                " recorded from envaudit's canary workload")
    assets = load_assets()
    _require_same_workload(bundle, assets)
    validate_golden(str(path), bundle.stages_by_mode, bundle.probes, bundle.twin,
                    bundle.detections if bundle.schema == SCHEMA_V1 else None)
    checked = _checked_modes(bundle, modes)

    from envaudit.fingerprint import capture, diff
    from envaudit.workload import replay_stages, run_workload

    runs: list[WorkloadResult] = []
    for i in range(repeat):
        progress("running the workload" + (f" ({i + 1}/{repeat})" if repeat > 1 else ""))
        runs.append(run_workload(assets, modes=checked))
    current = runs[0]
    workload_done = time.perf_counter()
    fingerprint = capture()
    from envaudit.fingerprint.redact import like

    # Against a bundle recorded redacted, this side is compared redacted the same way.
    seen = like(bundle.fingerprint, bool(bundle.manifest.get("redacted")), fingerprint)
    changes = diff(bundle.fingerprint, seen)
    elsewhere = recorded_elsewhere(bundle.fingerprint, seen, shipped=_is_shipped(path))

    progress("comparing")
    nondeterminism = localize.nondeterminism(
        [keyed_arrays({m: mr.stages for m, mr in r.runs.items()}, r.probes) for r in runs]
    ) if repeat > 1 else None
    spread = nondeterminism.max_spread if nondeterminism else 0.0
    probes = compare_probes(bundle.probes, current.probes, spread)
    stages: list[TensorComparison] = []
    mode_results: list[ModeResult] = []
    for mode in checked:
        compared_stages, result = _check_mode(mode, bundle, assets, current, spread,
                                              replay_stages)
        stages += compared_stages
        mode_results.append(result)
    devices_now = current.devices
    stages_t = placed(stages, bundle.devices, devices_now)
    probes = placed(probes, bundle.devices, devices_now)
    families = tuple(sorted({p.family for p in probes if not p.identical}))
    # Each mode is judged on its own stages and boxes; the probes (eager ops) on their own.
    verdict = worst([*(m.verdict for m in mode_results), classify((), probes)])
    moved = tuple(m.mode for m in mode_results if m.verdict not in ("identical", "not_run"))
    first_mode = next((m for m in mode_results if m.first_divergence), None)
    first = first_mode.first_divergence if first_mode else None
    detections = _headline_detections(mode_results)
    compared = time.perf_counter()

    causes: list[Cause] = []
    cannot_affect: list[Unreachable] = []
    bisection: Bisection | None = None
    confirmation_ran = False
    reruns: tuple[str, ...] = ()
    if verdict != "identical":
        devices = reach.evidence([a for a in (*stages_t, *probes) if not a.identical],
                                 bundle.fingerprint)
        cannot_affect = reach.unreachable(changes, devices)
        causes = rank_causes(changes, families, first.stage if first else None,
                             first.changed_stages if first else (), verdict == "precision_loss",
                             moved_modes=moved, checked_modes=checked, devices=devices)
        # Only the modes that moved need re-running (the probes always run); with none, the
        # first mode that ran keeps the child's work meaningful. Without --no-confirm the same
        # plan marks what a re-run could have decided ("likely, not yet confirmed").
        ran = moved or tuple(m for m in checked if m in current.runs)[:1]
        confirmation = confirm_causes(
            causes, changes, bundle.fingerprint, fingerprint,
            keyed_arrays({m: bundle.stages_by_mode[m] for m in ran}, bundle.probes),
            sum(not a.identical for a in (*stages_t, *probes)), run=confirm, progress=progress,
            modes=ran)
        causes, reruns = list(confirmation.causes), confirmation.reruns
        confirmation_ran = bool(reruns)
        if bisect:
            ran = moved or tuple(m for m in checked if m in current.runs)[:1]
            bisection = run_bisection(
                bundle.fingerprint, fingerprint,
                keyed_arrays({m: bundle.stages_by_mode[m] for m in ran}, bundle.probes),
                keyed_arrays({m: current.runs[m].stages for m in ran}, current.probes),
                ran, identity=f"{WORKLOAD_ID} {WORKLOAD_VERSION}", progress=progress)
            causes = apply_bisection(causes, bisection)
    top = f"{causes[0].change} ({causes[0].label})" if causes else None
    finished = time.perf_counter()
    return CheckResult(
        verdict=verdict,
        exit_code=exit_code(verdict, strict),
        headline=headline(verdict, stages_t, probes, detections,
                          first_divergence=first.stage if first else None, top_cause=top,
                          modes=tuple(mode_results)),
        golden_path=str(path),
        golden_sha256=str(bundle.manifest["manifest_sha256"]),
        golden_fingerprint_id=bundle.fingerprint.fingerprint_id,
        current_fingerprint_id=fingerprint.fingerprint_id,
        fingerprint_changes=tuple(changes),
        stages=stages_t,
        probes=probes,
        changed_probe_families=families,
        first_divergence=first,
        detections=detections,
        causes=tuple(causes),
        cannot_affect=tuple(cannot_affect),
        bisection=bisection,
        array_digests={k: digest(v) for k, v in keyed_arrays(
            {m: r.stages for m, r in current.runs.items()}, current.probes).items()},
        nondeterminism=nondeterminism,
        confirmation_ran=confirmation_ran,
        reruns=reruns,
        confirmation_skipped=not confirm and verdict != "identical",
        strict=strict,
        modes=tuple(mode_results),
        moved_modes=moved,
        golden_schema=bundle.schema,
        notes=(*_notes(bundle, checked),
               *filter(None, [bisection_note(bisection)])),
        recorded_elsewhere=elsewhere,
        golden_fingerprint=bundle.fingerprint,
        current_fingerprint=fingerprint,
        timings={
            "workload": workload_done - started,
            "compare": compared - workload_done,
            "confirm": finished - compared,
            "total": finished - started,
        },
    )


def _is_shipped(path: Path) -> bool:
    """Whether ``path`` is envaudit's own reference bundle (recorded on the maintainers'
    machine, not the user's)."""
    try:
        return path.resolve() == REFERENCE_BUNDLE.resolve()
    except OSError:
        return False


def _with_provenance(result: CheckResult, bundle: GoldenBundle) -> CheckResult:
    """A user model's result with where its golden was recorded (decided as for the canary)."""
    if result.current_fingerprint is None:
        return result
    from envaudit.fingerprint.redact import like

    seen = like(bundle.fingerprint, bool(bundle.manifest.get("redacted")),
                result.current_fingerprint)
    return dataclasses.replace(result, recorded_elsewhere=recorded_elsewhere(
        bundle.fingerprint, seen, user_model=True))


def _notes(bundle: GoldenBundle, checked: Sequence[str]) -> tuple[str, ...]:
    """What the user should know about how this golden was checked, one line each."""
    notes = []
    if bundle.schema == SCHEMA_V1:
        notes.append(f"golden bundle {bundle.path} has schema {SCHEMA_V1} (envaudit 0.1): checked"
                     " in eager mode only; re-record it with 'envaudit record --golden PATH"
                     " --force' to check graph and xla modes too")
    for mode, why in bundle.not_run.items():
        notes.append(f"the golden recorded no {mode} mode: {why}")
    return tuple(notes)


def _checked_modes(bundle: GoldenBundle, requested: Sequence[str] | None) -> tuple[str, ...]:
    """The modes to check: those asked for (all the bundle has by default), each one the bundle
    recorded; a schema-1 bundle has the eager mode only."""
    if requested is None:
        return bundle.modes
    unknown = [m for m in requested if m not in MODES]
    if unknown:
        raise EnvauditError(f"unknown mode {', '.join(unknown)}; choose from {', '.join(MODES)}")
    missing = [m for m in requested if m not in bundle.modes]
    if missing:
        how = (" (it has schema 1, eager mode only: re-record it with 'envaudit record --golden"
               " PATH --force' to record every mode)" if bundle.schema == SCHEMA_V1 else "")
        raise EnvauditError(f"golden bundle {bundle.path} did not record mode"
                            f" {', '.join(missing)}{how}; choose from {', '.join(bundle.modes)}")
    return tuple(m for m in MODES if m in requested)


def _check_mode(mode: str, bundle: GoldenBundle, assets: Assets, current: WorkloadResult,
                spread: float,
                replay: Callable[..., dict[str, np.ndarray]]
                ) -> tuple[tuple[TensorComparison, ...], ModeResult]:
    """One mode's stages compared, localized by replay in that mode, its detections matched."""
    golden = bundle.stages_by_mode[mode]
    run = current.runs.get(mode)
    if run is None:
        reason = current.not_run.get(mode, f"{mode} mode did not run")
        stages = compare_arrays("stage", golden, {}, spread=spread, mode=mode)
        return stages, ModeResult(mode, "not_run", None, None, reason)
    stages = compare_arrays(
        "stage", golden, run.stages, spread=spread, mode=mode,
        references=_current_twin(bundle, assets, run.stages["decode"]),
        golden_references=_current_twin(bundle, assets, golden["decode"]))
    golden_candidates = Candidates(boxes=golden["boxes"], scores=golden["scores"])
    noise = max(decision_noise(golden_candidates, run.candidates), spread)
    detections = match_detections(detections_from_nms(golden["nms"]), run.detections,
                                  noise=noise, golden_candidates=golden_candidates)
    differing = [s.name for s in stages if not s.identical]
    first = localize.first_divergence(
        stages, golden, replay(assets, golden, differing, mode=mode) if differing else {})
    return stages, ModeResult(mode, classify(stages, (), detections), first, detections)


def _headline_detections(modes: Sequence[ModeResult]) -> DetectionDiff:
    """The detections a check reports first: of the first mode whose boxes changed, else of the
    first mode that moved at all, else of the first mode that ran."""
    ran = [m for m in modes if m.detections is not None]
    if not ran:
        return DetectionDiff(0, 0, 0, 0, 0, 0, 0.0, None, 0.0, (), 0.0)
    changed = next((m for m in ran if not m.detections.same), None)
    moved = next((m for m in ran if m.detections.changes), None)
    return (changed or moved or ran[0]).detections


def _require_same_workload(bundle: GoldenBundle, assets: Assets) -> None:
    """A bundle of another workload or other assets cannot be compared bit for bit."""
    recorded: Mapping[str, Any] = bundle.manifest.get("workload", {})
    version = recorded.get("version")
    compatible = version == WORKLOAD_VERSION or (
        bundle.schema == SCHEMA_V1 and version in EAGER_COMPATIBLE_VERSIONS)
    if recorded.get("id") != WORKLOAD_ID or not compatible:
        raise EnvauditError(
            f"golden bundle {bundle.path} was recorded with workload {recorded.get('id')}"
            f" v{recorded.get('version')}, this envaudit runs {WORKLOAD_ID} v{WORKLOAD_VERSION};"
            " re-record it with 'envaudit record --golden PATH --force'")
    now = used_checksums(assets)
    for name, recorded_sha in recorded.get("assets", {}).items():
        if now.get(name) != recorded_sha:
            raise EnvauditError(
                f"golden bundle {bundle.path} was recorded with other workload assets ({name}"
                f" sha256 {recorded_sha[:16]}..., now {str(now.get(name))[:16]}...); re-record it"
                " with 'envaudit record --golden PATH --force'")


def _current_twin(bundle: GoldenBundle, assets: Assets,
                  decoded: np.ndarray) -> Mapping[str, np.ndarray]:
    """The float64 reference for a run that decoded ``decoded``: the golden twin unless decoding
    changed."""
    if bit_identical(bundle.stages["decode"], decoded):
        return bundle.twin
    from envaudit.workload.twin import Twin

    return Twin(assets.weights).run(decoded)
