"""The conversion gap: how far a converted model (tflite, onnx) is from the model it was converted
from, measured in the same run, in the same environment.

A check compares each mode with its own golden; that says whether the deployed model changed, not
whether it was ever faithful. The gap answers the second question for the thing actually deployed:
every stage (a user model's layers and outputs) of the converted mode against the same array of
the reference mode (``modes.CONVERTED_FROM``, graph: the traced form the converters read), each
one's error against the float64 twin where the canary has one (so "the converted model is worse"
and "it is merely different" are told apart), the first array that differs and the first beyond
rounding noise, and the detections matched by IoU image by image.

Statuses are the check's own (``noise.array_status`` through ``compare_arrays``), with one rule of
the gap's: a mode that gives up precision on purpose (``ExecutionMode.precision``: float16 weights,
int8 weights) has every difference classified as that precision loss, expected and said so --
never drift, and never a failing check (the gap is a finding, not a gate; the converted mode's own
comparison with its golden gates).

Plain data and NumPy; the comparisons are made by ``compare.tensors`` and ``compare.detections``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from envaudit import modes as registry
from envaudit.compare.detections import match_detections
from envaudit.compare.tensors import compare_arrays
from envaudit.compare.types import DetectionDiff, TensorComparison, Verdict
from envaudit.compare.verdict import classify
from envaudit.workload.types import Detections

ACCEPTED = ("identical", "rounding")


@dataclass(frozen=True)
class ConversionGap:
    """One converted mode against its reference mode, in one run."""

    mode: str  # the converted mode ("tflite")
    reference: str  # the mode it is measured against ("graph")
    status: Verdict  # the arrays and detections together, by the check's own rules
    arrays: tuple[TensorComparison, ...]  # reference as "golden", converted as "current"
    detections: DetectionDiff | None  # the converted detections matched to the reference's
    expected: str | None = None  # the precision the mode gives up on purpose, in words
    runtime: Mapping[str, Any] = field(default_factory=dict)  # what converted and ran it
    # the first array, in pipeline (model) order, that is not bit-identical; the first beyond
    # rounding noise (neither identical nor rounding); both None where there is none
    first_difference: str | None = None
    first_beyond_noise: str | None = None
    words: str = field(init=False)  # one sentence (below), kept as data for the JSON

    def __post_init__(self) -> None:
        object.__setattr__(self, "words", self._sentence())

    @property
    def largest(self) -> TensorComparison | None:
        """The array that differs most (relative to its scale)."""
        moved = [a for a in self.arrays if not a.identical]
        return max(moved, key=lambda a: a.max_rel) if moved else None

    def _sentence(self) -> str:
        """One sentence: how far the converted model is, where it starts, what it does to the
        detections."""
        name = f"{self.mode} against {self.reference}"
        if self.status == "identical":
            return f"{name}: every array bit-identical" + self._boxes()
        largest = self.largest
        assert largest is not None
        said = {"equivalent": "within rounding noise",
                "drift": "drifts beyond rounding noise",
                "precision_loss": "loses precision"}[self.status]
        where = (f"; first differs at {self.first_difference}" +
                 (f", beyond rounding noise from {self.first_beyond_noise}"
                  if self.first_beyond_noise and self.first_beyond_noise != self.first_difference
                  else ""))
        errors = _twin_errors(self.arrays)
        expected = (f" (expected: {self.expected})" if self.expected else "")
        return (f"{name}: {said}{expected}{where}; largest difference {largest.name}"
                f" {_e(largest.max_rel)} relative{errors}" + self._boxes())

    def _boxes(self) -> str:
        d = self.detections
        if d is None:
            return ""
        if d.matched == d.golden == d.current and not d.changes:
            return f"; all {d.golden} detections the same"
        moved = [c for c in d.changes if c.kind == "matched"]
        parts = [f"{d.matched} of {d.golden} detections matched"]
        parts += [f"{n} {what}" for n, what in ((d.added, "added"), (d.removed, "removed"),
                                                (d.class_changed, "changed class")) if n]
        if moved:
            parts.append(f"scores within {_e(d.max_score_delta)}")
        return "; " + ", ".join(parts)


def _e(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1e}"


def _twin_errors(arrays: Sequence[TensorComparison]) -> str:
    """The last array's error against the float64 twin, reference and converted, where known."""
    known = [a for a in arrays if a.golden_error is not None and a.current_error is not None]
    if not known:
        return ""
    last = known[-1]
    return (f"; against the float64 twin at {last.name}: {_e(last.golden_error)}"
            f" (reference) and {_e(last.current_error)} (converted)")


def measure(mode: str, reference: str, reference_arrays: Mapping[str, np.ndarray],
            converted: Mapping[str, np.ndarray], *,
            twin: Mapping[str, np.ndarray] | None = None,
            detections: tuple[Detections, Detections] | None = None,
            score_threshold: float | None = None,
            roles: Mapping[str, Any] | None = None,
            runtime: Mapping[str, Any] | None = None) -> ConversionGap:
    """The gap of ``converted`` (mode ``mode``) from ``reference_arrays`` (mode ``reference``),
    array by array in the reference's order; ``twin``: float64 references by array name;
    ``detections``: (reference's, converted's)."""
    arrays = compare_arrays("stage", reference_arrays, converted, references=twin,
                            golden_references=twin, mode=mode, roles=roles)
    expected = registry.get(mode).precision if mode in registry.names() else None
    if expected:
        arrays = tuple(a if a.status in ACCEPTED or a.status == "not_run"
                       else replace(a, status="precision_loss") for a in arrays)
    matched = (match_detections(detections[0], detections[1], noise=0.0, mode=mode,
                                score_threshold=score_threshold)
               if detections is not None else None)
    status = classify(arrays, (), matched)
    if expected and status == "drift":
        status = "precision_loss"
    return ConversionGap(
        mode, reference, status, arrays, matched, expected, dict(runtime or {}),
        first_difference=next((a.name for a in arrays if not a.identical), None),
        first_beyond_noise=next((a.name for a in arrays if a.status not in ACCEPTED), None))
