"""``envaudit.training``: a user's own training step recorded, compared, repeated for
determinism, and kept in a file -- with real TensorFlow on the CPU and tiny models (3 steps).

The nondeterministic step is the one users meet: a parallel ``tf.data`` map with a stateful random
op and ``deterministic=False``. Unseeded, op determinism refuses its random op (TensorFlow's words
are the finding); seeded, only the map's order varies, and op determinism makes the runs agree --
the fix confirmed, measured on this machine.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cli_env

from envaudit import training
from envaudit.compare.training import parse
from envaudit.errors import EnvauditError
from envaudit.workload.custom_training import RandomState


@pytest.fixture(autouse=True)
def unseeded_process():
    """Each test starts with no seed set anywhere and op determinism off, and leaves the process
    as it found it (other test files share it)."""
    from tensorflow.python.framework import config

    found, determinism = RandomState.now(), config.is_op_determinism_enabled()
    config.disable_op_determinism()
    RandomState(random.Random().getstate(), np.random.RandomState().get_state(), None, None,
                True).restore()
    yield
    found.restore()
    (tf.config.experimental.enable_op_determinism if determinism
     else config.disable_op_determinism)()


def keras_build(clear: bool = True):
    """A fresh seeded Keras model, its traced step (loss and gradients) and its batches. Keras
    numbers the layers of every model a process builds; ``clear_session`` starts the numbering
    again, so two models built here have the same variable names, as in two processes."""
    if clear:
        keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)

    @tf.function
    def step(batch):
        x, y = batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {"loss": loss, "grad": grads}

    x = np.random.RandomState(0).rand(12, 4).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(4)
    return step, batches, model


def parallel_map_build(seed):
    """A step fed by a parallel map whose stateful random op runs in whatever order the threads
    take (``deterministic=False``); ``seed``: the global seed a fresh build sets, or None."""
    def build():
        if seed is not None:
            tf.random.set_seed(seed)
        w = tf.Variable(tf.ones([4, 1]), name="w")

        def noisy(_i):
            x = tf.random.uniform([16, 4])
            return x, tf.reduce_sum(x, axis=1, keepdims=True)

        batches = tf.data.Dataset.range(48).map(noisy, num_parallel_calls=8,
                                                deterministic=False).batch(16)

        @tf.function
        def step(batch):
            x, y = (tf.reshape(t, [-1, n]) for t, n in zip(batch, (4, 1)))
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((tf.matmul(x, w) - y) ** 2)
            grads = tape.gradient(loss, [w])
            w.assign_sub(0.01 * grads[0])
            return {"loss": loss, "grad": grads}

        return step, batches, [w]
    return build


def test_a_seeded_step_is_deterministic_and_two_records_compare_identical():
    done = training.determinism(keras_build, repeat=3)
    assert (done.deterministic, done.first_step, done.differing) == (True, None, 0)
    assert done.op_determinism is None and done.processes == 3

    first, second = (training.record(*build[:2], variables=build[2])
                     for build in (keras_build(), keras_build()))
    assert first.steps == 3 and first.mode == "graph"
    names = list(first.arrays)
    assert names[:3] == ["step1.batch.0", "step1.batch.1", "step1.loss"]
    assert names[3].startswith("step1.grad.") and names[-1].startswith("step3.var.")
    assert len(names) == 3 * (2 + 1 + 4 + 4)  # batch x and y, loss, 4 gradients, 4 variables
    compared = training.compare(first, second)
    assert compared.identical and compared.verdict == "identical"
    assert compared.first_moved_step is None and compared.first_moved is None
    assert compared.mode.growth.relative == (0.0, 0.0, 0.0)
    json.dumps(compared.to_dict())  # JSON-ready as it stands


def test_repeats_match_a_rebuilt_keras_models_renamed_variables_by_position():
    """Without ``clear_session`` the second model's variables are ``sequential_1/...``: the
    runs are still compared array by array, in computing order."""
    first = training.record(*keras_build()[:2], variables=keras_build()[2])
    done = training.determinism(lambda: keras_build(clear=False), repeat=2)
    assert done.deterministic and done.differing == 0
    again = keras_build(clear=False)
    renamed = training.record(again[0], again[1], variables=again[2])
    assert list(renamed.arrays) != list(first.arrays)  # what the matching had to bridge


def test_an_unseeded_parallel_map_is_nondeterministic_and_op_determinism_names_its_op():
    from tensorflow.python.framework import config

    done = training.determinism(parallel_map_build(None), repeat=3)
    assert not done.deterministic
    assert (done.first_step, done.first_array) == (1, "step1.batch.0")  # the input pipeline
    trial = done.op_determinism
    assert trial.identical is None and not done.fix_confirmed
    assert len(trial.raised) == 1 and "Random ops require a seed" in trial.raised[0]
    assert not config.is_op_determinism_enabled()  # switched back off
    assert [s.split(" ")[0] for s in done.suspects] == ["RandomUniform", "ParallelMapDatasetV2"]

    step, batches, variables = parallel_map_build(None)()
    seeds = training.record(step, batches, variables=variables).seeds
    assert [(o.op, o.where) for o in seeds.unseeded_ops] == [("RandomUniform", "dataset")]
    assert seeds.unseeded_ops[0].function.startswith("__inference_Dataset_map")
    assert seeds.seed("tensorflow").status == "not_set"


def test_a_seeded_parallel_map_varies_in_order_and_op_determinism_is_the_confirmed_fix():
    done = training.determinism(parallel_map_build(1), repeat=3)
    assert not done.deterministic and done.first_step == 1
    assert parse(done.first_array)[:2] == (1, "batch")
    assert done.op_determinism.raised == () and done.op_determinism.processes == 3
    assert done.fix_confirmed
    assert len(done.suspects) == 1 and "deterministic=False" in done.suspects[0]


def _steps_drawing_randomness():
    w = tf.Variable([1.0, 2.0], name="w")

    def eager_step(batch):
        w.assign_add(batch + np.float32(np.random.rand()))  # draws from NumPy's generator
        return tf.reduce_sum(w)

    @tf.function
    def traced_step(batch):
        w.assign_add(batch + tf.random.normal([2]))  # no op seed
        return tf.reduce_sum(w)

    return w, eager_step, traced_step


def test_the_seed_report_without_any_seed():
    w, eager_step, traced_step = _steps_drawing_randomness()
    batches = [np.ones(2, np.float32)] * 2
    eager = training.record(eager_step, batches, variables=[w]).seeds
    assert {s.source: s.status for s in eager.seeds} == {
        "python": "unknown", "numpy": "unknown", "tensorflow": "not_set", "keras": "not_set"}
    assert (eager.seed("numpy").used, eager.seed("python").used) == (True, False)
    assert "ran eagerly" in eager.not_scanned[0] and eager.scanned == ()
    traced = training.record(traced_step, batches, variables=[w]).seeds
    assert [(o.op, o.where) for o in traced.unseeded_ops] == [("RandomStandardNormal", "step")]
    assert traced.seeded_ops == 0


def test_the_seed_report_after_keras_set_random_seed():
    w, eager_step, traced_step = _steps_drawing_randomness()
    batches = [np.ones(2, np.float32)] * 2
    keras.utils.set_random_seed(1)
    eager = training.record(eager_step, batches, variables=[w]).seeds
    assert {s.source: (s.status, s.seed) for s in eager.seeds} == {
        "python": ("set", 1), "numpy": ("set", 1), "tensorflow": ("set", 1), "keras": ("set", 1)}
    traced = training.record(traced_step, batches, variables=[w]).seeds
    assert traced.unseeded_ops == () and traced.seeded_ops == 1
    assert traced.seed("numpy").status == "unknown"  # the eager run drew from it since


def test_what_a_step_returns_is_named_and_bounded():
    w = tf.Variable([1.0], name="w")
    batches = [np.float32(i) for i in range(5)]
    done = training.record(lambda b: {"loss": w * b, "extra": [w]}, batches,
                           variables={"weight": w}, steps=2)
    assert list(done.arrays) == ["step1.batch", "step1.loss", "step1.extra.weight",
                                 "step1.var.weight", "step2.batch", "step2.loss",
                                 "step2.extra.weight", "step2.var.weight"]
    with pytest.raises(EnvauditError, match="'var'"):
        training.record(lambda b: {"var": w}, batches)
    with pytest.raises(EnvauditError, match="no batch"):
        training.record(lambda b: w, [])


def test_a_record_round_trips_through_its_files_and_a_tampered_one_is_refused(tmp_path):
    step, batches, model = keras_build()
    done = training.record(step, batches, variables=model)
    npz = training.save(done, tmp_path / "run")
    assert npz == tmp_path / "run.npz" and (tmp_path / "run.json").is_file()
    back = training.load(npz)
    assert list(back.arrays) == list(done.arrays)
    assert all(np.array_equal(back.arrays[n], a) and back.arrays[n].dtype == a.dtype
               for n, a in done.arrays.items())
    assert back.seeds == done.seeds and back.to_dict() == done.to_dict()
    assert training.compare(done, back).identical
    step, batches, model = keras_build()
    again = training.check(npz, step, batches, variables=model)
    assert again.identical and len(again.mode.steps) == 3

    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 1
    npz.write_bytes(bytes(data))
    with pytest.raises(EnvauditError, match="SHA-256"):
        training.load(npz)


def test_a_record_whose_json_lies_or_that_holds_a_pickle_is_refused(tmp_path):
    import hashlib

    step, batches, model = keras_build()
    npz = training.save(training.record(step, batches, variables=model), tmp_path / "run")
    sidecar = tmp_path / "run.json"
    body = json.loads(sidecar.read_text())
    body["arrays"][0]["shape"] = [5, 4]
    sidecar.write_text(json.dumps(body))
    with pytest.raises(EnvauditError, match="step1.batch.0"):
        training.load(npz)

    np.savez(npz, **{a["name"]: np.array([None], dtype=object) for a in body["arrays"]})
    body["npz_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(body))
    with pytest.raises(EnvauditError, match="not a readable .npz"):
        training.load(npz)
    sidecar.write_text("{}")
    with pytest.raises(EnvauditError, match="fields"):
        training.load(npz)


def test_importing_the_api_does_not_import_tensorflow():
    done = subprocess.run([sys.executable, "-c", "import sys, envaudit;"
                           " envaudit.training.record; print('tensorflow' in sys.modules)"],
                          env=cli_env(),
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


# A conv step recorded in a fresh process, so that its thread count is its own.
CHILD = """
import sys
import numpy as np
import tensorflow as tf
from envaudit import training

tf.random.set_seed(7)
rng = np.random.RandomState(0)
x = rng.rand(24, 16, 16, 3).astype("float32")
y = rng.rand(24, 1).astype("float32")
conv = tf.Variable(tf.random.normal([3, 3, 3, 8], stddev=0.3, seed=1), name="conv")
dense = tf.Variable(tf.random.normal([8, 1], stddev=0.3, seed=2), name="dense")

@tf.function
def step(batch):
    xb, yb = batch
    with tf.GradientTape() as tape:
        h = tf.nn.relu(tf.nn.conv2d(xb, conv, 1, "SAME"))
        loss = tf.reduce_mean((tf.reduce_mean(h, [1, 2]) @ dense - yb) ** 2)
    grads = tape.gradient(loss, [conv, dense])
    for v, g in zip([conv, dense], grads):
        v.assign_sub(0.1 * g)
    return {"loss": loss, "grad": grads}

batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
training.save(training.record(step, batches, variables=[conv, dense]), sys.argv[1])
"""


def _record_in_child(folder: Path, name: str, **env: str | None) -> training.TrainingRecord:
    script = folder / "conv_step.py"
    script.write_text(CHILD)
    out = folder / name
    done = subprocess.run([sys.executable, str(script), str(out)], env=cli_env(**env),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return training.load(out)


def test_one_intra_op_thread_moves_the_first_conv_gradient(tmp_path):
    golden = _record_in_child(tmp_path, "default", TF_NUM_INTRAOP_THREADS=None)
    current = _record_in_child(tmp_path, "one-thread", TF_NUM_INTRAOP_THREADS="1")
    compared = training.compare(golden, current)
    if compared.identical:
        pytest.skip("one intra-op thread moves no conv gradient on this CPU")
    assert (compared.first_moved_step, compared.first_moved) == (1, "step1.grad.conv.0")
    assert compared.mode.steps[0].first_moved == "step1.grad.conv.0"
    assert compared.verdict in ("equivalent", "drift")
    assert 0 < compared.mode.growth.relative[0] < 1e-4
