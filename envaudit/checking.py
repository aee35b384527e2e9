"""The one place a check is composed: workload + golden store + comparison + attribution.

(Named ``checking`` rather than ``check`` so that importing it never replaces the public
``envaudit.check()`` function with a module of the same name.)

``check()`` runs the workload here, captures this environment's fingerprint, compares both with a
golden bundle and explains the difference. It returns a ``CheckResult``; it prints nothing. The
golden bundle and the workload assets are verified before TensorFlow is imported, so a bad bundle
fails in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from envaudit.attribute.confirm import apply_outcomes, limits, plan, run_experiments
from envaudit.attribute.model import Cause
from envaudit.attribute.rank import rank_causes
from envaudit.compare import localize
from envaudit.compare.detections import decision_noise, match_detections
from envaudit.compare.tensors import bit_identical, compare_arrays
from envaudit.compare.verdict import classify, exit_code, headline
from envaudit.errors import EnvauditError
from envaudit.result import CheckResult
from envaudit.store import GoldenBundle, load_bundle, resolve_golden
from envaudit.workload.architecture import PROBE_FAMILIES, WORKLOAD_ID, WORKLOAD_VERSION
from envaudit.workload.assets import Assets, load_assets, used_checksums
from envaudit.workload.spec import validate_golden
from envaudit.workload.types import Candidates, Detections, WorkloadResult, keyed_arrays

__all__ = ["check", "CheckResult"]


def check(
    golden: str | None = None,
    *,
    repeat: int = 1,
    confirm: bool = True,
    strict: bool = False,
    progress: Callable[[str], None] = lambda _m: None,
) -> CheckResult:
    """Check this environment against a golden bundle (``golden``, else the user's bundle, else
    the shipped reference)."""
    if repeat < 1:
        raise EnvauditError("--repeat must be 1 or more")
    started = time.perf_counter()
    path = resolve_golden(golden)
    progress("verifying the golden bundle")
    bundle = load_bundle(path)
    assets = load_assets()
    _require_same_workload(bundle, assets)
    validate_golden(str(path), bundle.stages, bundle.probes, bundle.twin, bundle.detections)

    from envaudit.fingerprint import capture, diff
    from envaudit.workload import replay_stages, run_workload

    runs: list[WorkloadResult] = []
    for i in range(repeat):
        progress("running the workload" + (f" ({i + 1}/{repeat})" if repeat > 1 else ""))
        runs.append(run_workload(assets, modes=("eager",)))
    current = runs[0]
    workload_done = time.perf_counter()
    fingerprint = capture()
    from envaudit.fingerprint.redact import like

    # Against a bundle recorded redacted, this side is compared redacted the same way.
    changes = diff(bundle.fingerprint, like(bundle.fingerprint, bool(bundle.manifest.get(
        "redacted")), fingerprint))

    progress("comparing")
    nondeterminism = localize.nondeterminism(
        [keyed_arrays({m: mr.stages for m, mr in r.runs.items()}, r.probes) for r in runs]
    ) if repeat > 1 else None
    spread = nondeterminism.max_spread if nondeterminism else 0.0
    stages = compare_arrays("stage", bundle.stages, current.stages,
                            references=_current_twin(bundle, assets, current.stages["decode"]),
                            golden_references=bundle.twin, spread=spread)
    probes = compare_arrays("probe", bundle.probes, current.probes, families=PROBE_FAMILIES,
                            spread=spread)
    golden_candidates = Candidates(boxes=bundle.stages["boxes"], scores=bundle.stages["scores"])
    noise = max(decision_noise(golden_candidates, current.candidates), spread)
    detections = match_detections(_golden_detections(bundle), current.detections, noise=noise,
                                  golden_candidates=golden_candidates)
    differing = [s.name for s in stages if not s.identical]
    first = localize.first_divergence(stages, bundle.stages, replay_stages(
        assets, bundle.stages, differing) if differing else {})
    families = tuple(sorted({p.family for p in probes if not p.identical}))
    verdict = classify(stages, probes, detections)
    compared = time.perf_counter()

    causes: list[Cause] = []
    confirmation_ran = False
    if verdict != "identical":
        causes = rank_causes(changes, families, first.stage if first else None,
                             first.changed_stages if first else (), verdict == "precision_loss")
        if confirm:
            experiments = plan(changes, bundle.fingerprint, fingerprint)
            golden_arrays = keyed_arrays({"eager": bundle.stages}, bundle.probes)
            differing_now = sum(not a.identical for a in (*stages, *probes))
            outcomes = run_experiments(experiments, golden_arrays, progress)
            causes = apply_outcomes(causes, outcomes, differing_now,
                                    limits(changes, bundle.fingerprint, fingerprint))
            confirmation_ran = bool(experiments)
    top = f"{causes[0].change} ({causes[0].confidence})" if causes else None
    finished = time.perf_counter()
    return CheckResult(
        verdict=verdict,
        exit_code=exit_code(verdict, strict),
        headline=headline(verdict, stages, probes, detections,
                          first_divergence=first.stage if first else None, top_cause=top),
        golden_path=str(path),
        golden_fingerprint_id=bundle.fingerprint.fingerprint_id,
        current_fingerprint_id=fingerprint.fingerprint_id,
        fingerprint_changes=tuple(changes),
        stages=stages,
        probes=probes,
        changed_probe_families=families,
        first_divergence=first,
        detections=detections,
        causes=tuple(causes),
        nondeterminism=nondeterminism,
        confirmation_ran=confirmation_ran,
        strict=strict,
        golden_fingerprint=bundle.fingerprint,
        current_fingerprint=fingerprint,
        timings={
            "workload": workload_done - started,
            "compare": compared - workload_done,
            "confirm": finished - compared,
            "total": finished - started,
        },
    )


def _require_same_workload(bundle: GoldenBundle, assets: Assets) -> None:
    """A bundle of another workload or other assets cannot be compared bit for bit."""
    recorded: Mapping[str, Any] = bundle.manifest.get("workload", {})
    if (recorded.get("id"), recorded.get("version")) != (WORKLOAD_ID, WORKLOAD_VERSION):
        raise EnvauditError(
            f"golden bundle {bundle.path} was recorded with workload {recorded.get('id')}"
            f" v{recorded.get('version')}, this envaudit runs {WORKLOAD_ID} v{WORKLOAD_VERSION};"
            " re-record it with 'envaudit record --golden PATH --force'")
    now = used_checksums(assets)
    for name, digest in recorded.get("assets", {}).items():
        if now.get(name) != digest:
            raise EnvauditError(
                f"golden bundle {bundle.path} was recorded with other workload assets ({name}"
                f" sha256 {digest[:16]}..., now {str(now.get(name))[:16]}...); re-record it with"
                " 'envaudit record --golden PATH --force'")


def _golden_detections(bundle: GoldenBundle) -> Detections:
    d = bundle.detections
    return Detections(image=d["image"], boxes=d["boxes"], classes=d["classes"], scores=d["scores"])


def _current_twin(bundle: GoldenBundle, assets: Assets,
                  decoded: np.ndarray) -> Mapping[str, np.ndarray]:
    """The float64 reference for a run that decoded ``decoded``: the golden twin unless decoding
    changed."""
    if bit_identical(bundle.stages["decode"], decoded):
        return bundle.twin
    from envaudit.workload.twin import Twin

    return Twin(assets.weights).run(decoded)
