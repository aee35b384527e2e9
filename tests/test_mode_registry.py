"""Execution modes are a registry: a fourth mode is one record and one runner, nothing else.

The fake mode here runs the eager pipeline under another name (what a new runtime's runner would
be, minus the runtime): the canary workload runs it beside eager and returns its stages, bit for
bit eager's, and the ranking derives what it reaches from the code it runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from envaudit import modes
from envaudit.attribute.rank import mode_pattern, mode_reach, rank_causes
from envaudit.fingerprint.types import Change
from envaudit.settings import TF_KERNELS

FAKE = "eager_again"


BUILT_IN = ("eager", "graph", "xla", "tflite", "tflite-float16", "tflite-dynamic-range", "onnx")


def test_the_built_in_modes_in_order():
    assert modes.names() == BUILT_IN
    assert modes.get("xla").probe_prefix == "xla."
    assert modes.get("graph").codes == {"tensorflow_kernels", "traced_graph"}
    with pytest.raises(KeyError, match="expected one of eager, graph, xla, tflite"):
        modes.get("trt")


def test_the_deployment_runtimes_are_recorded_when_asked_for():
    """Each converts the model first: a plain record stays the three TensorFlow modes."""
    assert modes.recorded_by_default() == ("eager", "graph", "xla")
    assert [m for m in BUILT_IN if modes.get(m).converted] == list(BUILT_IN[3:])
    assert modes.get("tflite").precision is None
    assert "float16" in modes.get("tflite-float16").precision
    assert modes.TFLITE_OPTIMIZATIONS == {"float16": "tflite-float16",
                                          "dynamic-range": "tflite-dynamic-range"}


def test_a_probe_runs_in_the_mode_whose_prefix_it_carries():
    assert modes.probe_mode("xla.exp") == "xla"
    assert modes.probe_mode("exp") == "eager"
    assert modes.probe_mode("xlaexp") == "eager"  # the prefix includes its dot


def test_a_registered_name_and_a_built_in_are_protected():
    with pytest.raises(ValueError, match="already registered"):
        modes.register(modes.ExecutionMode("graph", "again", TF_KERNELS))
    with pytest.raises(ValueError, match="built-in"):
        modes.unregister("eager")


@pytest.fixture
def fake_mode():
    """A fourth mode: its record (it runs TensorFlow's kernels, op by op) and its runner."""
    modes.register(modes.ExecutionMode(FAKE, "the eager pipeline again", TF_KERNELS))
    try:
        yield FAKE
    finally:
        modes.unregister(FAKE)


def _env(name: str) -> Change:
    return Change(f"env.{name}", None, "0", "numerics-env", True)


def test_a_registered_mode_is_listed_at_call_time(fake_mode):
    assert modes.names() == (*BUILT_IN, fake_mode)
    assert modes.in_order([fake_mode, "eager"]) == ("eager", fake_mode)
    assert modes.unknown(["graph", fake_mode, "trt"]) == ["trt"]


def test_what_a_setting_reaches_is_derived_for_a_new_mode(fake_mode):
    """No edit in the settings table: oneDNN's switch reaches TensorFlow's kernels, which the new
    mode runs; XLA_FLAGS reaches XLA's code, which it does not; a CPU change reaches every mode."""
    assert mode_reach(_env("TF_ENABLE_ONEDNN_OPTS")) == {"eager", "graph", fake_mode}
    assert mode_reach(_env("XLA_FLAGS")) == {"xla"}
    assert mode_reach(_env("OMP_NUM_THREADS")) == {*BUILT_IN, fake_mode}
    # LiteRT's kernels are reached by its own settings only
    assert mode_reach(_env("ENVAUDIT_TFLITE_KERNELS")) == {
        "tflite", "tflite-float16", "tflite-dynamic-range"}
    cpu = Change("cpu.model_name", "a", "b", "cpu", True)
    assert fake_mode in mode_reach(cpu)
    # A pattern that includes the new mode matches no named pattern: it is listed as it is.
    assert mode_pattern(["eager", fake_mode], ["eager", "xla", fake_mode]) == (
        f"modes that moved: eager, {fake_mode} (identical: xla)")


def test_the_ranking_judges_a_new_mode_by_what_each_change_reaches(fake_mode):
    checked = ("eager", "xla", fake_mode)
    causes = rank_causes([_env("XLA_FLAGS"), _env("TF_ENABLE_ONEDNN_OPTS")], ["conv"], "stem",
                         [], False, moved_modes=("eager", fake_mode), checked_modes=checked)
    assert [(c.path, c.confidence) for c in causes] == [
        ("env.TF_ENABLE_ONEDNN_OPTS", "likely"), ("env.XLA_FLAGS", "possible")]
    assert "it reaches exactly the modes that moved" in causes[0].evidence
    assert "it cannot reach the modes that moved (it reaches xla)" in causes[1].evidence


def test_the_canary_runs_a_registered_mode_with_its_runner(fake_mode):
    """Real TensorFlow on the CPU: the workload runs the fourth mode through its runner and
    returns its stages, in registry order, with their devices; replay runs a stage alone in it."""
    from envaudit.workload import replay_stages, run_workload
    from envaudit.workload.architecture import STAGES
    from envaudit.workload.assets import load_assets
    from envaudit.workload.modes import register_runner, unregister_runner

    with pytest.raises(ValueError, match="unknown mode"):  # a record without a runner
        run_workload(modes=[fake_mode])
    register_runner(fake_mode, lambda runner, encoded: runner.detector.run_tensors(encoded))
    try:
        assets = load_assets()
        result = run_workload(assets, modes=[fake_mode, "eager"])
        replayed = replay_stages(assets, result.runs["eager"].stages, ["stem"], mode=fake_mode)
    finally:
        unregister_runner(fake_mode)
    assert list(result.runs) == ["eager", fake_mode]
    run = result.runs[fake_mode]
    assert run.mode == fake_mode and list(run.stages) == list(STAGES)
    for name in STAGES:
        assert np.array_equal(run.stages[name], result.runs["eager"].stages[name]), name
    assert run.devices["stem"].startswith("CPU")
    assert len(run.detections.scores) > 0
    assert f"{fake_mode}_s" in result.timings
    assert np.array_equal(replayed["stem"], result.runs["eager"].stages["stem"])
