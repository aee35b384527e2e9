"""``envaudit compare A B``: two recordings compared offline, running nothing.

Two golden bundles (one recorded on the GPU box, one on the CPU box, say): A is the golden, and
B's recorded arrays are the run. They are compared by the check pipeline's own steps
(``compose.compare_runs``, ``environment_changes``, ``build_result``) through the subjects of
``recorded.py``, so the statuses, first divergence, detections and verdict are the ones
``envaudit check`` would give for B's environment against A. The fingerprint diff is A's against
B's, and where either bundle was recorded redacted the other is redacted the same way. Causes are
ranked from the evidence, as a check ranks them, but never confirmed: nothing is re-run and nothing
is bisected. No stage is replayed alone. Every format says so (``OfflineComparison.said``).

Two check JSONs (``envaudit check --format json``) are compared by their arrays' digests
(``check_json.py``).

Both bundles are verified by the store (a corrupt or tampered bundle is refused) and their content
never picks a path or code. A and B must hold the same subject: the same canary workload and
assets, or the same model on the same inputs. Only the modes both recorded are compared, and what
was left out is said. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from envaudit import modes as registry
from envaudit.attribute import reach
from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Change
from envaudit.pipeline.compose import (
    Environment,
    Found,
    build_result,
    compare_runs,
    environment_changes,
)
from envaudit.pipeline.explain import Explanation, ranked
from envaudit.pipeline.recorded import (
    RecordedCanary,
    RecordedModel,
    other_model,
    training_left_out,
)
from envaudit.pipeline.subject import CheckOptions, Subject
from envaudit.provenance import recorded_elsewhere
from envaudit.result import CheckResult, OfflineComparison
from envaudit.store import MANIFEST, GoldenBundle, load_bundle
from envaudit.tf32 import Tf32Check, Tf32State, compare_tf32

_WHAT = "pass two golden bundle folders ('envaudit record') or two check JSON files"
NOT_REPLAYED = ("not replayed: compared offline, no stage was run alone on golden inputs, so which"
                " stages after the first divergence changed by themselves is not known")
NOT_CONFIRMED = ("causes are ranked from the evidence and never confirmed: nothing is re-run"
                 " offline; to confirm one, run 'envaudit check --golden A' where B was recorded")


def compare(a: str, b: str, *, strict: bool) -> CheckResult:
    """A (the golden) against B, both golden bundles or both check JSON files."""
    kinds = _input_kind(a), _input_kind(b)
    if kinds[0] != kinds[1]:
        which = "A is a golden bundle and B a file" if kinds[0] == "bundle" else \
            "A is a file and B a golden bundle"
        raise EnvauditError(f"{which}: {_WHAT}, never one of each")
    if kinds[0] == "file":
        from envaudit.pipeline.check_json import compare_checks

        return compare_checks(a, b, strict=strict)
    return compare_bundles(Path(a), Path(b), strict=strict)


def compare_bundles(a: Path, b: Path, *, strict: bool) -> CheckResult:
    """Golden bundle A against golden bundle B (module docstring)."""
    started = time.perf_counter()
    golden, recorded = load_bundle(a), load_bundle(b)
    subject, left_out = _opened(golden, recorded)
    found = compare_runs(subject, subject.run(1, lambda _m: None))
    found = replace(found, tf32=_tf32(golden, recorded))
    changes, _ = environment_changes(subject, recorded.fingerprint,
                                     redacted=bool(recorded.manifest.get("redacted")))
    offline = OfflineComparison(inputs="bundles", current_path=str(recorded.path),
                                left_out=left_out,
                                said=_said(golden, recorded, found, left_out))
    seconds = time.perf_counter() - started
    return build_result(subject, found, _ranked(subject, found, changes),
                        Environment(recorded.fingerprint, changes, None),
                        CheckOptions(strict=strict, confirm=False),
                        {"compare": seconds, "total": seconds}, offline)


def _input_kind(path: str) -> str:
    """"bundle" for a folder, "file" for anything else that exists; refused when nothing is
    there."""
    target = Path(path)
    if target.is_dir():
        if not (target / MANIFEST).is_file():
            raise EnvauditError(f"{path} is a folder without {MANIFEST}, not a golden bundle;"
                                f" {_WHAT}")
        return "bundle"
    if not target.exists():
        raise EnvauditError(f"{path} does not exist; {_WHAT}")
    return "file"


def _opened(golden: GoldenBundle, recorded: GoldenBundle) -> tuple[Subject, tuple[str, ...]]:
    """A's subject, its run B's recording, and what only one of them recorded (left out);
    refused when A and B do not hold the same subject or share no mode."""
    if golden.is_user_model != recorded.is_user_model:
        kinds = ["a model of your own" if b.is_user_model else "envaudit's canary workload"
                 for b in (golden, recorded)]
        raise EnvauditError(f"A and B cannot be compared: A recorded {kinds[0]}, B {kinds[1]};"
                            " compare two bundles of the same workload")
    if not golden.is_user_model:
        _require_same_workload(golden, recorded)
    modes = registry.in_order([m for m in golden.modes if m in recorded.modes])
    if not modes:
        raise EnvauditError(f"A and B cannot be compared: they share no mode (A recorded"
                            f" {', '.join(golden.modes)}, B {', '.join(recorded.modes)})")
    left_out = [f"{m} mode (only {side} recorded it)"
                for side, bundle in (("A", golden), ("B", recorded))
                for m in bundle.modes if m not in modes]
    training = training_left_out(golden, recorded, modes)
    left_out += [training] if training else []
    if not golden.is_user_model:
        return RecordedCanary(golden, recorded, modes, not training), tuple(left_out)
    subject = RecordedModel(golden, recorded, not training)
    other = other_model(subject)
    if other:
        raise EnvauditError(f"A and B cannot be compared: {other}; compare two bundles of the"
                            " same model on the same inputs")
    return subject, tuple(left_out)


def _require_same_workload(golden: GoldenBundle, recorded: GoldenBundle) -> None:
    """Two canary bundles of another workload version or other assets cannot be compared bit
    for bit (the subject then holds each to this envaudit's workload)."""
    a, b = (bundle.manifest.get("workload", {}) for bundle in (golden, recorded))
    if (a.get("id"), a.get("version")) != (b.get("id"), b.get("version")):
        raise EnvauditError(f"A and B cannot be compared: A was recorded with workload"
                            f" {a.get('id')} v{a.get('version')}, B with {b.get('id')}"
                            f" v{b.get('version')}; record both with the same envaudit")
    if a.get("assets") != b.get("assets"):
        raise EnvauditError("A and B cannot be compared: they were recorded with other workload"
                            " assets; record both with the same envaudit")


def _tf32(golden: GoldenBundle, recorded: GoldenBundle) -> Tf32Check | None:
    """TF32 as A and B recorded it, said of A and B (None: B recorded no TF32 state)."""
    a, b = golden.tf32, recorded.tf32
    if b is None:
        return None
    def said(state: Tf32State, side: str) -> str:  # the reason without its "applies: "
        return f"{state.words} in {side} (--tf32 {state.option}; {state.reason.partition(': ')[2]})"

    there = "not recorded in A" if a is None else said(a, "A")
    return replace(compare_tf32(a, b), line=f"TF32 {said(b, 'B')}, {there}")


def _ranked(subject: Subject, found: Found, changes: tuple[Change, ...]) -> Explanation:
    """The causes of what ``found`` shows, ranked as a check ranks them (``explain.ranked``),
    and the changes that cannot reach what moved; nothing confirmed."""
    if found.verdict == "identical":
        return Explanation()
    causes, _suspects, devices = ranked(subject, found, changes)
    return Explanation(tuple(causes), tuple(reach.unreachable(changes, devices)))


def _said(golden: GoldenBundle, recorded: GoldenBundle, found: Found,
          left_out: tuple[str, ...]) -> tuple[str, ...]:
    """What this comparison could and could not tell, one sentence each."""
    said = [f"A is golden bundle {golden.path}, the golden; B is golden bundle {recorded.path},"
            " whose recorded arrays stand for the run a check would make"]
    elsewhere = recorded_elsewhere(golden.fingerprint, recorded.fingerprint)
    if elsewhere is not None:
        said.append(f"A and B were recorded on different machines or builds"
                    f" ({'; '.join(elsewhere.details)})")
    if found.verdict != "identical":
        said += [NOT_REPLAYED, NOT_CONFIRMED]
    if left_out:
        said.append(f"not compared (only one side recorded it): {'; '.join(left_out)}")
    return tuple(said)
