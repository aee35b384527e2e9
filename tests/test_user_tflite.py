"""A model of the user's own, recorded and checked as it ships: converted for TFLite, run by LiteRT.

Two models, built here in seconds: a Keras functional detector-like model (a ``.keras`` file whose
outputs are boxes, scores and classes) and a SavedModel exported as the TF Object Detection API
exports one (``serving_default`` on uint8 ``input_tensor`` [1, H, W, 3], convolutions, box decoding
and non-maximum suppression, ``detection_*`` and ``num_detections`` outputs). Each is recorded
with ``--modes tflite`` on the canary's scenes as PNG files and checked in the same environment:
the converted model is identical to its golden, its detections are matched image by image, and
the check measures the converted model against the model run natively in the same run (the
conversion gap) and compares what converted and ran it (the runtime line). LiteRT's reference
kernels (``ENVAUDIT_TFLITE_KERNELS=reference``) move the converted model, and the check names that
variable and confirms it by a re-run with it put back.

The NMS op: ``tf.image.combined_non_max_suppression`` converts only with the select-TF ops, which
this TensorFlow's interpreter cannot run (it has no Flex delegate); ``non_max_suppression_padded``
converts to LiteRT's own NMS op, so the Object Detection API-style model uses that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from model_builders import decoded_images

SIZE = 100  # the canary's scenes
IMAGES = 3
KERAS_SEED = 20260301
KERAS_DETECTIONS = 6  # fixed rows: boxes [N, 6, 4], scores and classes [N, 6]
OD_SEED = 20260302
OD_CLASSES = 3
OD_MAX_DETECTIONS = 20
OD_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def write_pngs(folder: Path) -> None:
    """The first ``IMAGES`` canary scenes as PNG files (decoded pixels, encoded again)."""
    import tensorflow as tf

    folder.mkdir(parents=True)
    for i, pixels in enumerate(decoded_images()[:IMAGES]):
        (folder / f"scene{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())


def save_keras_detector(path: Path) -> None:
    """A Keras functional model on float32 images [N, 100, 100, 3]: two strided convolutions and
    a pooled head giving ``detection_boxes`` [N, 6, 4] (sigmoid corners), ``detection_scores``
    [N, 6] (the best class probability) and ``detection_classes`` [N, 6] (its class as a float);
    weights seeded."""
    import keras
    from keras import layers, ops

    image = keras.Input((SIZE, SIZE, 3), name="image", dtype="float32")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="pixels")(image)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    pooled = layers.GlobalAveragePooling2D(name="pool")(x)
    corners = layers.Dense(KERAS_DETECTIONS * 4, activation="sigmoid", name="box_head")(pooled)
    boxes = layers.Reshape((KERAS_DETECTIONS, 4), name="detection_boxes")(corners)
    logits = layers.Dense(KERAS_DETECTIONS * 3, name="class_head")(pooled)
    probs = layers.Softmax(name="class_probs")(
        layers.Reshape((KERAS_DETECTIONS, 3), name="class_logits")(logits))
    best, index = ops.top_k(probs, 1)  # argmax would convert to a select-TF op (BitwiseAnd)
    scores = layers.Reshape((KERAS_DETECTIONS,), name="detection_scores")(best)
    classes = layers.Reshape((KERAS_DETECTIONS,), name="detection_classes")(
        ops.cast(index, "float32"))
    model = keras.Model(image, {"detection_boxes": boxes, "detection_scores": scores,
                                "detection_classes": classes})
    rng = np.random.default_rng(KERAS_SEED)
    model.set_weights([rng.normal(0.0, 0.3, tuple(w.shape)).astype(np.float32)
                       for w in model.weights])
    model.save(path)


def export_od_detector(path: Path) -> None:
    """A SavedModel as the Object Detection API exports a detector: ``serving_default`` takes
    uint8 ``input_tensor`` [1, 100, 100, 3] (batch one), three strided convolutions make a
    stride-8 feature map, 1x1 heads give box offsets and class logits per cell, boxes are decoded
    around each cell, and ``tf.image.non_max_suppression_padded`` keeps up to 20:
    ``detection_boxes`` [1, 20, 4], ``detection_scores`` [1, 20], ``detection_classes`` [1, 20]
    (1-based, as the API's) and ``num_detections`` [1]. Weights are seeded variables."""
    import tensorflow as tf

    rng = np.random.default_rng(OD_SEED)

    def kernel(shape: tuple[int, ...]) -> tf.Variable:
        scale = np.sqrt(2.0 / np.prod(shape[:-1]))
        return tf.Variable(rng.normal(0.0, scale, shape).astype(np.float32))

    module = tf.Module()
    module.convs = [kernel((3, 3, 3, 16)), kernel((3, 3, 16, 32)), kernel((3, 3, 32, 32))]
    module.box_head = kernel((1, 1, 32, 4))
    module.class_head = kernel((1, 1, 32, OD_CLASSES))

    def detect(input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.cast(input_tensor, tf.float32) / 127.5 - 1.0
        for weights in module.convs:
            x = tf.nn.relu(tf.nn.conv2d(x, weights, strides=2, padding="SAME"))
        offsets = tf.tanh(tf.nn.conv2d(x, module.box_head, 1, "SAME"))[0]
        probs = tf.sigmoid(tf.nn.conv2d(x, module.class_head, 1, "SAME"))[0]
        cells = x.shape[1]
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        y, x_ = cy + 0.1 * offsets[..., 0], cx + 0.1 * offsets[..., 1]
        half_h, half_w = 0.15 * tf.exp(offsets[..., 2]), 0.15 * tf.exp(offsets[..., 3])
        boxes = tf.reshape(tf.clip_by_value(
            tf.stack([y - half_h, x_ - half_w, y + half_h, x_ + half_w], -1), 0.0, 1.0), [-1, 4])
        probs = tf.reshape(probs, [-1, OD_CLASSES])
        best, classes = tf.reduce_max(probs, -1), tf.cast(tf.argmax(probs, -1), tf.float32)
        kept, count = tf.image.non_max_suppression_padded(
            boxes, best, OD_MAX_DETECTIONS, iou_threshold=0.5, score_threshold=0.3,
            pad_to_max_output_size=True)
        valid = tf.cast(tf.range(OD_MAX_DETECTIONS) < count, tf.float32)
        return {"detection_boxes": (tf.gather(boxes, kept) * valid[:, None])[None],
                "detection_scores": (tf.gather(best, kept) * valid)[None],
                "detection_classes": ((tf.gather(classes, kept) + 1.0) * valid)[None],
                "num_detections": tf.cast(count, tf.float32)[None]}

    spec = tf.TensorSpec([1, SIZE, SIZE, 3], tf.uint8, name="input_tensor")
    module.detect = tf.function(detect, input_signature=[spec], autograph=False)
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.detect.get_concrete_function()})


def _started(*args: str, **env: str) -> subprocess.Popen[str]:
    """``envaudit ARGS`` started in the hermetic environment (``env``: variables to add)."""
    return subprocess.Popen([sys.executable, "-m", "envaudit", *args], env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both models and the images, built in this process (seconds)."""
    folder = tmp_path_factory.mktemp("user-tflite")
    write_pngs(folder / "images")
    save_keras_detector(folder / "detector.keras")
    export_od_detector(folder / "od_export")
    return {"images": folder / "images", "keras": folder / "detector.keras",
            "saved_model": folder / "od_export", "folder": folder}


@pytest.fixture(scope="module")
def recorded(models: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    """Each model recorded with ``--modes tflite`` on the PNG images (both at once): the
    golden's path and what ``record`` said."""
    paths = {kind: models["folder"] / f"golden-{kind}" for kind in ("keras", "saved_model")}
    started = {kind: _started("record", "--model", str(models[kind]), "--inputs",
                              str(models["images"]), "--golden", str(path), "--modes", "tflite",
                              "--no-history")
               for kind, path in paths.items()}
    said = {}
    for kind, proc in started.items():
        code, out, err = _finished(proc)
        assert code == 0, err
        said[kind] = out + err
    return {kind: (path, said[kind]) for kind, path in paths.items()}


@pytest.fixture(scope="module")
def goldens(recorded: dict[str, tuple[Path, str]]) -> dict[str, Path]:
    return {kind: path for kind, (path, _said) in recorded.items()}


@pytest.fixture(scope="module")
def checks(goldens: dict[str, Path]) -> dict[str, tuple[int, dict, str]]:
    """Each golden checked here (exit code, JSON, stderr), and the Keras model's again with
    LiteRT's reference kernels: three checks at once."""
    def check(golden: Path, **env: str) -> subprocess.Popen[str]:
        return _started("check", "--golden", str(golden), "--format", "json", "--no-history",
                        **env)

    started = {"keras": check(goldens["keras"]), "saved_model": check(goldens["saved_model"]),
               "reference": check(goldens["keras"], ENVAUDIT_TFLITE_KERNELS="reference")}
    done = {}
    for name, proc in started.items():
        code, out, err = _finished(proc)
        assert code in (0, 1), err
        done[name] = (code, json.loads(out), err)
    return done


def test_a_keras_model_recorded_in_tflite_mode_keeps_its_runtime_and_its_layers(recorded):
    golden, said = recorded["keras"]
    manifest = json.loads((golden / "manifest.json").read_text())
    model, runtime = manifest["workload"]["model"], manifest["runtimes"]["tflite"]
    assert model["mode"] == "tflite" and manifest["modes"] == ["tflite"]
    assert model["outputs"] == ["detection_boxes", "detection_classes", "detection_scores"]
    assert model["layers"][:3] == ["pixels", "conv1", "conv2"]  # converted, read by name
    assert runtime["kernels"] == "xnnpack" and runtime["optimization"] == "none"
    assert len(runtime["flatbuffer_sha256"]) == 64 and runtime["flatbuffer_bytes"] > 1000
    assert runtime["select_tf_ops"] is False
    # record measured the converted model against the model run natively, as a check does
    assert "conversion gap: tflite against graph: " in said


def test_a_keras_model_in_tflite_mode_is_identical_with_its_conversion_gap(checks):
    code, result, _err = checks["keras"]
    assert code == 0 and result["verdict"] == "identical"
    assert [m["mode"] for m in result["modes"]] == ["tflite"]
    assert result["detections"]["golden"] == IMAGES * KERAS_DETECTIONS
    assert result["detections"]["matched"] == IMAGES * KERAS_DETECTIONS
    (runtime,) = result["runtimes"]
    assert runtime["mode"] == "tflite"
    assert runtime["current"]["flatbuffer_sha256"] == runtime["golden"]["flatbuffer_sha256"]
    (gap,) = result["conversion"]
    # LiteRT's XNNPACK kernels against TensorFlow's own, the same model on the same images: the
    # decoded input is the same, the first convolution is not (the bits measured here).
    assert gap["mode"] == "tflite" and gap["reference"] == "graph"
    assert gap["status"] in ("identical", "equivalent")
    arrays = {a["name"]: a for a in gap["arrays"]}
    assert arrays["input.image"]["identical"]
    assert "layer.conv1" in arrays and "output.detection_scores" in arrays
    assert gap["first_difference"] is not None
    assert 0 < arrays["output.detection_scores"]["max_rel"] < 1e-5
    assert gap["detections"]["matched"] == IMAGES * KERAS_DETECTIONS


def test_an_od_api_export_in_tflite_mode_is_identical_with_detections_per_image(checks,
                                                                                 goldens):
    from envaudit.store import load_bundle

    code, result, _err = checks["saved_model"]
    assert code == 0 and result["verdict"] == "identical"
    golden = load_bundle(goldens["saved_model"]).stages_by_mode["tflite"]
    counts = golden["output.num_detections"].astype(int)
    assert golden["output.detection_boxes"].shape == (IMAGES, OD_MAX_DETECTIONS, 4)
    assert result["detections"]["matched"] == result["detections"]["golden"] == counts.sum() > 0
    (gap,) = result["conversion"]
    assert gap["reference"] == "graph" and gap["detections"]["matched"] == counts.sum()
    # every detection the gap matched belongs to its own image: its box is one of that image's
    for change in gap["detections"]["changes"]:
        image = change["image"]
        boxes = golden["output.detection_boxes"][image, :counts[image]]
        assert np.isclose(boxes, change["current_box"], atol=1e-6).all(axis=1).any()
    assert {c["image"] for c in gap["detections"]["changes"]} == set(range(IMAGES))
    (runtime,) = result["runtimes"]
    assert runtime["current"]["flatbuffer_sha256"] == runtime["golden"]["flatbuffer_sha256"]
    assert result["model"]["layers"] == []  # a SavedModel converted: its outputs only


def test_reference_kernels_move_the_converted_model_and_are_confirmed(checks):
    code, result, _err = checks["reference"]
    if result["verdict"] == "identical":  # kernels that round alike on this CPU: said, not failed
        pytest.skip("LiteRT's reference kernels move nothing of this model on this CPU")
    assert result["first_divergence"]["stage"] == "layer.conv1"
    top = result["causes"][0]
    assert top["change"].startswith("env.ENVAUDIT_TFLITE_KERNELS")
    assert top["confidence"] == "confirmed"
    (runtime,) = result["runtimes"]
    assert (runtime["golden"]["kernels"], runtime["current"]["kernels"]) == ("xnnpack",
                                                                             "reference")


@pytest.mark.parametrize(("model", "modes", "said"), [
    ("saved_model", "xla", "--modes xla"),
    ("saved_model", "onnx", "--modes onnx"),
    ("keras", "tflite,graph", "one mode"),
])
def test_a_model_is_recorded_in_one_tflite_or_native_mode(models, tmp_path, model, modes, said):
    proc = run_cli("record", "--model", str(models[model]), "--inputs", str(models["images"]),
                   "--golden", str(tmp_path / "golden"), "--modes", modes, "--no-history")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and said in proc.stderr, proc.stderr
    assert not (tmp_path / "golden").exists()
