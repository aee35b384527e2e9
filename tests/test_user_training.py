"""A user's own compiled Keras model, trained a few steps from its saved weights and optimizer state
(``envaudit record --model M.keras --train-inputs data.npz``) and checked step by step: the same
bits here, a thread count that moves a convolution's gradient named and confirmed, training
repeated in fresh processes, and every bad input refused in one line.

The model is small and built here (two convolutions, SGD with momentum, mean squared error); the
bundle is recorded once for the module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from forge import reseal

from envaudit import store
from envaudit.errors import EnvauditError
from envaudit.usermodel.training import split_names, steps_problem

SEED = 20260101
STEPS = 3


def build_model(path: Path, *, compiled: bool = True) -> None:
    """A small functional model of two convolutions and a dense head, saved at ``path``."""
    import keras

    keras.utils.set_random_seed(SEED)
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(image, keras.layers.Dense(4, name="head")(x))
    if compiled:
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    model.save(path)


def write_data(folder: Path) -> tuple[Path, Path]:
    """The inputs a check runs the model on, and a training file of 8 examples (x and y)."""
    rng = np.random.default_rng(SEED)
    inputs, data = folder / "inputs.npz", folder / "data.npz"
    np.savez(inputs, image=rng.random((4, 16, 16, 3), dtype=np.float32))
    np.savez(data, x=rng.random((8, 16, 16, 3), dtype=np.float32),
             y=rng.random((8, 4), dtype=np.float32))
    return inputs, data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("own-training")
    build_model(folder / "model.keras")
    build_model(folder / "plain.keras", compiled=False)
    inputs, data = write_data(folder)
    return {"model": folder / "model.keras", "plain": folder / "plain.keras",
            "inputs": inputs, "data": data, "folder": folder}


@pytest.fixture(scope="module")
def trained_golden(files: dict[str, Path]) -> Path:
    golden = files["folder"] / "golden"
    done = run_cli("record", "--model", str(files["model"]), "--inputs", str(files["inputs"]),
                   "--train-inputs", str(files["data"]), "--steps", str(STEPS),
                   "--golden", str(golden), "--no-history", "--quiet")
    assert done.returncode == 0, done.stderr
    return golden


def check(golden: Path, *extra: str, **env: str | None) -> tuple[int, dict]:
    done = run_cli("check", "--golden", str(golden), "--format", "json", "--no-history", *extra,
                   env=cli_env(**env))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_the_bundle_holds_the_steps_and_the_training_file_once(trained_golden, files):
    bundle = store.load_bundle(trained_golden)
    mode = bundle.modes[0]
    assert bundle.training_steps == STEPS and list(bundle.training) == [mode]
    arrays = bundle.training[mode]
    assert list(arrays)[:4] == ["step1.batch.x", "step1.batch.y", "step1.loss",
                                "step1.grad.conv1.kernel"]
    with np.load(files["data"]) as data:
        assert np.array_equal(arrays["step1.batch.x"], data["x"])
    assert not [n for n in arrays if n.startswith(("step2.batch", "step3.batch"))]
    assert not np.array_equal(arrays["step1.var.conv1.kernel"], arrays["step3.var.conv1.kernel"])
    assert float(arrays["step3.loss"]) < float(arrays["step1.loss"])  # it learns
    settings = bundle.manifest["training"]["settings"]
    assert settings["optimizer"] == "SGD, learning rate 0.05, momentum 0.9"
    assert settings["loss"] == "mse"
    assert "8 examples" in settings["batch"]
    import hashlib

    assert hashlib.sha256(files["data"].read_bytes()).hexdigest() in settings["train_inputs"]
    assert steps_problem("golden", arrays, STEPS) is None


def test_a_check_trains_the_same_steps_bit_for_bit(trained_golden):
    code, result = check(trained_golden)
    assert code == 0 and result["verdict"] == "identical"
    training = result["training"]
    assert training["steps"] == STEPS
    [mode] = training["modes"]
    assert [s["step"] for s in mode["steps"]] == [1, 2, 3]
    assert all(s["verdict"] == "identical" for s in mode["steps"])
    assert mode["first_moved_step"] is None
    assert "training step" in result["headline"]
    assert not [s for s in result["stages"] if s["name"].startswith("step")]


def test_one_thread_per_op_names_the_first_moved_gradient_and_confirms_it(trained_golden):
    code, result = check(trained_golden, TF_NUM_INTRAOP_THREADS="1")
    [mode] = result["training"]["modes"]
    if mode["first_moved_step"] is None:
        pytest.skip("one intra-op thread moves no training step of this model on this CPU")
    assert code == 0 and result["verdict"] in ("equivalent", "drift")
    assert mode["first_moved_step"] == 1
    assert mode["first_moved"].startswith("step1.grad.conv")
    assert result["first_divergence"]["stage"] == mode["first_moved"]
    top = result["causes"][0]
    assert top["change"].startswith("env.TF_NUM_INTRAOP_THREADS")
    assert top["confidence"] == "confirmed"
    assert "moved from step 1 on" in result["headline"]


def test_repeated_training_in_fresh_processes_is_deterministic(trained_golden):
    code, result = check(trained_golden, "--repeat", "2", "--no-confirm")
    determinism = result["training"]["determinism"]
    assert code == 0
    assert determinism["processes"] == 2 and determinism["fresh_processes"] is True
    assert determinism["deterministic"] is True and determinism["first_array"] is None


def refused(*args: str) -> str:
    done = run_cli("record", "--no-history", "--quiet", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_a_model_saved_without_compile_is_refused(files):
    said = refused("--model", str(files["plain"]), "--inputs", str(files["inputs"]),
                   "--train-inputs", str(files["data"]),
                   "--golden", str(files["folder"] / "never1"))
    assert "was saved without compile()" in said
    assert not (files["folder"] / "never1").exists()


def test_a_savedmodel_with_train_inputs_is_refused(files, tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    said = refused("--model", str(saved), "--inputs", str(files["inputs"]),
                   "--train-inputs", str(files["data"]), "--golden", str(tmp_path / "g"))
    assert "needs a compiled .keras model" in said


@pytest.mark.parametrize("arrays, words", [
    ({"x": np.zeros((8, 16, 16, 3), np.float32), "y": np.zeros((8, 4), np.float32),
      "z": np.zeros((8,), np.float32)}, "'z', which is neither an input"),
    ({"x": np.zeros((8, 16, 16, 3), np.float32), "y": np.zeros((7, 4), np.float32)},
     "different numbers of examples"),
    ({"x": np.zeros((8, 16, 16, 3), np.float32)}, "no output 'head'"),
    ({"x": np.array([object()] * 8), "y": np.zeros((8, 4), np.float32)}, "not a readable .npz"),
])
def test_a_bad_training_file_is_refused_in_one_line(files, tmp_path, arrays, words):
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    said = refused("--model", str(files["model"]), "--inputs", str(files["inputs"]),
                   "--train-inputs", str(data), "--golden", str(tmp_path / "g"))
    assert words in said


def test_training_options_need_their_model(files, tmp_path):
    assert "pass --model PATH too" in refused("--train-inputs", str(files["data"]),
                                              "--golden", str(tmp_path / "a"))
    assert "pass --train-inputs" in refused("--model", str(files["model"]), "--inputs",
                                            str(files["inputs"]), "--steps", "2",
                                            "--golden", str(tmp_path / "b"))


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["training"]["settings"].pop("loss"), "'training.settings' of a model"),
    (lambda m: m["training"].update(steps=4), "does not hold 4 training steps"),
    (lambda m: m["training"].update(modes=["eager"]), "'training.modes'"),
])
def test_a_tampered_training_entry_is_refused(trained_golden, tmp_path, edit, words):
    import shutil

    copy = tmp_path / "golden"
    shutil.copytree(trained_golden, copy)
    reseal(copy, edit)
    done = run_cli("check", "--golden", str(copy), "--no-history", "--quiet")
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_training_file_names_its_inputs_and_targets():
    assert split_names(["x", "y"], ["image"], ["head"]) == ({"image": "x"}, {"head": "y"})
    assert split_names(["a", "b", "out"], ["a", "b"], ["out"]) == (
        {"a": "a", "b": "b"}, {"out": "out"})
    with pytest.raises(EnvauditError, match="both 'x' and 'image'"):
        split_names(["x", "image", "y"], ["image"], ["head"])
    with pytest.raises(EnvauditError, match="no input 'b'"):
        split_names(["a", "y"], ["a", "b"], ["head"])


def test_recorded_steps_out_of_order_or_with_a_stray_array_are_refused():
    scalar, weight = np.float32(1.0), np.ones((2,), np.float32)
    good = {"step1.batch.x": weight, "step1.loss": scalar, "step1.grad.w": weight,
            "step1.var.w": weight, "step2.loss": scalar, "step2.grad.w": weight,
            "step2.var.w": weight}
    assert steps_problem("g", good, 2) is None
    assert "does not hold 3" in steps_problem("g", good, 3)
    assert "not an array" in steps_problem("g", {**good, "step2.batch.x": weight}, 2)
    assert "not a training step" in steps_problem("g", {**good, "loss": scalar}, 2)
    assert "same variables" in steps_problem("g", {**good, "step2.var.v": weight}, 2)
    assert "not a float loss" in steps_problem("g", {**good, "step1.loss": weight}, 2)


def test_a_dropout_layer_draws_the_same_masks_in_every_process(tmp_path):
    """Keras layers draw their seeds when the model is loaded: seeded alike in every process, a
    model with dropout trains the same steps in the check and in fresh processes."""
    import keras

    keras.utils.set_random_seed(SEED)
    features = keras.Input((6,), name="features")
    hidden = keras.layers.Dropout(0.5, name="drop")(keras.layers.Dense(16, name="h")(features))
    model = keras.Model(features, keras.layers.Dense(2, name="out")(hidden))
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "drop.keras")
    rng = np.random.default_rng(SEED)
    np.savez(tmp_path / "in.npz", features=rng.random((4, 6), dtype=np.float32))
    np.savez(tmp_path / "data.npz", x=rng.random((8, 6), dtype=np.float32),
             y=rng.random((8, 2), dtype=np.float32))
    done = run_cli("record", "--model", str(tmp_path / "drop.keras"), "--inputs",
                   str(tmp_path / "in.npz"), "--train-inputs", str(tmp_path / "data.npz"),
                   "--golden", str(tmp_path / "g"), "--no-history", "--quiet")
    assert done.returncode == 0, done.stderr
    code, result = check(tmp_path / "g", "--repeat", "2", "--no-confirm")
    assert code == 0 and result["verdict"] == "identical", result["headline"]
    assert result["training"]["determinism"]["deterministic"] is True
    assert "keras.utils.set_random_seed" in result["training"]["settings"]["start"]


def test_training_a_model_in_process_puts_the_callers_random_states_back(files):
    """envaudit.check() runs in a user's process: the seed training sets for the model's layers
    must not stay set there."""
    import random

    from envaudit.usermodel.training import read_train_inputs
    from envaudit.workload.model_training import train_model

    random.seed(12345)
    np.random.seed(54321)
    expected = (random.random(), np.random.random())
    random.seed(12345)
    np.random.seed(54321)
    trained = train_model(files["model"], read_train_inputs(files["data"]), 1, "graph")
    assert trained.arrays["step1.loss"].shape == ()
    assert (random.random(), np.random.random()) == expected
