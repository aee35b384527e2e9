"""The check renderers on a user model's result: its model section, its arrays with their
tolerances, the precision witness, and detections that are plain class ids or none at all.

The results are built by hand (no TensorFlow): a Keras model whose last layer and first output
rounded differently and whose logits moved within the tolerance the user gave.
"""

from __future__ import annotations

import dataclasses
import io
import xml.etree.ElementTree as ET

from rich.console import Console

from envaudit.compare.types import (
    DetectionChange,
    DetectionDiff,
    FirstDivergence,
    ModeResult,
    PrecisionWitness,
    TensorComparison,
)
from envaudit.render import check_junit, check_md, check_text
from envaudit.render.formatting import class_label, class_names
from envaudit.result import CheckResult, ModelCheckInfo
from envaudit.usermodel.spec import DetectionNames, ModelInfo, TensorSpec

SHA = "0cd13616f8d4f2526b0a8d63fcadc98a2d769de42c916dae9321d91dd8914eb0"
KERAS = ModelInfo(
    kind="keras", path="/models/tiny.keras", sha256=SHA, files=1, size=472452, signature=None,
    inputs={"image": TensorSpec("float32", (None, 100, 100, 3))},
    outputs=("embedding", "logits"), layers=("stem_conv", "block2_conv"), detections=None,
    mode="graph", input_kind="images", image_files=tuple(f"scene{i}.png" for i in range(6)),
    image_feed="image")
FULL = PrecisionWitness(31, True, "resize_bilinear", 8.868, 8.868, 256.0, ())
LOST = PrecisionWitness(31, False, "matmul_long_inner", 7900.0, 8.9, 256.0,
                        ("matmul_long_inner", "conv3x3"))
NO_BOXES = DetectionDiff(0, 0, 0, 0, 0, 0, 0.0, None, 0.0, (), 0.0)
TOLERANCE = "rtol 1e-05, atol 0"


def _array(name: str, status: str = "identical", max_rel: float = 0.0,
           tolerance: str | None = None, role: str = "output") -> TensorComparison:
    same = status == "identical"
    return TensorComparison(name, "stage", name, (6, 10), "float32", same, max_rel, max_rel,
                            0.0 if same else 0.8, 0.0 if same else 4.0, 1.0, None, None,
                            status=status, mode="graph", tolerance=tolerance,  # type: ignore[arg-type]
                            role=role)  # type: ignore[arg-type]


def make_result(**changes) -> CheckResult:
    stages = (_array("input.image", role="input"), _array("layer.stem_conv", role="layer"),
              _array("layer.block2_conv", "rounding", 7.4e-7, role="layer"),
              _array("output.embedding", "rounding", 3.3e-7),
              _array("output.logits", "tolerated", 3.5e-7, TOLERANCE))
    first = FirstDivergence("layer.block2_conv", 2, (), ())
    result = CheckResult(
        verdict="equivalent", exit_code=0, headline="Equivalent: 3 of 5 model arrays differ.",
        golden_path="g-keras", golden_fingerprint_id="fp-cb8208008aa",
        current_fingerprint_id="fp-3fb64b480bb", fingerprint_changes=(), stages=stages,
        probes=(), changed_probe_families=(), first_divergence=first, detections=NO_BOXES,
        causes=(), nondeterminism=None, confirmation_ran=True,
        modes=(ModeResult("graph", "equivalent", first, NO_BOXES),),
        subject=ModelCheckInfo(KERAS, FULL, "the model's 2 output(s) compared bit for bit"))
    described = {k: changes.pop(k) for k in ("model", "witness", "basis") if k in changes}
    return dataclasses.replace(result, subject=dataclasses.replace(result.subject, **described),
                               **changes)


def _text(result: CheckResult) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, no_color=True).print(check_text.render(result))
    return buffer.getvalue()


def _junit(result: CheckResult) -> dict[str, ET.Element]:
    root = ET.fromstring(check_junit.render(result).encode())
    return {c.get("name"): c for c in root.findall("testcase")}


def test_text_shows_the_model_its_arrays_and_the_witness():
    out = _text(make_result())
    lines = out.splitlines()
    assert lines[2] == ("Model: Keras model /models/tiny.keras (sha256 0cd13616f8d4f252, 1 file,"
                        " 461.4 KiB)")
    assert lines[3] == ("  ran model.predict in graph mode on 6 images fed as image"
                        " float32[?, 100, 100, 3]")
    assert "  outputs: embedding, logits" in lines and "  basis: the model's 2 output(s)" in out
    assert "Model arrays, graph mode (inputs, layers, outputs)" in out
    logits = next(line for line in lines if "output.logits" in line)
    assert "within tolerance" in logits and TOLERANCE in logits
    assert "First divergence: layer.block2_conv (#2: inputs, then layers, then outputs)." in out
    assert "replay" not in out and "f64" not in out and "Replayed" not in out
    assert ("Precision witness: fp32 at full precision here: 31 probes against float64, worst"
            " error 8.9 unit roundoffs (resize_bilinear; limit 256).") in out
    assert "Detections: none (the model's outputs are not detections; name them with" \
           " --detections boxes=NAME,scores=NAME,classes=NAME to compare boxes)." in out


def test_markdown_shows_the_same_in_its_own_markup():
    md = check_md.render(make_result(witness=LOST))
    assert "- model: Keras model `/models/tiny.keras` (sha256 `0cd13616f8d4f252`" in md
    assert "- ran: model.predict in graph mode on 6 images fed as `image`" in md
    assert "### Model arrays, graph mode (inputs, layers, outputs)" in md
    assert "| # | array | result | max rel | max abs | mismatch | ulp@scale | tolerance |" in md
    assert f"| within tolerance | 3.50e-07 | 3.50e-07 | 80.0% | 4 | {TOLERANCE} |" in md
    assert "Precision witness: fp32 not at full precision here: matmul_long_inner, conv3x3 lost" \
           " precision against float64 (2 of 31 probes); worst error 7,900 unit roundoffs" in md
    assert "### Detections\n\nNone: the model's outputs are not detections" in md


def test_a_saved_model_names_its_signature_and_array_inputs():
    model = dataclasses.replace(KERAS, kind="saved_model", signature="serving_default", files=4,
                                inputs={"x": TensorSpec("float32", (None, 4)),
                                        "ids": TensorSpec("int32", (None,))},
                                input_kind="arrays", image_files=(), image_feed=None)
    out = _text(make_result(model=model))
    assert "Model: SavedModel /models/tiny.keras (sha256 0cd13616f8d4f252, 4 files," in out
    assert "ran serving signature 'serving_default' in graph mode on arrays x float32[?, 4]," \
           " ids int32[?]" in out


def test_a_user_models_classes_are_plain_ids():
    change = DetectionChange("class_changed", 1, 0, 3, 0.81, 0.79, (0.1, 0.1, 0.3, 0.3),
                             (0.1, 0.1, 0.3, 0.3), 0.98, 0.01, False)
    boxes = DetectionDiff(5, 5, 4, 0, 0, 1, 0.02, 0.98, 0.001, (change,), 1e-6)
    names = DetectionNames("boxes", "scores", "classes")
    result = make_result(model=dataclasses.replace(KERAS, detections=names), detections=boxes,
                         verdict="drift", exit_code=1)
    assert "class 0 → class 3" in _text(result)
    assert "| class changed | 1 | class 0 → class 3 |" in check_md.render(result)
    failure = _junit(result)["detections"].find("failure")
    assert "class changed: image 1, class 0 -> class 3" in failure.text
    # The canary's ids still name its shapes.
    assert class_label(0, class_names(None)) == "rectangle"
    assert class_label(0, class_names(KERAS)) == "class 0"


def test_junit_passes_what_is_within_tolerance_and_fails_what_is_beyond():
    cases = _junit(make_result())
    assert "detections" not in cases  # the model has no detection outputs
    assert all(c.find("failure") is None for c in cases.values())
    note = cases["output.logits"].find("system-out").text
    assert note.startswith(f"not bit-identical, within the tolerance you gave: {TOLERANCE}")
    assert cases["witness"].get("classname") == "envaudit.precision"
    assert "at full precision" in cases["witness"].find("system-out").text

    strict = _junit(make_result(strict=True, exit_code=1))["output.logits"].find("failure")
    assert strict.get("type") == "not_identical" and "(--strict)" in strict.get("message")

    beyond = dataclasses.replace(make_result().stages[-1], status="changed")
    result = make_result(stages=(*make_result().stages[:-1], beyond), verdict="drift",
                         exit_code=1)
    failure = _junit(result)["output.logits"].find("failure")
    assert failure.get("type") == "drift"
    assert f"array 'output.logits' drifted beyond the tolerance you gave ({TOLERANCE})" in \
        failure.get("message")


def test_junit_witness_fails_when_probes_lost_precision():
    witness = _junit(make_result(witness=LOST, verdict="precision_loss", exit_code=1))["witness"]
    failure = witness.find("failure")
    assert failure.get("type") == "precision_loss"
    assert "matmul_long_inner, conv3x3 lost precision" in failure.get("message")
