"""Any detector a user exports: a fixed batch, images of different sizes, the graph's own layers.

The TF Object Detection API exports ``serving_default`` with ``input_tensor: uint8[1, None, None,
3]``: batch one, any size. Three images used to be refused ("input input_tensor is uint8[3, ...],
the model expects ... uint8[1, ?, ?, 3]"), and images of different sizes could not be batched at
all. Here such an export (``model_builders.export_od_api_savedmodel``) is recorded on three images
of three sizes and checked, once unchanged and once under the setting that moves its numbers on
this machine, which the check must name, confirmed.

Which setting moves this model is asked of raw TensorFlow first (``od_knob``): capping oneDNN to
SSE4.1 does on a CPU where oneDNN runs by default (AVX-512 VNNI here; ``TF_ENABLE_ONEDNN_OPTS=0``
does not move this model there); on an AVX2-only CPU oneDNN is off by default and the cap is inert,
and switching oneDNN on is the change. TensorFlow subprocesses: one record, one probe (more only
where the first candidate moves nothing), one identical check, one moved check and its
confirmation re-runs; everything else runs in this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from model_builders import OD_INPUT, OD_SIZES, export_od_api_savedmodel, write_sized_images
from moving_knob import Knob

from envaudit.errors import EnvauditError
from envaudit.store import load_bundle

# Tried in order on the model itself; the first whose outputs differ from the golden's is used.
CANDIDATES = (Knob("ONEDNN_MAX_CPU_ISA", "SSE41"), Knob("TF_ENABLE_ONEDNN_OPTS", "0"),
              Knob("TF_ENABLE_ONEDNN_OPTS", "1"))

# Raw TensorFlow, as envaudit runs the model: TensorFlow's decoder, one image per call.
RAW_RUN = """
import sys, numpy as np, tensorflow as tf
model, out, *images = sys.argv[1:]
serve = tf.saved_model.load(model).signatures["serving_default"]
arrays = {}
for i, path in enumerate(images):
    pixels = tf.io.decode_image(open(path, "rb").read(), channels=3, expand_animations=False)
    for name, value in serve(input_tensor=tf.constant(pixels.numpy()[None])).items():
        arrays[f"output.{name}.{i}"] = value.numpy()
np.savez(out, **arrays)
"""


@pytest.fixture(scope="module")
def od_export() -> Path:
    """The export and three images of three sizes, under HOME (a redacted bundle shows ~)."""
    folder = Path(os.environ["HOME"]) / "od-export"
    export_od_api_savedmodel(folder / "saved_model")
    write_sized_images(folder / "images")
    return folder


@pytest.fixture(scope="module")
def od_golden(od_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    golden = tmp_path_factory.mktemp("od") / "golden"
    proc = run_cli("record", "--model", str(od_export / "saved_model"), "--inputs",
                   str(od_export / "images"), "--golden", str(golden))
    assert proc.returncode == 0, proc.stderr
    return golden


@pytest.fixture(scope="module")
def od_knob(od_export: Path, od_golden: Path, tmp_path_factory: pytest.TempPathFactory) -> Knob:
    """The first candidate under which raw TensorFlow computes other outputs than the golden's."""
    golden = load_bundle(od_golden).stages_by_mode["graph"]
    images = sorted((od_export / "images").iterdir())
    tried = []
    for knob in CANDIDATES:
        out = tmp_path_factory.mktemp("raw") / "outputs.npz"
        proc = subprocess.run(
            [sys.executable, "-I", "-c", RAW_RUN, str(od_export / "saved_model"), str(out),
             *map(str, images)], env=cli_env(TF_CPP_MIN_LOG_LEVEL="3", **knob.env),
            capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        with np.load(out) as raw:
            assert sorted(raw.files) == sorted(k for k in golden if k.startswith("output."))
            if any(raw[k].tobytes() != golden[k].tobytes() for k in raw.files):
                return knob
        tried.append(f"{knob.name}={knob.value}")
    pytest.skip(f"no setting moves this model's outputs on this machine (tried {tried})")


def _check(golden: Path, **env: str) -> tuple[int, dict]:
    proc = run_cli("check", "--golden", str(golden), "--format", "json", env=cli_env(**env))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def od_same(od_golden: Path) -> tuple[int, dict]:
    return _check(od_golden)


@pytest.fixture(scope="module")
def od_moved(od_golden: Path, od_knob: Knob) -> tuple[int, dict]:
    return _check(od_golden, **od_knob.env)


# --- the export, recorded and checked -------------------------------------------------------


def test_an_od_api_export_is_recorded_on_three_sizes_image_by_image(od_export, od_golden):
    import tensorflow as tf

    # The setup that was refused: a batch-one, any-size signature and three images of three sizes.
    served = tf.saved_model.load(str(od_export / "saved_model")).signatures["serving_default"]
    spec = served.structured_input_signature[1][OD_INPUT]
    assert (spec.dtype, spec.shape.as_list()) == (tf.uint8, [1, None, None, 3])
    files = sorted((od_export / "images").iterdir())
    sizes = [tuple(tf.io.decode_image(f.read_bytes(), channels=3).shape[:2]) for f in files]
    assert len(files) == 3 and len(set(sizes)) == 3 and set(sizes) == set(OD_SIZES)

    bundle = load_bundle(od_golden)
    workload = bundle.manifest["workload"]
    assert workload["inputs"]["per_image"] is True
    assert workload["model"]["inputs"] == {OD_INPUT: {"dtype": "uint8",
                                                      "shape": [1, None, None, 3]}}
    assert workload["model"]["detections"]["count"] == "num_detections"  # the OD API's names
    assert workload["model"]["layers"][:3] == ["Conv2D", "Conv2D_1", "Conv2D_2"]
    stages = bundle.stages_by_mode["graph"]
    for i, size in enumerate(sizes):  # each image its own entry, at its own size
        assert stages[f"input.{OD_INPUT}.{i}"].shape == (1, *size, 3)
        assert stages[f"output.detection_boxes.{i}"].shape == (1, 100, 4)
        assert stages[f"output.num_detections.{i}"].shape == (1,)
    assert list(stages)[:3] == [f"input.{OD_INPUT}.{i}" for i in range(3)]  # stage by stage


def test_the_same_environment_is_identical_with_detections_matched_per_image(od_same):
    code, report = od_same
    assert (code, report["verdict"]) == (0, "identical")
    det = report["detections"]
    assert det["golden"] == det["current"] == det["matched"] > 0
    assert "image by image (3 images" in report["basis"]
    assert "layers seen: 5 convolution" in report["basis"]


def test_the_setting_that_moves_the_export_is_found_in_its_first_conv_and_confirmed(od_moved,
                                                                                      od_knob):
    code, report = od_moved
    assert report["verdict"] != "identical" and code == (report["verdict"] != "equivalent")
    first = report["first_divergence"]["stage"]
    assert first.startswith("layer.Conv2D.")  # the first convolution, in one of the images
    moved = [s for s in report["stages"] if not s["identical"]]
    assert {s["name"].rsplit(".", 1)[1] for s in moved} == {"0", "1", "2"}  # every image
    assert all(s["identical"] for s in report["stages"] if s["name"].startswith("input."))
    det = report["detections"]
    assert det["golden"] > 0 and det["matched"] > 0 and det["max_score_delta"] > 0
    top = report["causes"][0]
    assert (top["change"], top["confidence"]) == (od_knob.change, "confirmed")
    assert report["confirmation_ran"] is True


# --- batches, in this process -----------------------------------------------------------------


def _fixed_batch_model(folder: Path, batch: int, *, total: bool) -> Path:
    """A SavedModel whose ``x`` is float32[batch, 4]: ``y`` = x @ W per example, and with
    ``total`` one number for the whole batch."""
    import tensorflow as tf

    module = tf.Module()
    module.w = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3) / 7)

    @tf.function(input_signature=[tf.TensorSpec([batch, 4], tf.float32, name="x")])
    def serve(x):
        y = tf.matmul(x, module.w)
        return {"y": y, "total": tf.reduce_sum(y)} if total else {"y": y}

    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    return folder


def test_a_fixed_batch_of_two_runs_three_examples_in_two_batches(tmp_path):
    from envaudit.workload.user_model import LoadedModel

    model = LoadedModel(_fixed_batch_model(tmp_path / "m", 2, total=False), "saved_model", None)
    assert model.inputs["x"].shape == (2, 4) and model.batch_size() == 2
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    alone = [model.run({"x": np.repeat(x[i:i + 1], 2, axis=0)}, layers=()).outputs["y"][0]
             for i in range(3)]  # each example in a batch of its own copies
    assert model.layers == ("MatMul",)
    y = model.run({"x": x})
    assert y.outputs["y"].shape == (3, 3) and y.layers["MatMul"].shape == (3, 3)
    assert np.array_equal(y.outputs["y"], np.stack(alone))  # the filling's rows dropped
    both = LoadedModel(_fixed_batch_model(tmp_path / "t", 2, total=True), "saved_model", None)
    with pytest.raises(EnvauditError, match="output total is \\[\\], not one row per example"):
        both.run({"x": x}, layers=())  # ``total`` cannot be split across batches
    assert both.run({"x": x[:2]}, layers=()).outputs["total"].shape == ()  # one batch: as is


def test_images_of_different_sizes_and_a_fixed_batch_of_two_are_refused(od_export):
    from envaudit.usermodel.spec import TensorSpec
    from envaudit.workload.user_model import decode_images

    files = sorted((od_export / "images").iterdir())
    spec = TensorSpec("uint8", (2, None, None, 3))
    with pytest.raises(EnvauditError, match="different sizes .* batches of exactly 2"):
        decode_images([f.read_bytes() for f in files], [f.name for f in files], spec, 2)
    fixed = TensorSpec("uint8", (None, 72, 96, 3))
    with pytest.raises(EnvauditError, match="is 64x100, the model expects uint8\\[\\?, 72, 96"):
        decode_images([f.read_bytes() for f in files], [f.name for f in files], fixed, None)


def test_a_golden_recorded_before_images_ran_one_at_a_time_still_checks(od_export, tmp_path):
    from envaudit import store
    from envaudit.pipeline.compose import check
    from envaudit.usermodel.record import record_model

    same = tmp_path / "same-size"  # three images of one size: batches of one, joined
    same.mkdir()
    first = sorted((od_export / "images").iterdir())[0].read_bytes()
    for i in range(3):
        (same / f"img{i}.png").write_bytes(first)
    recorded = record_model(tmp_path / "new", model=od_export / "saved_model", inputs=same)
    assert recorded.manifest["workload"]["inputs"]["per_image"] is False
    assert recorded.stages_by_mode["graph"]["output.detection_boxes"].shape == (3, 100, 4)
    workload = json.loads(json.dumps(recorded.manifest["workload"]))
    del workload["inputs"]["per_image"]  # the manifest as envaudit wrote it before
    workload["model"]["layers"] = []  # and without the graph's layers
    old = store.write_bundle(
        tmp_path / "old", fingerprint=recorded.fingerprint, workload=workload,
        images=tuple(recorded.manifest["images"]),
        stages={"graph": {k: v for k, v in recorded.stages_by_mode["graph"].items()
                          if not k.startswith("layer.")}},
        probes=recorded.probes, inputs=recorded.inputs)
    result = check(str(old), confirm=False)
    assert result.verdict == "identical"
    assert result.detections.golden == result.detections.matched > 0
    assert "layers seen: none" in result.subject.basis and "envaudit record" in result.subject.basis


# --- the pieces, without TensorFlow ---------------------------------------------------------


def test_batches_fill_the_last_batch_with_its_last_example_and_joined_drops_it():
    from envaudit.workload.model_batches import ModelArrays, batches, joined

    x = np.arange(5)[:, None] * np.ones((1, 2))
    cut = batches({"x": x}, 2, 5)
    assert [real for _, real in cut] == [2, 2, 1]
    assert cut[-1][0]["x"].tolist() == [[4, 4], [4, 4]]  # example 4 and its copy
    back = joined([(ModelArrays({"h": b["x"] + 1}, {"y": b["x"] * 10}), real)
                   for b, real in cut], 2)
    assert back.outputs["y"].tolist() == (x * 10).tolist()
    assert back.layers["h"].tolist() == (x + 1).tolist()
    flat = [(ModelArrays({"h": b["x"][:, 0]}, {"y": b["x"].sum()}), real) for b, real in cut]
    with pytest.raises(EnvauditError, match="^output y is \\[\\], not one row per example"):
        joined(flat, 2)  # the role in the message comes from where the array was kept
    assert batches({"x": x}, None, 5)[0][0]["x"] is x  # any batch size: one call, untouched


def test_layers_are_kept_in_model_order_within_the_budget():
    from envaudit.workload.model_batches import ModelArrays, within_budget

    run = ModelArrays({"a": np.zeros(10, np.uint8), "b": np.zeros(10, np.uint8),
                       "c": np.zeros(1, np.uint8)}, {"y": np.zeros(100, np.uint8)})
    kept = within_budget(run, 15)
    assert list(kept.layers) == ["a"]  # c came after b did not fit
    assert list(kept.outputs) == ["y"]  # the outputs always, whatever their size


def test_graph_layer_names_are_plain_stable_and_short():
    from envaudit.usermodel.spec import PLAIN
    from envaudit.workload.graph_layers import MAX_NAME, layer_name

    assert layer_name("StatefulPartitionedCall/model/conv1/Conv2D") == "model.conv1.Conv2D"
    long = "StatefulPartitionedCall/" + "/".join(["block_with_a_long_name"] * 8) + "/MatMul"
    name = layer_name(long)
    assert len(name) == MAX_NAME and PLAIN.fullmatch(name)
    assert name.endswith(f"-{hashlib.sha256(long.encode()).hexdigest()[:8]}")
    assert layer_name(long.replace("/MatMul", "/MatMul_1")) != name


def test_record_says_when_a_savedmodel_shows_no_layers_and_why(tmp_path):
    import tensorflow as tf

    module = tf.Module()  # nothing but an elementwise op: no convolution, no matrix product
    serve = tf.function(lambda x: {"y": x * 2.0},
                        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": serve})
    assert not [op for op in serve.get_concrete_function().graph.get_operations()
                if op.type in ("Conv2D", "MatMul", "BatchMatMulV2")]
    np.savez(tmp_path / "x.npz", x=np.ones((2, 4), np.float32))
    proc = run_cli("record", "--model", str(tmp_path / "m"), "--inputs", str(tmp_path / "x.npz"),
                   "--golden", str(tmp_path / "g"))
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("envaudit: note:")]
    assert len(notes) == 1 and "outputs only" in notes[0] and "no convolution" in notes[0]
    assert load_bundle(tmp_path / "g").manifest["workload"]["model"]["layers"] == []
