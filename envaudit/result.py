"""``CheckResult``: everything a check found, as data. Renderers format it; JSON comes from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envaudit.attribute.model import Cause
from envaudit.compare.model import DetectionDiff, TensorComparison
from envaudit.fingerprint.model import Change, Fingerprint

SCHEMA = "envaudit.check/1"
VERDICTS = ("identical", "equivalent", "drift", "precision_loss")


@dataclass(frozen=True)
class StageReplay:
    """A stage fed the golden input of that stage, alone, in this environment."""

    stage: str
    identical: bool  # True: the stage itself computes as before and only carries an earlier change
    max_abs: float


@dataclass(frozen=True)
class FirstDivergence:
    stage: str  # first stage in pipeline order that is not bit-identical
    index: int  # its position in the pipeline
    replay: tuple[StageReplay, ...]  # every non-identical stage, replayed in isolation
    changed_stages: tuple[str, ...]  # stages that changed by themselves (replay not identical)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "index": self.index,
            "changed_stages": list(self.changed_stages),
            "replay": [
                {"stage": r.stage, "identical": r.identical, "max_abs": r.max_abs}
                for r in self.replay
            ],
        }


@dataclass(frozen=True)
class Nondeterminism:
    """Results of ``--repeat N``: did runs in this one environment differ among themselves?"""

    runs: int
    deterministic: bool
    differing_arrays: tuple[str, ...]
    max_spread: float  # largest max-abs difference between any run and the first

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "deterministic": self.deterministic,
            "differing_arrays": list(self.differing_arrays),
            "max_spread": self.max_spread,
        }


@dataclass(frozen=True)
class CheckResult:
    verdict: str  # one of VERDICTS
    exit_code: int
    headline: str  # one sentence a person understands at a glance
    golden_path: str
    golden_fingerprint_id: str
    current_fingerprint_id: str
    fingerprint_changes: tuple[Change, ...]
    stages: tuple[TensorComparison, ...]
    probes: tuple[TensorComparison, ...]
    changed_probe_families: tuple[str, ...]
    first_divergence: FirstDivergence | None
    detections: DetectionDiff
    causes: tuple[Cause, ...]
    nondeterminism: Nondeterminism | None
    confirmation_ran: bool
    strict: bool = False
    timings: Mapping[str, float] = field(default_factory=dict)
    # Both whole fingerprints, for redaction (it hides their host names and secrets everywhere)
    # and for renderers that show them; not part of the JSON, which carries their ids.
    golden_fingerprint: Fingerprint | None = None
    current_fingerprint: Fingerprint | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "headline": self.headline,
            "golden": {
                "path": self.golden_path,
                "fingerprint_id": self.golden_fingerprint_id,
            },
            "current_fingerprint_id": self.current_fingerprint_id,
            "fingerprint_changes": [c.to_dict() for c in self.fingerprint_changes],
            "stages": [s.to_dict() for s in self.stages],
            "probes": [p.to_dict() for p in self.probes],
            "changed_probe_families": list(self.changed_probe_families),
            "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
            "detections": self.detections.to_dict(),
            "causes": [c.to_dict() for c in self.causes],
            "nondeterminism": self.nondeterminism.to_dict() if self.nondeterminism else None,
            "confirmation_ran": self.confirmation_ran,
            "strict": self.strict,
            "timings": dict(self.timings),
        }
