"""How good the golden detector is: recall and precision at IoU 0.5 against the rendered truth.

NumPy only; used by the training script, the tests and the README's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envaudit.workload.architecture import pairwise_iou


def recall_precision(nms: np.ndarray, truth_boxes: Sequence[np.ndarray],
                     truth_classes: Sequence[np.ndarray], iou: float = 0.5) -> dict[str, float]:
    """Greedy one-to-one matching per image (class must agree, IoU >= ``iou``).

    ``nms``: the workload's ``nms`` stage rows [N, K, 6] (box, score, class; zero rows are padding).
    """
    found = total = predicted = 0
    for rows, boxes, classes in zip(nms, truth_boxes, truth_classes):
        rows = rows[rows[:, 4] > 0]
        predicted += len(rows)
        total += len(boxes)
        free = np.ones(len(rows), bool)
        for box, cls in zip(boxes, classes):
            if not len(rows):
                break
            overlap = pairwise_iou(np.asarray(box, np.float64)[None],
                                   rows[:, :4].astype(np.float64))[0]
            overlap[(rows[:, 5] != cls) | ~free] = 0.0
            best = int(overlap.argmax())
            if overlap[best] >= iou:
                free[best] = False
                found += 1
    return {"recall": found / max(total, 1), "precision": found / max(predicted, 1),
            "objects": total, "detections": predicted}
