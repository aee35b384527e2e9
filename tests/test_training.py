"""The canary's training steps: recorded beside it by default, trained again by a check, compared
step by step in computing order, their growth measured, their cause confirmed, and (``--repeat``)
whether training is deterministic here across fresh processes.

Which setting moves a training step depends on the CPU, so the tests that need one use the
session's moving knob (raw TensorFlow decides it, ``moving_knob.py``) or a thread count, and are
skipped with the reason where it moves no training step on this machine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from forge import reseal

from envaudit import store
from envaudit.compare.training import (
    DEFAULT_GROWTH_TARGET,
    first_difference,
    growth,
    parse,
    relative_difference,
    step_of,
)
from envaudit.workload import training_spec as spec

MIB = 2**20


def test_a_golden_records_three_training_steps_in_eager_and_graph_by_default(trained_bundle):
    bundle = store.load_bundle(trained_bundle)
    assert bundle.training_steps == 3
    assert bundle.manifest["training"] == {"steps": 3, "modes": ["eager", "graph"],
                                           "settings": spec.SETTINGS}
    assert list(bundle.training) == ["eager", "graph"]
    for arrays in bundle.training.values():
        assert spec.validate("golden", arrays, 3) is None
        assert list(arrays)[:3] == ["step1.batch", "step1.loss", "step1.grad.stem.conv"]
        assert arrays["step1.loss"].shape == () and 0 < float(arrays["step1.loss"]) < 10
    size = sum(f.stat().st_size for f in trained_bundle.iterdir())
    assert size < 16 * MIB, f"the bundle is {size / MIB:.1f} MiB"


def test_the_steps_learn_and_move_every_weight(trained_bundle):
    eager = store.load_bundle(trained_bundle).training["eager"]
    from envaudit.workload.assets import load_assets

    shipped = load_assets().weights
    for variable in spec.trainable():
        after = eager[spec.key(3, "var", variable)]
        assert not np.array_equal(after, shipped[variable]), variable
    # the same seeded augmentation in both modes: the batch is the input pipeline's, not the mode's
    graph = store.load_bundle(trained_bundle).training["graph"]
    assert np.array_equal(eager["step2.batch"], graph["step2.batch"])
    assert not np.array_equal(eager["step1.batch"], eager["step2.batch"])


@pytest.fixture(scope="module")
def trained_check(trained_bundle: Path) -> tuple[int, dict]:
    proc = run_cli("check", "--golden", str(trained_bundle), "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_a_check_trains_the_same_steps_bit_for_bit(trained_check):
    for code, result in (trained_check,):
        training = result["training"]
        assert code == 0 and result["verdict"] == "identical"
        assert [m["mode"] for m in training["modes"]] == ["eager", "graph"]
        for mode in training["modes"]:
            assert [s["step"] for s in mode["steps"]] == [1, 2, 3]
            assert all(s["verdict"] == "identical" and s["moved"] == 0 for s in mode["steps"])
            assert mode["first_moved_step"] is None
            assert mode["growth"]["relative"] == [0.0, 0.0, 0.0]
        assert "all 3 training steps bit-identical" in result["headline"]
        assert all(not s["name"].startswith("step") for s in result["stages"])
        assert "stage/eager/step3.var.stem.conv" in result["array_digests"]


def test_the_moving_knob_moves_training_and_is_confirmed_there(check_knob_moved, moving_knob):
    code, result = check_knob_moved
    moved = [m for m in result["training"]["modes"] if m["first_moved_step"] is not None]
    if not moved:
        pytest.skip(f"{moving_knob.name}={moving_knob.value} moves no training step on this"
                    " machine")
    first = moved[0]
    assert first["first_moved_step"] == 1
    assert parse(first["first_moved"])[:2] in ((1, "batch"), (1, "loss"), (1, "grad"))
    assert first["growth"]["relative"][0] > 0
    assert "training moved from step 1 on, first in" in result["headline"]
    assert first["first_moved"] in result["headline"]
    top = result["causes"][0]
    assert top["confidence"] == "confirmed" and moving_knob.name in top["change"]


def test_one_thread_per_op_moves_only_training_here_and_is_confirmed(trained_bundle):
    proc = run_cli("check", "--golden", str(trained_bundle), "--format", "json", "--no-history",
                   env=cli_env(TF_NUM_INTRAOP_THREADS="1"))
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(proc.stdout)
    moved = [m for m in result["training"]["modes"] if m["first_moved_step"] is not None]
    if not moved:
        pytest.skip("one thread per op moves no training step on this machine")
    eager = next(m for m in moved if m["mode"] == "eager")
    assert eager["first_moved_step"] == 1
    assert step_of(eager["first_moved"]) == 1
    pipeline_moved = any(not s["identical"] for s in result["stages"])
    if not pipeline_moved:  # this machine: a gradient's kernel splits by threads, inference not
        assert result["headline"].split(":")[0] in ("Equivalent", "Drift")
        assert "inference did not move" in result["headline"]
        assert result["first_divergence"]["stage"] == eager["first_moved"]
    top = result["causes"][0]
    assert top["change"].startswith("env.TF_NUM_INTRAOP_THREADS")
    assert top["confidence"] == "confirmed"


def test_repeat_runs_training_in_fresh_processes_and_finds_it_deterministic(trained_bundle):
    proc = run_cli("check", "--golden", str(trained_bundle), "--format", "json", "--no-history",
                   "--no-confirm", "--repeat", "3")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    determinism = result["training"]["determinism"]
    assert determinism["processes"] == 3 and determinism["deterministic"] is True
    assert determinism["first_array"] is None and determinism["differing"] == 0
    assert determinism["op_determinism"] is None
    assert 0 < determinism["seconds"] < 600
    assert result["nondeterminism"]["deterministic"] is True


def test_a_golden_without_training_is_checked_without(golden_bundle):
    path = golden_bundle  # recorded with --steps 0
    bundle = store.load_bundle(path)
    assert bundle.training_steps == 0 and "training" not in bundle.manifest
    assert not any(f.name.startswith("training.") for f in path.iterdir())
    check = run_cli("check", "--golden", str(path), "--format", "json", "--no-history",
                    "--modes", "eager")
    assert check.returncode == 0, check.stderr
    result = json.loads(check.stdout)
    assert result["training"] is None and "training" not in result["headline"]


@pytest.mark.parametrize("args, said", [
    (("--steps", "1001"), "--steps must be from 0 (no training) to 1000"),
    (("--steps", "-1"), "--steps"),
    (("--training-modes", "trt"), "--training-modes"),
    (("--training-modes", "tflite"), "training has no mode tflite; choose from eager, graph, xla"),
])
def test_impossible_training_is_refused_in_one_line(tmp_path, args, said):
    proc = run_cli("record", "--golden", str(tmp_path / "x"), "--no-history", *args)
    assert proc.returncode == 2
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # argparse adds its usage line
    assert not (tmp_path / "x").exists()


def test_a_tampered_training_entry_is_refused_before_tensorflow(trained_bundle, tmp_path):
    import shutil

    for index, (edit, said) in enumerate([
        (lambda m: m["training"].__setitem__("steps", 0), "'training.steps'"),
        (lambda m: m["training"].__setitem__("modes", ["xla"]), "'training.modes'"),
        (lambda m: m["training"].__setitem__("steps", 2), "2 training steps"),
    ]):
        copy = tmp_path / f"copy{index}"
        shutil.copytree(trained_bundle, copy)
        reseal(copy, edit)
        proc = run_cli("check", "--golden", str(copy), "--no-history")
        assert proc.returncode == 2, proc.stderr
        assert said in proc.stderr or "training" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


# --- growth, on numbers written out -----------------------------------------------------------


def _weights(values: list[float], scale: float = 1.0) -> dict[str, np.ndarray]:
    return {spec.key(step, "var", "w"): np.full(4, value * scale, np.float64)
            for step, value in enumerate(values, 1)}


def test_relative_difference_over_all_weights_together():
    golden = {"a": np.array([3.0, 4.0]), "b": np.array([0.0])}  # norm 5
    assert relative_difference(golden, {"a": np.array([3.0, 4.0]), "b": np.array([0.5])}) == 0.1
    assert relative_difference(golden, {"a": np.array([3.0, 4.0])}) == 0.0  # b's zeros missing
    assert relative_difference(golden, {"b": np.array([0.0])}) == 1.0


def test_a_difference_that_doubles_every_five_steps_is_projected_to_the_target():
    golden = _weights([1.0] * 10)
    current = {k: v * (1 + 1e-9 * 2 ** (step / 5))
               for step, (k, v) in enumerate(golden.items(), 1)}
    grown = growth(golden, current, target=1e-3)
    assert grown.steps == tuple(range(1, 11))
    assert grown.relative[0] == pytest.approx(1e-9 * 2 ** 0.2, rel=1e-6)
    assert grown.doubling_steps == pytest.approx(5.0, rel=1e-4)
    # 1e-9 * 2**(s/5) = 1e-3  <=>  s = 5 * log2(1e6) = 99.66
    assert not grown.measured
    assert grown.reaches_target_at == pytest.approx(5 * math.log2(1e6), rel=1e-3)


def test_a_target_already_reached_is_measured_not_projected():
    golden = _weights([1.0, 1.0, 1.0])
    current = _weights([1.0, 1.0005, 1.002])
    grown = growth(golden, current, target=1e-3)
    assert grown.measured and grown.reaches_target_at == 3.0


def test_a_difference_that_does_not_grow_has_no_doubling_time():
    golden = _weights([1.0, 1.0, 1.0])
    flat = growth(golden, _weights([1.0 + 1e-9] * 3))
    assert flat.doubling_steps is None and flat.reaches_target_at is None
    # a rise of 5% over the steps is below the 10% called growth; 20% is growth
    assert growth(golden, _weights([1 + 1e-9, 1 + 1.025e-9, 1 + 1.05e-9])).doubling_steps is None
    assert growth(golden, _weights([1 + 1e-9, 1 + 1.1e-9, 1 + 1.2e-9])).doubling_steps > 0
    assert flat.target == DEFAULT_GROWTH_TARGET
    same = growth(golden, dict(golden))
    assert same.relative == (0.0, 0.0, 0.0) and same.doubling_steps is None
    with pytest.raises(ValueError):
        growth(golden, golden, target=0.0)


def test_the_first_difference_between_processes_is_in_recording_order():
    a = {"step1.loss": np.float32(1.0), "step1.grad.w": np.ones(2, np.float32),
         "step2.loss": np.float32(2.0)}
    b = {**a, "step1.grad.w": np.array([1, 1.5], np.float32), "step2.loss": np.float32(2.5)}
    assert first_difference([a, dict(a)]) == (None, 0)
    assert first_difference([a, b]) == ("step1.grad.w", 2)
    assert first_difference([a, dict(a), b]) == ("step1.grad.w", 2)


# --- nondeterminism across processes ----------------------------------------------------------


def test_known_gpu_kernels_are_suspected_by_the_part_and_weight_that_moved():
    from envaudit.attribute.gpu_kernels import suspected

    assert "Conv2DBackpropFilter" in suspected("grad", "stem.conv", "GPU:0")[0]
    assert "BiasAddGrad" in suspected("grad", "head_block2.cls_b", "GPU:0")[0]
    assert "DepthwiseConv2dNativeBackpropFilter" in suspected("grad", "block1.dw", "GPU:1")[0]
    assert suspected("grad", "stem.conv", "CPU:0") == ()  # a GPU table: nothing said on a CPU
    assert "tf.data" in suspected("batch", None, "CPU:0")[0]
    assert len(suspected("loss", None, "GPU:0")) == 2
    assert suspected("grad", "unknown.weight", "GPU:0") == ()


def test_processes_that_differ_are_located_and_op_determinism_is_tried(trained_bundle):
    """The report of training that differed between processes, on arrays of the golden made to
    differ at one gradient as a GPU's atomics would: the first step and array, the kernel
    suspected there, and op determinism's re-run in two real fresh processes (the canary's steps
    are deterministic on a CPU, so there they agree: what the report calls the fix)."""
    from envaudit.pipeline.training import _determinism

    golden = store.load_bundle(trained_bundle).training
    other = {m: dict(a) for m, a in golden.items()}
    name = spec.key(2, "grad", "head_block2/cls_b")
    other["eager"][name] = np.nextafter(other["eager"][name], np.float32(np.inf))
    devices = {f"stage/eager/{name}": "GPU:0"}
    found = _determinism([golden, other], ("eager",), 3, 2, 12.5, lambda _m: None, devices)
    assert not found.deterministic and found.first_step == 2 and found.differing == 1
    assert found.first_array == f"stage/eager/{name}" and found.processes == 2
    assert "BiasAddGrad" in found.suspects[0]
    assert found.op_determinism.raised == () and found.op_determinism.processes == 2
    assert found.op_determinism.identical is True and found.fix_confirmed


def test_a_step_compiled_by_xla_records_every_array_of_the_step():
    """``--training-modes xla``: the whole step (forward, backward, update) compiled with
    jit_compile, in this process: every array of the spec, finite, on the batch the other modes
    see."""
    from envaudit.workload.assets import load_assets
    from envaudit.workload.training import run_training

    done = run_training(load_assets(), ("eager", "xla"), 1, probes=False)
    assert list(done.runs) == ["eager", "xla"] and done.not_run == {}
    xla, eager = done.runs["xla"].arrays, done.runs["eager"].arrays
    assert spec.validate("xla", xla, 1) is None
    assert all(np.isfinite(a).all() for a in xla.values())
    assert np.array_equal(xla["step1.batch"], eager["step1.batch"])
    assert abs(float(xla["step1.loss"]) - float(eager["step1.loss"])) < 1e-4
