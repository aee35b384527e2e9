"""Results of comparing a current run with a golden one: data first, printing last.

Every decision about an array is made once, in ``compare/``, and stored here: its ``status``
(identical, rounding noise, changed, precision loss, not run) and its error growth against the
float64 twin. Renderers map a status to words and colours; they never re-derive it. States are
``Literal`` types so that a misspelt one is a type error, and every ``to_dict`` is derived the
same way (``plain``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from envaudit.plain import plain

# The verdict of a check, or of one execution mode's part of it (rules: ``verdict.py``).
Verdict = Literal["identical", "equivalent", "drift", "precision_loss"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
FINDINGS: tuple[Verdict, ...] = ("drift", "precision_loss")  # verdicts that fail a check (exit 1)
# The size a training difference's growth is projected to (``compare/training.py``): a relative
# weight difference of one part in a thousand, past which two runs are different models by any
# reading. Here, not there, so that the CLI's defaults import no NumPy.
DEFAULT_GROWTH_TARGET = 1e-3
ModeStatus = Literal["ran", "not_run"]
ArrayKind = Literal["stage", "probe"]
# What an array is within what ran: a canary pipeline stage or op probe; a user model's decoded
# input, layer output or output; an array of a training step (``compare/training.py``: reported
# step by step, not in the stage tables). Held on each array as data (whoever produced the array
# knows it), never read back out of the array's name.
ArrayRole = Literal["stage", "input", "layer", "output", "probe", "step"]
ArrayStatus = Literal["identical", "rounding", "tolerated", "changed", "precision_loss",
                      "not_run"]
# Least to most severe; a group of arrays (a probe family) shows its most severe member.
# "tolerated": not identical, within a tolerance the user gave for that output.
STATUS_SEVERITY: tuple[ArrayStatus, ...] = (
    "identical", "rounding", "tolerated", "changed", "not_run", "precision_loss")
# The statuses a check accepts without --strict: bit-identical, at the rounding-noise floor, or
# within a tolerance the user gave; any other is a finding. The one gate rule built on it
# (``fails_gate``) is what the verdict, and so the exit code, and the JUnit failures all read.
ACCEPTED_STATUSES: tuple[ArrayStatus, ...] = ("identical", "rounding", "tolerated")
DetectionKind = Literal["matched", "added", "removed", "class_changed"]
# 16 unit roundoffs (~1e-6 for fp32): relative RMS errors against the float64 twin below this are
# rounding noise however their ratio looks (an exact stage with error 0 against one with error
# 1e-7 is not a finding). The rule is ``noise.at_noise_floor``; the HTML charts draw the line.
EQUIVALENT_SLACK_ULPS = 16.0
# A detection's box is drawn when an edge moves at least half a pixel of the drawn image: an edge
# that moves less lands on the pixel it was drawn on before (it rounds to the same row or column),
# so its box would be drawn over the golden one, a picture of nothing that reads as "moved".
VISIBLE_MOVE_PX = 0.5
# float32's unit roundoff (eps/2 = 2**-24 ~ 6e-8): one rounding to fp32, the noise floor every
# threshold is a multiple of (``units.unit_roundoff`` gives it for float32; the charts draw it).
FP32_UNIT_ROUNDOFF = 2.0 ** -24
# Without a twin: 2048 unit roundoffs (~1.2e-4 of scale for fp32) covers reordered reductions over
# thousands of terms and a few layers of propagation; a real change of kernel math is larger.
# A float array whose max_rel is at most this is rounding noise (``noise.at_noise_floor``); the
# HTML charts draw it as the edge of the rounding-noise band (``ROUNDING_BAND_FP32``).
EQUIVALENT_MAX_REL_ULPS = 2048.0
ROUNDING_BAND_FP32 = EQUIVALENT_MAX_REL_ULPS * FP32_UNIT_ROUNDOFF


def most_severe(statuses: Iterable[ArrayStatus]) -> ArrayStatus:
    """The status a group of arrays (a probe family) shows: its most severe member's."""
    return max(statuses, key=STATUS_SEVERITY.index)


@dataclass(frozen=True)
class TensorComparison:
    """How one recorded array (a stage output or a probe) differs from its golden value."""

    name: str
    kind: ArrayKind
    family: str  # stage name or probe family ("transcendental", "matmul", "conv", ...)
    shape: tuple[int, ...]
    dtype: str
    identical: bool  # byte equality
    max_abs: float
    max_rel: float  # max |current - golden| / max |golden| (scale-relative)
    mismatch_fraction: float  # fraction of elements not bit-equal
    ulp_at_scale: float  # max |diff| in units of the ULP at the tensor's scale
    cosine: float  # cosine similarity of the flattened tensors (1.0 when equal)
    golden_error: float | None  # relative RMS of golden against the float64 twin, if any
    current_error: float | None  # relative RMS of current against the float64 twin, if any
    error_growth: float | None = None  # current_error / golden_error (inf from an exact golden)
    status: ArrayStatus = "changed"  # decided by ``noise.array_status``
    mode: str = "eager"  # the execution mode that computed the array (probes: eager)
    tolerance: str | None = None  # the tolerance the user accepts for it ("rtol 1e-05, atol 0")
    device: str | None = None  # where this run computed it: "CPU:0", "GPU:0" (None: unknown)
    golden_device: str | None = None  # where the golden run did (None: an older bundle)
    # Not in the JSON, whose arrays keep the keys they had; None when built: the kind's own role.
    role: ArrayRole | None = field(default=None, metadata={"json": False})

    def __post_init__(self) -> None:
        if self.role is None:  # a stage of the canary, or a probe
            object.__setattr__(self, "role", self.kind)

    def fails_gate(self, strict: bool = False) -> bool:
        """Whether this array fails a check: its status is not accepted (changed, not run, lost
        precision), or, ``strict``, it is not bit-identical."""
        return self.status not in ACCEPTED_STATUSES or (strict and self.status != "identical")

    @property
    def growth_shown(self) -> float | None:
        """The error growth a report shows beside this array: None when the array is
        bit-identical, its growth is unknown, or exactly 1.0 (the error did not grow)."""
        if self.identical or self.error_growth is None or self.error_growth == 1.0:
            return None
        return self.error_growth

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class PrecisionWitness:
    """Does this environment compute fp32 at full precision? The canary probes' errors against
    their float64 references, measured beside a user model (which has no float64 twin)."""

    probes: int  # probes with a float64 reference
    full_precision: bool  # every one within ``limit_ulps`` here, and none lost precision
    worst_probe: str | None
    worst_error_ulps: float  # its error here, in unit roundoffs of float32
    golden_worst_error_ulps: float  # the largest error of the golden's probes
    limit_ulps: float
    lossy: tuple[str, ...]  # probes whose status is precision_loss

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class DetectionChange:
    """One golden or current detection and what became of it."""

    kind: DetectionKind
    image: int
    golden_class: int | None
    current_class: int | None
    golden_score: float | None
    current_score: float | None
    golden_box: tuple[float, float, float, float] | None
    current_box: tuple[float, float, float, float] | None
    iou: float | None
    margin: float | None  # smallest decision margin behind this detection (fragility)
    expected_fragility: bool  # margin below the measured noise: a near-tie flipped, not a bug

    def move_px(self, width: float, height: float) -> float:
        """The largest move of any edge of this detection's box, in pixels of an image drawn
        ``width`` by ``height``; 0 without both a golden and a current box."""
        if self.golden_box is None or self.current_box is None:
            return 0.0
        scale = (height, width, height, width)  # (ymin, xmin, ymax, xmax), normalized
        return max(abs(c - g) * s for g, c, s in zip(self.golden_box, self.current_box, scale))

    def crosses(self, score_threshold: float | None) -> bool:
        """Whether the current score is on the other side of ``score_threshold`` than the golden
        one (a detection is kept when its score is strictly above); False where not known."""
        if score_threshold is None or self.golden_score is None or self.current_score is None:
            return False
        return (self.golden_score > score_threshold) != (self.current_score > score_threshold)

    def visible_at(self, width: float, height: float,
                   score_threshold: float | None = None) -> bool:
        """Whether a picture that draws its image ``width`` by ``height`` pixels shows this
        change: a box added, removed or changing class, a score crossing the threshold, or an
        edge moving at least ``VISIBLE_MOVE_PX``."""
        return (self.kind != "matched" or self.crosses(score_threshold)
                or self.move_px(width, height) >= VISIBLE_MOVE_PX)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class MissedObject:
    """A ground-truth object of the workload's own scenes that no golden detection found (IoU at
    least ``detections.MATCH_IOU``, any class): the detector misses it, not the environment."""

    image: int
    object_class: int
    box: tuple[float, float, float, float]  # normalized (ymin, xmin, ymax, xmax)
    found_now: bool  # a current detection overlaps it (IoU at least ``MATCH_IOU``, any class)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class DetectionDiff:
    """Detection-level comparison (greedy per-class matching, highest score first, IoU at least
    ``detections.MATCH_IOU``)."""

    golden: int
    current: int
    matched: int
    added: int
    removed: int
    class_changed: int
    max_score_delta: float
    min_iou: float | None  # over matched pairs; None when nothing matched
    max_box_delta: float  # max coordinate delta over matched pairs
    changes: tuple[DetectionChange, ...]  # every non-"matched" entry, plus matched ones that moved
    # The perturbation fragility is judged against: the largest change of a candidate score or
    # of an IoU NMS considered, between the golden and current candidates (or the run-to-run
    # spread of --repeat, if larger).
    noise: float
    mode: str | None = None  # the execution mode whose detections these are (None: not known)
    # The score threshold the detections were cut at (the canary's NMS threshold); None where it
    # is not known (a user's model keeps every score it outputs).
    score_threshold: float | None = None
    # Ground-truth objects no golden detection found, where the workload knows its objects (the
    # canary's scenes); None where it does not (a user's model).
    missed: tuple[MissedObject, ...] | None = None

    @property
    def same(self) -> bool:
        return self.added == 0 and self.removed == 0 and self.class_changed == 0

    def fails_gate(self, strict: bool = False) -> bool:
        """Whether the detections fail a check: a box was added, removed or changed class, or,
        ``strict``, any score or box moved."""
        return not self.same or (strict and bool(self.changes))

    def drawn_at(self, width: float, height: float) -> DrawnDetections:
        """What a picture that draws each image ``width`` by ``height`` pixels shows of these
        changes (``DetectionChange.visible_at``), and what it leaves out."""
        shown = tuple(c for c in self.changes if c.visible_at(width, height, self.score_threshold))
        return DrawnDetections(
            mode=self.mode, width=width, height=height, changes=shown,
            hidden=len(self.changes) - len(shown),
            largest_move_px=max((c.move_px(width, height) for c in self.changes), default=0.0),
            missed=self.missed)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class DrawnDetections:
    """What a picture of a ``DetectionDiff`` draws at one size, and what it leaves out."""

    mode: str | None  # the execution mode whose detections these are (None: not known)
    width: float  # the size one image is drawn at, in pixels
    height: float
    changes: tuple[DetectionChange, ...]  # the changes drawn, in the diff's order
    hidden: int  # changes not drawn: matched boxes that moved less than ``VISIBLE_MOVE_PX``
    largest_move_px: float  # the largest move of any change's box at this size (drawn or not)
    missed: tuple[MissedObject, ...] | None  # ground truth the golden misses (None: not known)

    @property
    def boxes(self) -> int:
        """The rectangles drawn: a golden and a current box per change that has both."""
        return sum((c.golden_box is not None) + (c.current_box is not None) for c in self.changes)


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
    # Where the first moved array is an array of a training step (``compare/training.py``): the
    # step and what the array is, in words, so a report says "training step 1, a gradient"
    # rather than calling it a stage. None for a pipeline stage. Not in the JSON, whose
    # "training" holds the same (``first_moved_step``, ``first_moved``).
    step: int | None = field(default=None, metadata={"json": False})
    part: str | None = field(default=None, metadata={"json": False})

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class ModeResult:
    """One execution mode's part of a check: whether it ran and, when it did, its own verdict,
    where it diverged and its boxes."""

    mode: str
    # This mode's verdict alone; None when it could not run (``status``). The check JSON
    # (envaudit.check/2) spells that "not_run".
    verdict: Verdict | None = field(metadata={"json_if_none": "not_run"})
    first_divergence: FirstDivergence | None
    detections: DetectionDiff | None  # None when the mode did not run
    not_run: str | None = None  # why the mode could not run here

    @property
    def status(self) -> ModeStatus:
        return "not_run" if self.verdict is None else "ran"

    @property
    def moved(self) -> bool:
        """It ran and is not bit-identical."""
        return self.verdict is not None and self.verdict != "identical"

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class Nondeterminism:
    """Results of ``--repeat N``: did runs in this one environment differ among themselves?"""

    runs: int
    deterministic: bool
    differing_arrays: tuple[str, ...]  # array keys, "stage/NAME" or "probe/NAME"
    max_spread: float  # largest max-abs difference between any run and the first

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class DigestGroup:
    """The arrays of one execution mode, or the probes, compared by digest."""

    name: str  # the mode ("eager", ...) or "probes"
    compared: int  # arrays both runs computed
    differing: int  # of those, not bit-identical
    first: str | None  # the first that differs, in the order the golden run computed them


@dataclass(frozen=True)
class DigestComparison:
    """Two runs' arrays compared by the digests two check JSONs hold (``digests.py``): equal
    digests, equal bits. A digest says nothing of by how much two arrays differ, so no array here
    has a magnitude, a status or an error growth."""

    identical: int  # arrays both runs computed, bit-identical
    # Arrays both computed that differ, by ``keyed_arrays`` key: the stages mode by mode
    # (registry order), each mode's in the order the golden run computed them, then the probes.
    differing: tuple[str, ...]
    only_golden: tuple[str, ...]  # arrays only the golden run (A) computed: not compared
    only_current: tuple[str, ...]  # arrays only B computed: not compared
    groups: tuple[DigestGroup, ...]  # the same, mode by mode, then the probes
    golden_verdict: Verdict  # each check's own verdict against the golden it checked
    current_verdict: Verdict
    same_golden: bool  # both checks read the same golden bundle (its manifest's checksum)
    # The size of a difference is known only where A's check was bit-identical to the golden B
    # checked too and neither side computed an array the other did not: then A's arrays are that
    # golden's bits, and B's own check measured B against them.
    magnitude_known: bool

    @property
    def verdict(self) -> Verdict:
        """``identical`` when no array both runs computed differs; B's own verdict where the
        size of the difference is known; else ``drift``: a difference that nothing offline can
        show to be rounding noise."""
        if not self.differing:
            return "identical"
        if self.magnitude_known and self.current_verdict != "identical":
            return self.current_verdict
        return "drift"

    def fails_gate(self, strict: bool = False) -> bool:
        """Whether the differing arrays fail a comparison: its verdict is a finding, or,
        ``strict``, any array differs."""
        return self.verdict in FINDINGS or (strict and bool(self.differing))

    def to_dict(self) -> dict[str, Any]:
        return plain(self)
