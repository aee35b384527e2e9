"""The two verdicts this machine cannot produce by itself, shown on the reference bundle's arrays.

No knob of TensorFlow 2.21's CPU build lowers precision here (ONEDNN_DEFAULT_FPMATH_MODE=BF16 and
TF_SET_ONEDNN_FPMATH_MODE=BF16 leave every array bit-identical), and no setting moves a detection.
So this script takes the real golden arrays and applies what such an environment would do:
- precision loss: every float stage from the stem on rounded through bfloat16, as bf16 kernels
  store their outputs;
- drift: the detector's least confident detection lost and one box moved by 0.08 of the image.
It prints the verdict, the exit code and the headline that ``envaudit check`` would report.

    .venv/bin/python tools/verdict_examples.py
"""

from __future__ import annotations

import numpy as np

from envaudit.compare.detections import match_detections
from envaudit.compare.tensors import compare_tensor
from envaudit.compare.verdict import classify, exit_code, headline
from envaudit.store import REFERENCE_BUNDLE, load_bundle
from envaudit.workload import detections_from_nms
from envaudit.workload.types import Candidates, Detections

EXACT_STAGES = ("decode", "resize", "normalize", "nms")


def bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even) and back."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)


def main() -> None:
    bundle = load_bundle(REFERENCE_BUNDLE)
    # A bundle of schema 2 keeps no detections of its own: they are each mode's nms stage rows.
    golden = detections_from_nms(bundle.stages["nms"])
    candidates = Candidates(bundle.stages["boxes"], bundle.stages["scores"])

    def stages(transform):
        return [compare_tensor(name, "stage", name, g, transform(name, g),
                               reference=bundle.twin.get(name),
                               golden_reference=bundle.twin.get(name))
                for name, g in bundle.stages.items()]

    lossy = stages(lambda n, g: g if n in EXACT_STAGES else bf16(g))
    same = match_detections(golden, golden)
    report("precision loss (bf16 kernels)", lossy, same)

    keep = golden.scores > golden.scores.min()
    boxes = golden.boxes[keep].copy()
    boxes[0, [0, 2]] += 0.08
    current = Detections(golden.image[keep], boxes, golden.classes[keep], golden.scores[keep])
    moved = match_detections(golden, current, noise=0.0, golden_candidates=candidates)
    report("drift (a detection lost, a box moved)", stages(lambda n, g: g), moved)


def report(title, stages, detections) -> None:
    verdict = classify(stages, [], detections)
    print(f"{title}: verdict {verdict}, exit {exit_code(verdict)}")
    print(f"  {headline(verdict, stages, [], detections)}")
    for s in stages:
        if not s.identical:
            print(f"  {s.name:<13} max_rel {s.max_rel:.1e}  error vs f64 {s.golden_error:.1e}"
                  f" -> {s.current_error:.1e}")


if __name__ == "__main__":
    main()
