"""Results of comparing a current run with a golden one: data first, printing last."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TensorComparison:
    """How one recorded array (a stage output or a probe) differs from its golden value."""

    name: str
    kind: str  # "stage" | "probe"
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class DetectionChange:
    """One golden or current detection and what became of it."""

    kind: str  # "matched" | "added" | "removed" | "class_changed"
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DetectionDiff:
    """Detection-level comparison (greedy per-class matching, highest score first, IoU >= 0.5)."""

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
    noise: float  # score noise used for fragility (max |score delta| seen among candidates)

    @property
    def same(self) -> bool:
        return self.added == 0 and self.removed == 0 and self.class_changed == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changes"] = [c.to_dict() for c in self.changes]
        return d
