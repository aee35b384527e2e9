"""Detection-level diff: which boxes survived, moved, appeared, vanished or changed class, and how
close each decision sat to flipping (fragility).

Matching (docs/design.md, "Detections"): per image, first per class: golden detections in
descending score order (stable sort: equal scores keep their order in the golden arrays, so ties
are decided by the workload's own output order, reproducibly), each takes the unmatched current
detection of the same class with the highest IoU >= ``iou_threshold`` (equal IoUs: the lower
current index). Then the leftovers: a leftover golden and a leftover current that overlap with IoU
>= ``iou_threshold`` are a class change (same greedy order); the rest are removed (golden only) and
added (current only).

Fragility: ``decision_margins`` replays the workload's NMS (per-class greedy, score > score
threshold, IoU > IoU threshold suppresses, then the top ``MAX_DETECTIONS`` per image; checked
against ``tf.image.combined_non_max_suppression``, which drops a score equal to the threshold and
keeps an IoU equal to it) on the golden candidates and gives every candidate the smallest
first-order perturbation that would flip its fate: its distance to the score threshold, the
distance of an overlap to the IoU threshold, or half the gap to a competing score (both scores
move, so each needs to move half the gap). Margins are thus in units of "how far one score or one
IoU must move", the same units as ``decision_noise``, the largest score or IoU change measured
between two candidate sets. A changed detection whose location has a margin below that noise is
``expected_fragility``: a near-tie flipped, not a model bug.

Pure NumPy: no TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envaudit.compare.types import DetectionChange, DetectionDiff, DetectionKind, MissedObject
from envaudit.workload.architecture import pairwise_iou
from envaudit.workload.types import (
    IOU_THRESHOLD,
    MAX_DETECTIONS,
    SCORE_THRESHOLD,
    Candidates,
    Detections,
)

_KIND_ORDER = {"class_changed": 0, "removed": 1, "added": 2, "matched": 3}
# A current detection is the same object as a golden one when their boxes overlap at least this
# much: the PASCAL VOC / COCO convention for "found it". It is not the NMS threshold
# (``workload.types.IOU_THRESHOLD``), which decides suppression inside one run; the two only
# happen to share the value 0.5, and changing one must not change the other.
MATCH_IOU = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` [M, 4] and ``b`` [K, 4] (ymin, xmin, ymax, xmax) -> float64 [M, K].

    Corners are put in order first (as TensorFlow's NMS does); a zero-area pair has IoU 0.
    """
    return pairwise_iou(_corners(a), _corners(b))


@dataclass(frozen=True)
class DecisionMargins:
    """The golden NMS replayed: per image, anchor and class, whether the candidate became a final
    detection and how far its fate was from flipping."""

    boxes: np.ndarray  # float64 [N, A, 4]
    final: np.ndarray  # bool [N, A, C]: among the final detections
    margins: np.ndarray  # float64 [N, A, C], >= 0: smallest score/IoU move that flips the fate

    def at(
        self,
        image: int,
        box: Sequence[float],
        classes: Sequence[int],
        final: bool,
        iou_threshold: float = MATCH_IOU,
    ) -> float | None:
        """Smallest margin among candidates of ``classes`` at this location (IoU >= threshold with
        ``box``) whose fate was ``final`` (True: kept as a detection; False: dropped). None when no
        such candidate exists."""
        if not 0 <= image < self.boxes.shape[0]:
            return None
        near = box_iou(np.asarray([box], dtype=np.float64), self.boxes[image])[0] >= iou_threshold
        cls = [c for c in classes if 0 <= c < self.margins.shape[2]]
        if not near.any() or not cls:
            return None
        margins = self.margins[image][near][:, cls]
        chosen = margins[self.final[image][near][:, cls] == final]
        return float(chosen.min()) if chosen.size else None


def decision_margins(
    candidates: Candidates,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
) -> DecisionMargins:
    """Replay NMS on ``candidates`` and measure every decision's margin (see the module docstring).

    Per candidate (anchor, class), first order (one perturbation at a time):
    - kept: min(score - score threshold, threshold - IoU with each higher kept box of its class,
      half the score gap to each lower overlapping candidate that it suppressed or would have);
    - suppressed: the easiest way to escape every suppressor: max over suppressors of
      min(IoU - threshold, half the score gap);
    - below the score threshold: the larger of (threshold - score) and the suppression escape;
    - the top-``max_detections`` cut: half the score gap to the first box past the cut (kept ones)
      or to the last kept one (cut ones).
    """
    boxes = np.asarray(candidates.boxes, dtype=np.float64)
    scores = np.asarray(candidates.scores, dtype=np.float64)
    if boxes.ndim != 3 or scores.ndim != 3 or boxes.shape[:2] != scores.shape[:2]:
        raise ValueError(
            f"candidates must be boxes [N, A, 4] and scores [N, A, C]; got {boxes.shape} and "
            f"{scores.shape}"
        )
    scores = np.where(np.isnan(scores), -np.inf, scores)  # a NaN score is never kept
    final = np.zeros(scores.shape, dtype=bool)
    margins = np.full(scores.shape, np.inf)
    for n in range(scores.shape[0]):
        iou = box_iou(boxes[n], boxes[n])
        survivors = []  # (score, anchor, class) after per-class NMS
        for c in range(scores.shape[2]):
            kept, margins[n, :, c] = _class_margins(scores[n, :, c], iou, score_threshold,
                                                    iou_threshold)
            survivors.extend((scores[n, a, c], a, c) for a in kept)
        _cut_top_k(survivors, scores[n], final[n], margins[n], max_detections)
    return DecisionMargins(boxes=boxes, final=final, margins=margins)


def decision_noise(
    golden: Candidates, current: Candidates, score_threshold: float = SCORE_THRESHOLD
) -> float:
    """How far NMS inputs moved between two runs: the largest change of any candidate score, or of
    the IoU of any two anchors that NMS considered (a class score >= threshold in either run).

    ``inf`` when the candidate sets cannot be compared (other shapes) or hold non-finite values."""
    gb, cb = np.asarray(golden.boxes, np.float64), np.asarray(current.boxes, np.float64)
    gs, cs = np.asarray(golden.scores, np.float64), np.asarray(current.scores, np.float64)
    if gb.shape != cb.shape or gs.shape != cs.shape or gs.ndim != 3:
        return float("inf")
    if gs.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        noise = float(np.abs(gs - cs).max())
    if np.isnan(noise):
        return float("inf")
    for n in range(gs.shape[0]):
        considered = (gs[n] >= score_threshold).any(axis=1) | (cs[n] >= score_threshold).any(axis=1)
        if considered.sum() > 1:
            iou_g = box_iou(gb[n][considered], gb[n][considered])
            iou_c = box_iou(cb[n][considered], cb[n][considered])
            noise = max(noise, float(np.abs(iou_g - iou_c).max()))
    return noise


def match_detections(
    golden: Detections,
    current: Detections,
    iou_threshold: float = MATCH_IOU,
    noise: float = 0.0,
    golden_candidates: Candidates | None = None,
    *,
    mode: str | None = None,
    score_threshold: float | None = None,
    missed: tuple[MissedObject, ...] | None = None,
) -> DetectionDiff:
    """Match ``current`` detections to ``golden`` ones (module docstring) and report the changes.

    ``noise``: the measured perturbation (``decision_noise``, or a nondeterminism spread) against
    which fragility is judged. ``golden_candidates``: the golden NMS inputs; without them no margin
    is known and nothing is called expected fragility. ``mode``, ``score_threshold`` and
    ``missed`` (``visible.missed_objects``) are carried on the result as given.
    """
    g, c = _rows(golden), _rows(current)
    margins = decision_margins(golden_candidates) if golden_candidates is not None else None
    pairs = [pair for image in sorted(set(g.image.tolist()) | set(c.image.tolist()))
             for pair in _match_image(g, c, image, iou_threshold)]
    kinds = [_kind(pair, g, c) for pair in pairs]
    changes: list[DetectionChange] = []
    matched: list[tuple[float, float, float]] = []  # (IoU, score delta, box delta) per match
    for pair, kind in zip(pairs, kinds):
        if kind == "matched":
            score_delta = abs(float(c.scores[pair.current]) - float(g.scores[pair.golden]))
            box_delta = float(np.abs(c.boxes[pair.current] - g.boxes[pair.golden]).max())
            matched.append((pair.iou, score_delta, box_delta))
            if score_delta == 0.0 and box_delta == 0.0:
                continue  # an unchanged match is not a change
        changes.append(_change(kind=kind, pair=pair, g=g, c=c, margins=margins, noise=noise))
    changes.sort(key=lambda ch: (_KIND_ORDER[ch.kind], ch.image))
    return DetectionDiff(
        golden=len(g.scores),
        current=len(c.scores),
        matched=kinds.count("matched"),
        added=kinds.count("added"),
        removed=kinds.count("removed"),
        class_changed=kinds.count("class_changed"),
        max_score_delta=max((m[1] for m in matched), default=0.0),
        min_iou=min(m[0] for m in matched) if matched else None,
        max_box_delta=max((m[2] for m in matched), default=0.0),
        changes=tuple(changes),
        noise=float(noise),
        mode=mode,
        score_threshold=score_threshold,
        missed=missed,
    )


# --- internals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class _Pair:
    """One golden detection and the current one it matched (either may be missing)."""

    image: int
    golden: int | None  # row in the golden rows
    current: int | None  # row in the current rows
    iou: float | None


def _match_image(g: _Rows, c: _Rows, image: int, threshold: float) -> list[_Pair]:
    """Greedy matching on one image: golden detections by descending score (stable), first to
    the best unmatched current detection of their own class, then leftovers to any class (a
    class change); unmatched golden ones are removed, unmatched current ones added."""
    gi = np.flatnonzero(g.image == image)
    ci = np.flatnonzero(c.image == image)
    gi = gi[np.argsort(-g.scores[gi], kind="stable")]
    iou = box_iou(g.boxes[gi], c.boxes[ci])
    taken = np.zeros(len(ci), dtype=bool)
    match = np.full(len(gi), -1)
    for same_class_only in (True, False):
        for row in np.flatnonzero(match < 0):
            allowed = ~taken
            if same_class_only:
                allowed &= c.classes[ci] == g.classes[gi[row]]
            best = _best(iou[row], allowed, threshold)
            if best >= 0:
                taken[best] = True
                match[row] = best
    pairs = [_Pair(image, int(gi[row]), int(ci[col]) if col >= 0 else None,
                   float(iou[row, col]) if col >= 0 else None) for row, col in enumerate(match)]
    return pairs + [_Pair(image, None, int(ci[col]), None) for col in np.flatnonzero(~taken)]


def _kind(pair: _Pair, g: _Rows, c: _Rows) -> DetectionKind:
    if pair.current is None:
        return "removed"
    if pair.golden is None:
        return "added"
    return "matched" if g.classes[pair.golden] == c.classes[pair.current] else "class_changed"


def _rows(d: Detections) -> _Rows:
    scores = np.asarray(d.scores, dtype=np.float64).reshape(-1)
    return _Rows(
        image=np.asarray(d.image, dtype=np.int64).reshape(-1),
        boxes=np.asarray(d.boxes, dtype=np.float64).reshape(-1, 4),
        classes=np.asarray(d.classes, dtype=np.int64).reshape(-1),
        scores=scores,
    )


def _corners(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                     np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], axis=1)


def _best(iou_row: np.ndarray, allowed: np.ndarray, threshold: float) -> int:
    """Index of the allowed column with the highest IoU >= threshold (first on ties), or -1."""
    candidates = np.where(allowed & (iou_row >= threshold), iou_row, -1.0)
    if candidates.size == 0 or candidates.max() < 0.0:
        return -1
    return int(np.argmax(candidates))


def _class_margins(
    s: np.ndarray, iou: np.ndarray, score_threshold: float, iou_threshold: float
) -> tuple[list[int], np.ndarray]:
    """Greedy NMS for one class; returns the kept anchors (in order) and every anchor's margin."""
    order = np.argsort(-s, kind="stable")
    pos = np.empty(len(s), dtype=np.int64)
    pos[order] = np.arange(len(s))
    suppressed = np.zeros(len(s), dtype=bool)
    kept: list[int] = []
    for a in order[s[order] > score_threshold]:
        if not suppressed[a]:
            kept.append(int(a))
            suppressed |= iou[a] > iou_threshold
    margins = np.where(s > score_threshold, np.inf, score_threshold - s)
    if not kept:
        return kept, margins
    k = np.asarray(kept)
    earlier = pos[k][None, :] < pos[:, None]  # [A, K]: kept box k came before anchor a
    over = iou[:, k] > iou_threshold
    gap = (s[k][None, :] - s[:, None]) / 2.0
    escape = np.where(over & earlier, np.minimum(iou[:, k] - iou_threshold, gap), -np.inf)
    escape = escape.max(axis=1)  # every suppressor must be escaped
    dropped = ~np.isin(np.arange(len(s)), k)
    has_suppressor = np.isfinite(escape)
    margins = np.where(dropped & has_suppressor,
                       np.where(s > score_threshold, escape, np.maximum(margins, escape)),
                       margins)
    near_suppression = np.where(earlier[k] & ~over[k], iou_threshold - iou[k][:, k], np.inf)
    later = pos[None, :] > pos[k][:, None]  # [K, A]
    competitors = np.where(later & (iou[k] > iou_threshold), (s[k][:, None] - s[None, :]) / 2.0,
                           np.inf)
    margins[k] = np.minimum.reduce([s[k] - score_threshold, near_suppression.min(axis=1),
                                    competitors.min(axis=1)])
    return kept, margins


def _cut_top_k(
    survivors: list[tuple[float, int, int]],
    scores: np.ndarray,
    final: np.ndarray,
    margins: np.ndarray,
    max_detections: int,
) -> None:
    """Apply the per-image top-k cut to one image's NMS survivors, in place."""
    ranked = sorted(survivors, key=lambda item: -item[0])  # stable: class order, then NMS order
    for _, a, c in ranked[:max_detections]:
        final[a, c] = True
    if len(ranked) < max_detections:
        return
    last_kept = ranked[max_detections - 1][0]
    if len(ranked) > max_detections:
        first_cut = ranked[max_detections][0]
        for score, a, c in ranked[:max_detections]:
            margins[a, c] = min(margins[a, c], (score - first_cut) / 2.0)
        for score, a, c in ranked[max_detections:]:
            margins[a, c] = (last_kept - score) / 2.0
    # Anything else dropped would also have to beat the last kept box to become a detection.
    dropped = ~final & (scores < last_kept)
    margins[dropped] = np.maximum(margins[dropped], (last_kept - scores[dropped]) / 2.0)


def _change(*, kind: DetectionKind, pair: _Pair, g: _Rows, c: _Rows,
            margins: DecisionMargins | None, noise: float) -> DetectionChange:
    gk, ck = pair.golden, pair.current
    gbox = tuple(float(v) for v in g.boxes[gk]) if gk is not None else None
    cbox = tuple(float(v) for v in c.boxes[ck]) if ck is not None else None
    gcls = int(g.classes[gk]) if gk is not None else None
    ccls = int(c.classes[ck]) if ck is not None else None
    margin = None
    if margins is not None:
        found = []
        if gbox is not None:  # the golden detection could have been dropped
            found.append(margins.at(pair.image, gbox, [gcls], final=True))
        if cbox is not None and kind != "matched":  # a dropped golden candidate could have won
            found.append(margins.at(pair.image, cbox, [ccls], final=False))
        if kind == "class_changed":
            found.append(margins.at(pair.image, gbox, [ccls], final=False))
        known = [m for m in found if m is not None]
        margin = min(known) if known else None
    return DetectionChange(
        kind=kind,
        image=int(pair.image),
        golden_class=gcls,
        current_class=ccls,
        golden_score=float(g.scores[gk]) if gk is not None else None,
        current_score=float(c.scores[ck]) if ck is not None else None,
        golden_box=gbox,
        current_box=cbox,
        iou=pair.iou,
        margin=margin,
        expected_fragility=kind != "matched" and margin is not None and margin < noise,
    )
