"""``CheckResult``: everything a check found, as data. Renderers format it; JSON comes from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from envaudit.attribute.bisect import Bisection
from envaudit.attribute.types import Cause, Unreachable
from envaudit.compare.conversion import ConversionGap
from envaudit.compare.training import TrainingReport
from envaudit.compare.types import (
    DetectionDiff,
    DigestComparison,
    FirstDivergence,
    ModeResult,
    Nondeterminism,
    PrecisionWitness,
    StageReplay,
    TensorComparison,
    plain,
)
from envaudit.compare.verdict import VERDICTS, Verdict
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.provenance import RecordedElsewhere
from envaudit.runtimes import RuntimeCheck
from envaudit.tf32 import Tf32Check
from envaudit.usermodel.spec import ModelInfo

SCHEMA = "envaudit.check/2"

__all__ = ["SCHEMA", "VERDICTS", "CanaryInfo", "CheckResult", "FirstDivergence", "ModeResult",
           "ModelCheckInfo", "Nondeterminism", "OfflineComparison", "StageReplay",
           "SubjectInfo"]


EMPTY_DETECTIONS = DetectionDiff(0, 0, 0, 0, 0, 0, 0.0, None, 0.0, (), 0.0)


@dataclass(frozen=True)
class CanaryInfo:
    """The subject checked was envaudit's canary detector (its stages have a float64 twin)."""

    kind: Literal["canary"] = "canary"
    model: None = None  # no user model
    witness: None = None  # the canary's precision is judged against its twin, stage by stage
    basis: str = ""
    # The canary's training steps, step by step (None: the golden recorded none, or no mode that
    # trains was checked); their arrays are among the result's stages, with the role "step".
    training: TrainingReport | None = None
    # Each converted mode checked (tflite, onnx) against the graph mode of the same run, and
    # what converted and ran it against what the golden recorded.
    conversion: tuple[ConversionGap, ...] = ()
    runtimes: tuple[RuntimeCheck, ...] = ()


@dataclass(frozen=True)
class ModelCheckInfo:
    """The subject checked was the user's model: which one, and what its verdict rests on."""

    model: ModelInfo  # identity, signature, inputs, outputs, layers, detections
    witness: PrecisionWitness  # fp32 precision measured by the canary probes beside it
    basis: str  # what the verdict rests on, in words
    kind: Literal["user-model"] = "user-model"
    # The model's own training steps, step by step (None: its golden recorded none); their
    # arrays are among the result's stages, with the role "step".
    training: TrainingReport | None = None
    # A model recorded in a converted mode: against the model run as recorded here (its own
    # mode, ``ModelInfo``), and what converted and ran it against the golden's.
    conversion: tuple[ConversionGap, ...] = ()
    runtimes: tuple[RuntimeCheck, ...] = ()


SubjectInfo = CanaryInfo | ModelCheckInfo

# What ``envaudit compare`` compared: two golden bundles (every array, as a check compares them)
# or two check JSONs (their arrays' digests only).
OfflineInputs = Literal["bundles", "check_json"]


@dataclass(frozen=True)
class OfflineComparison:
    """The result compares two recordings offline (``envaudit compare``): A, the golden, with B.
    Nothing ran: no stage was replayed alone, so which later stages changed by themselves is not
    known; no cause was re-run, so causes are likely or possible, never confirmed; between two
    check JSONs only digests are compared, so a difference has no size. ``said`` puts that in
    sentences, decided once (``pipeline/offline.py``); every format shows them."""

    inputs: OfflineInputs
    current_path: str  # B (A is the result's ``golden_path``)
    left_out: tuple[str, ...]  # what only one side recorded, not compared, a phrase each
    said: tuple[str, ...]  # what the comparison could and could not tell, a sentence each
    # Whether the environment changes between A and B are known: from two bundles' fingerprints,
    # or from two check JSONs of the same golden (what each changed against it).
    fingerprints_compared: bool = True
    digests: DigestComparison | None = None  # two check JSONs: their arrays by digest


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
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
    confirmation_skipped: bool = False  # --no-confirm on a result that is not identical
    # The confirmation re-runs started, one child each, by what they put back, in order.
    reruns: tuple[str, ...] = ()
    modes: tuple[ModeResult, ...] = ()  # per execution mode, in mode order
    moved_modes: tuple[str, ...] = ()  # modes that ran and are not identical
    golden_schema: str = ""  # the golden bundle's schema ("envaudit.golden/1": eager only)
    notes: tuple[str, ...] = ()  # one line each, said on stderr by the CLI (e.g. eager only)
    # What was checked: the canary detector, or the user's model with what its verdict rests on.
    subject: SubjectInfo = field(default_factory=lambda: CanaryInfo())
    # Changes that cannot have moved what moved (they reach another kind of device), not ranked.
    cannot_affect: tuple[Unreachable, ...] = ()
    bisection: Bisection | None = None  # environment bisection of package changes (--bisect)
    # This run's arrays by ``keyed_arrays`` key -> ``tensors.digest``: equal digests, equal bits.
    array_digests: Mapping[str, str] = field(default_factory=dict)
    golden_sha256: str = ""  # the golden manifest's own checksum: which golden, for the history
    timings: Mapping[str, float] = field(default_factory=dict)
    # When this golden was last identical here and what changed since, from the history (None:
    # not looked up, e.g. --no-history).
    since_last_identical: str | None = None
    # The golden came from other hardware or another TensorFlow build than this machine's (what
    # differs, and how to record a baseline here), or None; renderers show its line first.
    recorded_elsewhere: RecordedElsewhere | None = None
    # TF32 as the golden recorded it and as this run had it (``envaudit/tf32.py``); None only for
    # a result made without a run.
    tf32: Tf32Check | None = None
    # Both whole fingerprints, for redaction (it hides their host names and secrets everywhere)
    # and for renderers that show them; not part of the JSON, which carries their ids.
    golden_fingerprint: Fingerprint | None = field(default=None, metadata={"json": False})
    current_fingerprint: Fingerprint | None = field(default=None, metadata={"json": False})
    # Two recordings compared offline (``envaudit compare``), or None for a check; in the JSON
    # only when present.
    offline: OfflineComparison | None = None

    def by_mode(self) -> list[tuple[str | None, list[TensorComparison],
                                    FirstDivergence | None, str | None]]:
        """The stage comparisons by execution mode: (mode, its stages, its first divergence, why
        it did not run or None). One unnamed group for a result without per-mode results."""
        if not self.modes:
            return [(None, list(self.stages), self.first_divergence, None)]
        return [(m.mode, [s for s in self.pipeline_stages if s.mode == m.mode],
                 m.first_divergence, m.not_run) for m in self.modes]

    @property
    def pipeline_stages(self) -> tuple[TensorComparison, ...]:
        """The stages without the training steps' arrays (those are reported step by step, from
        ``subject.training``)."""
        return tuple(s for s in self.stages if s.role != "step")

    @property
    def training(self) -> TrainingReport | None:
        return self.subject.training

    @property
    def command(self) -> str:
        """The command whose result this is, as a report's title names it: "check", or
        "compare" for two recordings compared offline."""
        return "check" if self.offline is None else "compare"

    @property
    def digests_only(self) -> bool:
        """Two check JSONs compared by digest: no array was compared by value, so the result
        has no stages, probes, detections or causes to show."""
        return self.offline is not None and self.offline.digests is not None

    def to_dict(self) -> dict[str, Any]:
        """The check JSON (docs/json.md): this result's fields, with the golden's path
        and id grouped; the whole fingerprints stay out (their ids are in)."""
        fields = plain(self)
        # A training step's arrays are summed up step by step under "training" (their digests
        # are in "array_digests"); "stages" keeps the pipeline's.
        fields["stages"] = plain(self.pipeline_stages)
        golden = {"path": fields.pop("golden_path"),
                  "fingerprint_id": fields.pop("golden_fingerprint_id")}
        if fields["offline"] is None:  # a check's JSON: its schema as it always was
            del fields["offline"]
        # The subject's fields stand where they always stood: "workload" says which subject.
        flat = {}
        for key, value in fields.items():
            if key == "subject":
                flat.update({"workload": value.pop("kind"), **value})
            else:
                flat[key] = value
        return {"schema": SCHEMA, "verdict": flat.pop("verdict"),
                "exit_code": flat.pop("exit_code"), "headline": flat.pop("headline"),
                "golden": golden, **flat}
