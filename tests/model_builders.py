"""Users' own models, built on the fly, for the tests of ``envaudit record --model``.

Two models in the two formats ``--model`` accepts, and the canary's images as input files:

- ``export_detector_savedmodel``: the project's own detector as a SavedModel folder whose
  ``serving_default`` signature speaks the TF Object Detection API's export contract, so a test
  knows what every detection should be: its outputs are the canary's graph-mode ``nms`` stage,
  bit for bit, when run in the same environment;
- ``save_keras_model``: a small Keras 3 functional model with named layers and two named outputs,
  as a ``.keras`` file that loads with ``safe_mode=True`` (no lambdas, no custom objects);
- ``write_images`` and ``write_npz_inputs``: the canary's scenes as image files, and decoded.

Constraints for the next editor: both models must keep computing something that moves when
oneDNN is switched off (``TF_ENABLE_ONEDNN_OPTS=0``) on an x86 CPU, because the tests use that
switch as the environment change ``record`` must see; every builder runs in a few seconds on a
2-core machine, with no training and no download; weights are fixed by a seed, so two builds are
the same model. TensorFlow and Keras are imported inside the builders: importing this module
stays cheap for test collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envaudit.workload import architecture as arch
from envaudit.workload.assets import load_assets

if TYPE_CHECKING:
    import keras

IMAGE_SIZE = 100  # the canary's scenes are 100x100 RGB
DETECTOR_INPUT = "images"  # the serving signature's input: decoded uint8 pixels
DETECTION_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes",
                     "num_detections")
# The OD API exports class ids 1-based (0 is its "background"); the detector's are 0-based.
LABEL_ID_OFFSET = 1.0

KERAS_INPUT = "image"
KERAS_OUTPUTS = ("logits", "embedding")
KERAS_SEED = 20240611
KERAS_CLASSES = 10
KERAS_EMBEDDING = 64


def decoded_images() -> np.ndarray:
    """The canary's scenes decoded by TensorFlow, as its "decode" stage sees them: uint8
    [6, 100, 100, 3], every PNG then every JPEG."""
    from envaudit.workload.detector import decode_images

    return decode_images(load_assets().encoded).numpy()


def write_images(folder: Path) -> list[str]:
    """The canary's scene files (PNG and JPEG bytes, unchanged) written into ``folder``; their
    names in batch order."""
    assets = load_assets()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in zip(assets.image_names, assets.encoded):
        (folder / name).write_bytes(data)
    return list(assets.image_names)


def write_npz_inputs(path: Path, *, name: str = DETECTOR_INPUT, dtype: str = "uint8") -> None:
    """The decoded scenes as an ``.npz`` with one array, ``name``: by default the detector
    SavedModel's uint8 input; ``name=KERAS_INPUT, dtype="float32"`` feeds the Keras model (the
    cast is exact: pixels are small integers)."""
    np.savez(path, **{name: decoded_images().astype(dtype)})


def export_detector_savedmodel(path: Path) -> None:
    """The golden detector, resize to NMS, as a SavedModel with two signatures on uint8
    ``images`` [None, 100, 100, 3]:

    - ``serving_default``: the OD API's outputs, 10 (``MAX_DETECTIONS``) rows per image:
      ``detection_boxes`` [N, 10, 4] (ymin, xmin, ymax, xmax), ``detection_scores`` [N, 10],
      ``detection_classes`` [N, 10] and ``num_detections`` [N], all float32. As the OD API
      exporter does, classes are offset by one on every row, padding included: a padding row
      has score 0 and class 1.0, and only the first ``num_detections`` rows are detections.
    - ``raw``: the candidates before NMS, under the OD API's names: ``raw_detection_boxes``
      [N, 500, 4] and ``raw_detection_scores`` [N, 500, 3] (a sigmoid per class), one row per
      anchor.

    The weights are variables, stored in ``variables/`` as a trained model's export stores them,
    not constants folded into the graph.
    """
    import tensorflow as tf

    from envaudit.workload.detector import Detector

    module = tf.Module()
    detector = Detector(load_assets().weights)
    module.weights = {name: tf.Variable(value, name=name.replace("/", "_"))
                      for name, value in detector.w.items()}
    detector.w = module.weights  # run_stage reads the variables, so the export captures them
    images = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8, name=DETECTOR_INPUT)

    def stages(decoded: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = {"decode": decoded}
        for stage in arch.STAGES[1:]:
            outputs[stage] = detector.run_stage(stage, outputs)
        return outputs

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        nms = stages(images)["nms"]
        valid = tf.cast(nms[..., 4] > 0, tf.float32)  # zero rows pad each image to 10
        return {
            "detection_boxes": nms[..., :4],
            "detection_scores": nms[..., 4],
            "detection_classes": nms[..., 5] + LABEL_ID_OFFSET,
            "num_detections": tf.reduce_sum(valid, axis=1),
        }

    def raw(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = stages(images)
        return {"raw_detection_boxes": outputs["boxes"],
                "raw_detection_scores": outputs["scores"]}

    module.serve = tf.function(serve, input_signature=[images], autograph=False)
    module.raw = tf.function(raw, input_signature=[images], autograph=False)
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.serve.get_concrete_function(),
        "raw": module.raw.get_concrete_function(),
    })


def keras_model() -> keras.Model:
    """The Keras model, weights set from ``KERAS_SEED``: a strided stem and two conv blocks
    (Conv2D, BatchNormalization, ReLU, pooling), global pooling, then a dense ``embedding`` and
    a dense ``logits`` head."""
    import keras
    from keras import layers

    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name=KERAS_INPUT, dtype="float32")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="pixels_to_unit")(image)
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block, channels in (("block1", 64), ("block2", 128)):
        x = layers.Conv2D(channels, 3, padding="same", name=f"{block}_conv")(x)
        x = layers.BatchNormalization(name=f"{block}_bn")(x)
        x = layers.ReLU(name=f"{block}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"{block}_pool")(x)
    pooled = layers.GlobalAveragePooling2D(name="global_pool")(x)
    embedding = layers.Dense(KERAS_EMBEDDING, activation="tanh", name="embedding")(pooled)
    logits = layers.Dense(KERAS_CLASSES, name="logits")(embedding)
    model = keras.Model(image, {"logits": logits, "embedding": embedding}, name="user_classifier")
    rng = np.random.default_rng(KERAS_SEED)
    model.set_weights([_initial_value(v.name, tuple(v.shape), rng) for v in model.weights])
    return model


def _initial_value(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A trained-looking value for a Keras weight, by its name: He-scaled kernels, small biases,
    batch-norm statistics near the identity with a positive variance."""
    if name == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif name == "moving_variance":
        value = rng.uniform(0.5, 1.5, shape)
    elif name == "gamma":
        value = 1.0 + 0.1 * rng.normal(size=shape)
    else:  # bias, beta, moving_mean
        value = 0.1 * rng.normal(size=shape)
    return value.astype(np.float32)


def save_keras_model(path: Path) -> None:
    """``keras_model()`` saved as a ``.keras`` file at ``path`` (the name must end in .keras)."""
    keras_model().save(path)


# --- a detector exported the way the TF Object Detection API exports one -----------------------

OD_INPUT = "input_tensor"  # the OD API exporter's input name
OD_SEED = 20250119
OD_CLASSES = 3
OD_MAX_DETECTIONS = 100  # the exporter's max_total_detections default
OD_SIZES = ((72, 96), (100, 64), (56, 56))  # (height, width) of the three test images


def export_od_api_savedmodel(path: Path) -> None:
    """A small single-shot detector exported as the Object Detection API's ``exporter_main_v2``
    exports one: a ``tf.Module`` whose ``serving_default`` takes ``input_tensor`` uint8
    [1, None, None, 3] (batch one, any size) and returns ``detection_boxes`` [1, 100, 4],
    ``detection_scores`` [1, 100], ``detection_classes`` [1, 100] (1-based class ids as floats)
    and ``num_detections`` [1] (float32), after ``tf.image.combined_non_max_suppression``.

    Three strided 3x3 convolutions (ReLU) make a stride-8 feature map; 1x1 conv heads give box
    offsets and class logits per cell around a 24-pixel anchor. Weights are seeded variables."""
    import tensorflow as tf

    rng = np.random.default_rng(OD_SEED)

    def kernel(shape: tuple[int, ...], name: str) -> tf.Variable:
        fan_in = int(np.prod(shape[:-1]))
        value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        return tf.Variable(value, name=name)

    module = tf.Module()
    module.convs = [kernel((3, 3, 3, 16), "conv1"), kernel((3, 3, 16, 32), "conv2"),
                    kernel((3, 3, 32, 32), "conv3")]
    module.box_head = kernel((1, 1, 32, 4), "box_head")
    module.class_head = kernel((1, 1, 32, OD_CLASSES), "class_head")
    signature = tf.TensorSpec([1, None, None, 3], tf.uint8, name=OD_INPUT)

    def detect(input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.cast(input_tensor, tf.float32) / 127.5 - 1.0
        for weights in module.convs:
            x = tf.nn.relu(tf.nn.conv2d(x, weights, strides=2, padding="SAME"))
        offsets = tf.tanh(tf.nn.conv2d(x, module.box_head, 1, "SAME"))
        logits = tf.nn.conv2d(x, module.class_head, 1, "SAME")
        shape = tf.shape(x)
        cells_y, cells_x = shape[1], shape[2]
        height = tf.cast(tf.shape(input_tensor)[1], tf.float32)
        width = tf.cast(tf.shape(input_tensor)[2], tf.float32)
        cy = (tf.cast(tf.range(cells_y), tf.float32) + 0.5) / tf.cast(cells_y, tf.float32)
        cx = (tf.cast(tf.range(cells_x), tf.float32) + 0.5) / tf.cast(cells_x, tf.float32)
        cy, cx = tf.meshgrid(cy, cx, indexing="ij")
        centre_y = cy[None] + 0.1 * offsets[..., 0]
        centre_x = cx[None] + 0.1 * offsets[..., 1]
        half_h = 12.0 / height * tf.exp(0.5 * offsets[..., 2])
        half_w = 12.0 / width * tf.exp(0.5 * offsets[..., 3])
        boxes = tf.stack([centre_y - half_h, centre_x - half_w,
                          centre_y + half_h, centre_x + half_w], axis=-1)
        boxes = tf.reshape(tf.clip_by_value(boxes, 0.0, 1.0), [1, -1, 1, 4])
        scores = tf.reshape(tf.sigmoid(logits), [1, -1, OD_CLASSES])
        nms = tf.image.combined_non_max_suppression(
            boxes, scores, max_output_size_per_class=OD_MAX_DETECTIONS,
            max_total_size=OD_MAX_DETECTIONS, iou_threshold=0.5, score_threshold=0.5)
        return {
            "detection_boxes": nms.nmsed_boxes,
            "detection_scores": nms.nmsed_scores,
            "detection_classes": nms.nmsed_classes + LABEL_ID_OFFSET,
            "num_detections": tf.cast(nms.valid_detections, tf.float32),
        }

    module.detect = tf.function(detect, input_signature=[signature], autograph=False)
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.detect.get_concrete_function()})


def write_sized_images(folder: Path) -> list[str]:
    """Three images of the sizes in ``OD_SIZES`` (PNG, JPEG, PNG), cut from the canary's scenes
    and encoded by TensorFlow; their names, sorted."""
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    scenes = decoded_images()
    names = []
    for i, (height, width) in enumerate(OD_SIZES):
        pixels = scenes[i][:height, :width] if height <= IMAGE_SIZE and width <= IMAGE_SIZE \
            else np.tile(scenes[i], (2, 2, 1))[:height, :width]
        encode = tf.io.encode_jpeg if i == 1 else tf.io.encode_png
        name = f"scene{i}.{'jpg' if i == 1 else 'png'}"
        (folder / name).write_bytes(encode(pixels).numpy())
        names.append(name)
    return sorted(names)
