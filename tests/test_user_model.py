"""A user's own model end to end: record it on its inputs, check it here and under the setting
that moves numbers on this machine (``moving_knob``: oneDNN switched off where it is on by
default, on where it is off).

The models are built on the fly (``model_builders``): the project's detector exported as a
SavedModel with the Object Detection API's outputs, and a Keras functional model saved as
``.keras``. Both live under the tests' HOME, so a redacted bundle records them as ``~/...`` and a
check finds them again there. Each recording and each check is one envaudit subprocess, made once
per session by the fixtures here and shared by the tests that read it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from model_builders import (
    export_detector_savedmodel,
    save_keras_model,
    write_images,
    write_npz_inputs,
)

from envaudit.store import load_bundle


@pytest.fixture(scope="session")
def models() -> Path:
    """Both models, the canary's images and their decoded arrays, under HOME/models."""
    folder = Path(os.environ["HOME"]) / "models"
    folder.mkdir()
    export_detector_savedmodel(folder / "detector")
    save_keras_model(folder / "classifier.keras")
    (folder / "images").mkdir()
    write_images(folder / "images")
    write_npz_inputs(folder / "inputs.npz")
    return folder


def _record(models: Path, golden: Path, model: str, *extra: str) -> Path:
    proc = run_cli("record", "--model", str(models / model), "--inputs",
                   str(models / "images"), "--golden", str(golden), *extra)
    assert proc.returncode == 0, proc.stderr
    return golden


@pytest.fixture(scope="session")
def detector_golden(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(models, tmp_path_factory.mktemp("user") / "detector", "detector")


@pytest.fixture(scope="session")
def keras_golden(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(models, tmp_path_factory.mktemp("user") / "classifier", "classifier.keras")


def _check(golden: Path, *extra: str, quiet: bool = True, **env: str) -> tuple[int, dict]:
    proc = run_cli("check", "--golden", str(golden), "--format", "json", *extra,
                   env=cli_env(**env))
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stderr == "" or not quiet, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def detector_knob_moved(detector_golden: Path, moving_knob) -> tuple[int, dict]:
    return _check(detector_golden, **moving_knob.env)


@pytest.fixture(scope="session")
def keras_knob_moved(keras_golden: Path, moving_knob) -> tuple[int, dict]:
    return _check(keras_golden, **moving_knob.env)


# --- what a bundle of a user model holds --------------------------------------------------------


def test_the_bundle_names_the_model_its_specs_inputs_and_outputs(detector_golden, models):
    bundle = load_bundle(detector_golden)
    model = bundle.manifest["workload"]["model"]
    assert bundle.is_user_model and model["kind"] == "saved_model"
    assert model["path"] == "~/models/detector"  # redacted: home shown as ~
    assert model["signature"] == "serving_default" and model["mode"] == "graph"
    assert model["inputs"] == {"images": {"dtype": "uint8", "shape": [None, 100, 100, 3]}}
    assert sorted(model["outputs"]) == ["detection_boxes", "detection_classes",
                                        "detection_scores", "num_detections"]
    assert model["detections"]["count"] == "num_detections"  # the OD API, recognised
    inputs = bundle.manifest["workload"]["inputs"]
    assert inputs["files"] == sorted(p.name for p in (models / "images").iterdir())
    # The inputs themselves are in the bundle, byte for byte.
    first = (models / "images" / inputs["files"][0]).read_bytes()
    assert bundle.inputs["image.0"].tobytes() == first
    assert len(model["sha256"]) == 64 and model["files"] >= 3


def test_a_keras_bundle_records_each_named_layer_as_a_stage(keras_golden):
    bundle = load_bundle(keras_golden)
    stages = list(bundle.stages_by_mode["graph"])
    assert stages[0] == "input.image"
    layers = [s for s in stages if s.startswith("layer.")]
    assert layers[:3] == ["layer.pixels_to_unit", "layer.stem_conv", "layer.stem_bn"]
    assert stages[-2:] == ["output.embedding", "output.logits"]
    assert bundle.manifest["workload"]["model"]["signature"] is None


# --- same environment: identical ------------------------------------------------------------


@pytest.mark.parametrize("which", ["detector", "keras"])
def test_the_same_environment_is_identical(which, detector_golden, keras_golden):
    code, report = _check(detector_golden if which == "detector" else keras_golden)
    assert (code, report["verdict"]) == (0, "identical")
    assert report["workload"] == "user-model"
    assert report["witness"]["full_precision"] is True
    assert report["witness"]["probes"] >= 20
    assert "canary probes" in report["basis"]
    if which == "detector":
        assert report["detections"]["matched"] == report["detections"]["golden"] == 23


# --- the moving knob: where it diverged, detections, the confirmed cause -----------------------


def test_the_knob_names_the_divergent_output_compares_boxes_and_confirms(detector_knob_moved,
                                                                         moving_knob):
    code, report = detector_knob_moved
    assert report["verdict"] in ("equivalent", "drift") and code == (report["verdict"] == "drift")
    # The SavedModel's own convolutions are fetched from its graph: a change shows there first.
    assert report["first_divergence"]["stage"].startswith("layer.")
    assert "layers seen:" in report["basis"] and "inside the signature's graph" in report["basis"]
    det = report["detections"]
    assert det["golden"] == 23 and det["current"] == 23 and det["matched"] == 23
    assert det["max_score_delta"] > 0  # compared, and the scores moved
    top = report["causes"][0]
    assert top["confidence"] == "confirmed"
    assert top["change"] == moving_knob.change
    assert report["confirmation_ran"] is True


def test_the_knob_names_the_first_divergent_keras_layer(keras_knob_moved, moving_knob):
    code, report = keras_knob_moved
    first = report["first_divergence"]["stage"]
    assert first.startswith("layer.") and first != "layer.pixels_to_unit"
    names = [s["name"] for s in report["stages"]]
    assert all(s["identical"] for s in report["stages"][:names.index(first)])
    assert report["causes"][0]["confidence"] == "confirmed"
    assert report["causes"][0]["change"] == moving_knob.change
    assert report["verdict"] != "identical"  # equivalent is not identical


def test_a_tolerance_accepts_a_known_difference_and_never_calls_it_identical(keras_golden,
                                                                           moving_knob):
    code, report = _check(keras_golden, "--no-confirm", "--tolerance", "atol:1e-3",
                          **moving_knob.env)
    outputs = [s for s in report["stages"] if s["name"].startswith("output.")]
    assert all(s["tolerance"] == "rtol 0, atol 0.001" for s in outputs)
    assert {s["status"] for s in outputs} == {"tolerated"}
    assert (code, report["verdict"]) == (0, "equivalent")
    assert "tolerances given" in report["basis"]


def test_a_tight_tolerance_makes_the_same_difference_a_finding(keras_golden, moving_knob):
    code, report = _check(keras_golden, "--no-confirm", "--tolerance",
                          "logits=rtol:1e-9,atol:0", **moving_knob.env)
    logits = next(s for s in report["stages"] if s["name"] == "output.logits")
    assert logits["status"] == "changed" and logits["tolerance"] == "rtol 1e-09, atol 0"
    embedding = next(s for s in report["stages"] if s["name"] == "output.embedding")
    assert embedding["tolerance"] is None  # no default given: only logits has one
    assert (code, report["verdict"]) == (1, "drift")
    assert "output.logits" in report["headline"]


# --- a model that moved or changed ------------------------------------------------------------


def test_a_moved_model_is_refused_until_model_points_at_it(keras_golden, models, tmp_path):
    moved = tmp_path / "elsewhere.keras"
    shutil.copy(models / "classifier.keras", moved)
    original = models / "classifier.keras"
    hidden = models / "classifier.keras.away"
    original.rename(hidden)
    try:
        proc = run_cli("check", "--golden", str(keras_golden))
        _assert_one_line_error(proc, "the recorded model ~/models/classifier.keras is not there")
        assert "--model PATH" in proc.stderr
        code, report = _check(keras_golden, "--model", str(moved))
        assert (code, report["verdict"]) == (0, "identical")
    finally:
        hidden.rename(original)


def test_a_changed_model_is_refused_not_compared(keras_golden, models, tmp_path):
    changed = tmp_path / "changed.keras"
    data = bytearray((models / "classifier.keras").read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    proc = run_cli("check", "--golden", str(keras_golden), "--model", str(changed))
    _assert_one_line_error(proc, "changed since the golden was recorded")


def _assert_one_line_error(proc, words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envaudit: error: "), proc.stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- bad input at record: exit 2, one line, nothing written -----------------------------------


def _bad_inputs(models: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    not_saved_model = tmp / "not_a_model"
    not_saved_model.mkdir()
    (not_saved_model / "weights.bin").write_bytes(b"\0" * 16)
    garbage = tmp / "garbage.keras"
    garbage.write_bytes(os.urandom(256))
    truncated = tmp / "truncated.keras"
    truncated.write_bytes((models / "classifier.keras").read_bytes()[:4000])
    wrong_dtype = tmp / "float.npz"
    np.savez(wrong_dtype, images=np.zeros((2, 100, 100, 3), np.float32))
    wrong_shape = tmp / "small.npz"
    np.savez(wrong_shape, images=np.zeros((2, 50, 50, 3), np.uint8))
    wrong_name = tmp / "named.npz"
    np.savez(wrong_name, pixels=np.zeros((2, 100, 100, 3), np.uint8))
    detector, images = str(models / "detector"), str(models / "images")
    return {
        "not a SavedModel": ([str(not_saved_model), images], "is not a SavedModel"),
        "garbage .keras": ([str(garbage), images], "is not a readable .keras file"),
        "truncated .keras": ([str(truncated), images], "is not a readable .keras file"),
        "missing inputs": ([detector, str(tmp / "nowhere")], "do not exist"),
        "missing model": ([str(tmp / "gone"), images], "does not exist"),
        "wrong dtype": ([detector, str(wrong_dtype)],
                        "input images is float32[2, 100, 100, 3], the model expects images:"
                        " uint8[?, 100, 100, 3]"),
        "wrong shape": ([detector, str(wrong_shape)], "uint8[2, 50, 50, 3], the model expects"),
        "wrong name": ([detector, str(wrong_name)],
                       "the inputs are named pixels, the model expects images"),
    }


CASES = ("not a SavedModel", "garbage .keras", "truncated .keras", "missing inputs",
         "missing model", "wrong dtype", "wrong shape", "wrong name")


@pytest.mark.parametrize("case", CASES)
def test_bad_models_and_inputs_are_refused_and_nothing_is_written(case, models, tmp_path):
    (model, inputs), words = _bad_inputs(models, tmp_path)[case]
    target = tmp_path / "golden"
    proc = run_cli("record", "--model", model, "--inputs", inputs, "--golden", str(target))
    _assert_one_line_error(proc, words)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".golden")]


# --- options that do not fit ------------------------------------------------------------------


def test_options_that_do_not_fit_the_golden_are_refused(keras_golden, golden_bundle, models):
    cases = [
        (("check", "--golden", str(keras_golden), "--tolerance", "scores=rtol:1e-5"),
         "--tolerance names 'scores', which the model does not output; its outputs are"
         " embedding, logits"),
        (("check", "--golden", str(keras_golden), "--tolerance", "rtol=1e-5"),
         "expected [OUTPUT=]rtol:X,atol:Y"),
        (("check", "--golden", str(keras_golden), "--detections", "boxes=a,scores=b"),
         "does not name classes"),
        (("check", "--golden", str(keras_golden), "--modes", "xla"),
         "--modes applies to the canary workload"),
        (("check", "--golden", str(golden_bundle), "--model", str(models / "detector")),
         "--model applies to a golden of your own model"),
        (("record", "--inputs", str(models / "images"), "--golden", str(models / "x")),
         "--inputs describes your own model: pass --model PATH too"),
        (("record", "--model", str(models / "detector"), "--golden", str(models / "x")),
         "--model needs --inputs PATH"),
        (("record", "--model", str(models / "classifier.keras"), "--inputs",
          str(models / "images"), "--signature", "serving_default", "--golden",
          str(models / "x")), "a Keras model has none"),
    ]
    for args, words in cases:
        _assert_one_line_error(run_cli(*args), words)
    assert not (models / "x").exists()


def test_detections_named_on_a_model_without_them_are_refused(models, tmp_path):
    proc = run_cli("record", "--model", str(models / "classifier.keras"), "--inputs",
                   str(models / "images"), "--golden", str(tmp_path / "g"),
                   "--detections", "boxes=logits,scores=embedding,classes=logits")
    _assert_one_line_error(proc, "the detection outputs cannot be compared: logits is [6, 10],"
                                 " boxes must be [images, detections, 4]")
    assert not (tmp_path / "g").exists()


# --- someone else's bundle --------------------------------------------------------------------


def _forge_model(source: Path, target: Path, *, model: dict | None = None,
                 stages: dict | None = None) -> Path:
    """``source`` re-written through the store with parts of its model entry or arrays replaced:
    every checksum valid, only the content hostile."""
    from envaudit import store

    bundle = store.load_bundle(source)
    workload = json.loads(json.dumps(bundle.manifest["workload"]))
    workload["model"].update(model or {})
    arrays = {m: {**a, **(stages or {})} for m, a in bundle.stages_by_mode.items()}
    return store.write_bundle(target, fingerprint=bundle.fingerprint, workload=workload,
                              images=tuple(bundle.manifest["images"]), stages=arrays,
                              probes=bundle.probes, inputs=bundle.inputs)


def test_a_forged_model_entry_is_refused_before_anything_runs(keras_golden, tmp_path):
    cases = [
        ({"signature": "../../etc"}, "a plain name or null"),
        ({"kind": "pickle"}, "'workload.model.kind' must be one of saved_model, keras"),
        ({"detections": {"boxes": "x", "scores": "y", "classes": "z", "count": None}},
         "must name outputs of the model"),
        ({"layers": ["a/../b"]}, "list of distinct plain names"),
        ({"inputs": {"image": {"dtype": "object", "shape": [None]}}}, "a dtype and a shape"),
    ]
    for i, (entry, words) in enumerate(cases):
        forged = _forge_model(keras_golden, tmp_path / f"forged{i}", model=entry)
        _assert_one_line_error(run_cli("check", "--golden", str(forged)), words)


def test_a_forged_array_set_is_unusable(keras_golden, tmp_path):
    forged = _forge_model(keras_golden, tmp_path / "forged",
                          stages={"layer.extra": np.zeros(3, np.float32)})
    _assert_one_line_error(run_cli("check", "--golden", str(forged)),
                           "its arrays are not the inputs, layers and outputs its manifest lists")


def test_a_recorded_path_others_can_write_to_is_not_loaded(keras_golden, models, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(models / "classifier.keras", shared / "classifier.keras")
    shared.chmod(0o777)  # anyone could have put this file here
    forged = _forge_model(keras_golden, tmp_path / "forged",
                          model={"path": str(shared / "classifier.keras")})
    proc = run_cli("check", "--golden", str(forged))
    _assert_one_line_error(proc, "is not safe to load from")
    assert "writable by other users" in proc.stderr and "pass --model PATH" in proc.stderr
    shared.chmod(0o755)
    code, report = _check(forged)  # the same file, now only its owner can replace it
    assert report["verdict"] == "identical"


def test_a_relative_recorded_path_is_never_resolved_against_the_working_folder(keras_golden,
                                                                              tmp_path):
    forged = _forge_model(keras_golden, tmp_path / "forged", model={"path": "classifier.keras"})
    proc = run_cli("check", "--golden", str(forged))
    _assert_one_line_error(proc, "the recorded model classifier.keras is not there")


def test_location_problem_follows_ownership_and_write_bits(tmp_path):
    from envaudit.usermodel.files import location_problem

    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    assert location_problem(model) is None
    model.chmod(0o666)
    assert "writable by other users" in location_problem(model)
    model.chmod(0o644)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: others may add files, not replace this user's
    (sticky / "m.keras").write_bytes(b"x")
    assert location_problem(sticky / "m.keras") is None


# --- a SavedModel whose parts live elsewhere, or that anyone can write ----------------------------


def _record_and_check(models: Path, golden: Path, model: Path, words: str) -> None:
    """Both ``record`` and ``check --model`` refuse ``model`` with one line holding ``words``,
    before anything runs or is written."""
    proc = run_cli("record", "--model", str(model), "--inputs", str(models / "images"),
                   "--golden", str(model.parent / "new-golden"))
    _assert_one_line_error(proc, words)
    assert not (model.parent / "new-golden").exists()
    _assert_one_line_error(run_cli("check", "--golden", str(golden), "--model", str(model)),
                           words)


def test_a_savedmodel_with_a_symlinked_folder_is_refused(models, detector_golden, tmp_path):
    from envaudit.usermodel.files import model_files

    model = tmp_path / "detector"
    shutil.copytree(models / "detector", model)
    shared = tmp_path / "shared" / "vars"  # e.g. a team folder anyone can write
    shared.parent.mkdir()
    shutil.move(model / "variables", shared)
    shared.chmod(0o777)
    (model / "variables").symlink_to(shared)
    assert (model / "variables").resolve() == shared
    assert any(shared.iterdir())  # the weights TensorFlow would load through the link...
    assert not any("variables" in p.parts for p in model_files(model))  # ...that no walk hashes
    _record_and_check(models, detector_golden, model, "variables is a symbolic link to")


def test_a_savedmodel_with_a_file_anyone_can_write_is_refused(models, detector_golden, tmp_path):
    model = tmp_path / "detector"
    shutil.copytree(models / "detector", model)
    weights = next((model / "variables").glob("variables.data-*"))
    weights.chmod(0o666)
    assert weights.stat().st_mode & 0o002
    _record_and_check(models, detector_golden, model, "is writable by every user")


# --- the precision witness --------------------------------------------------------------------


def test_the_witness_sees_reduced_precision_in_the_probes(workload_result):
    from envaudit.compare.probes import compare_probes
    from envaudit.compare.verdict import classify, model_headline
    from envaudit.compare.witness import precision_witness

    golden = workload_result.probes
    same = precision_witness(compare_probes(golden, golden))
    assert same.full_precision and same.worst_error_ulps < 16 and same.probes >= 20
    lossy = dict(golden)
    lossy["matmul_square"] = _bf16(golden["matmul_square"])
    probes = compare_probes(golden, lossy)
    witness = precision_witness(probes)
    assert not witness.full_precision and witness.lossy == ("matmul_square",)
    assert witness.worst_probe == "matmul_square" and witness.worst_error_ulps > 1000
    assert classify((), probes) == "precision_loss"
    text = model_headline("precision_loss", (), probes, None, witness)
    assert text.startswith("Precision loss: this environment does not compute fp32 at full"
                           " precision: canary probe 'matmul_square'")


def _bf16(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def test_a_check_in_an_environment_that_rounds_matmuls_to_bf16_is_precision_loss(
        keras_golden, tmp_path):
    # Fault injection from the test side only: this process's matmuls round their inputs to bf16.
    (tmp_path / "sitecustomize.py").write_text(
        "import tensorflow as tf\n"
        "_matmul = tf.matmul\n"
        "def _bf16(t):\n"
        "    return tf.cast(tf.cast(t, tf.bfloat16), t.dtype)\n"
        "tf.matmul = lambda a, b, **kw: _matmul(_bf16(tf.convert_to_tensor(a)),"
        " _bf16(tf.convert_to_tensor(b)), **kw)\n")
    # (TensorFlow, imported before envaudit can quiet it, logs to stderr here.)
    code, report = _check(keras_golden, "--no-confirm", quiet=False, PYTHONPATH=str(tmp_path))
    assert (code, report["verdict"]) == (1, "precision_loss")
    assert report["witness"]["full_precision"] is False
    assert any(name.startswith("matmul") for name in report["witness"]["lossy"])
    assert "does not compute fp32 at full precision" in report["headline"]


# --- the other ways a model runs and is fed ---------------------------------------------------


def test_a_keras_model_compiled_with_xla_is_recorded_and_checked_in_xla_mode(models, tmp_path):
    from model_builders import keras_model

    compiled = keras_model()
    compiled.compile(jit_compile=True)  # Keras keeps this in the file; predict then uses XLA
    compiled.save(tmp_path / "compiled.keras")
    golden = tmp_path / "golden"
    proc = run_cli("record", "--model", str(tmp_path / "compiled.keras"), "--inputs",
                   str(models / "images"), "--golden", str(golden))
    assert proc.returncode == 0, proc.stderr
    bundle = load_bundle(golden)
    assert bundle.manifest["workload"]["model"]["mode"] == "xla" and bundle.modes == ("xla",)
    assert any(name.startswith("xla.") for name in bundle.probes)  # XLA's own witness probes
    code, report = _check(golden)
    assert (code, report["verdict"]) == (0, "identical")
    assert report["modes"][0]["mode"] == "xla" and report["witness"]["probes"] == 31


def test_arrays_from_an_npz_feed_the_signature_by_name(models, tmp_path):
    golden = tmp_path / "golden"
    proc = run_cli("record", "--model", str(models / "detector"), "--inputs",
                   str(models / "inputs.npz"), "--golden", str(golden))
    assert proc.returncode == 0, proc.stderr
    bundle = load_bundle(golden)
    assert bundle.manifest["workload"]["inputs"] == {"kind": "arrays", "files": [], "feed": None,
                                                     "per_image": False}
    stages = list(bundle.stages_by_mode["graph"])
    assert not [s for s in stages if s.startswith("input.")]  # nothing decoded
    assert stages[0].startswith("layer.") and "output.detection_boxes" in stages
    code, report = _check(golden)
    assert (code, report["verdict"]) == (0, "identical")
    assert report["detections"]["golden"] == 23
