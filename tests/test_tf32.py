"""TF32 as envaudit's own switch: the state a run records (decided from TensorFlow's switch and
the compute capability of the GPUs that computed), the bundle's strict ``tf32`` field, the check's
comparison, the confirmation that re-runs with TF32 off through TensorFlow's API, and, with real
TensorFlow on the CPU, ``--tf32 off`` recorded, checked and applied by a real re-run child."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from forge import copy_bundle, reseal
from nvml_replay import FakeNVML, load_recording

from envaudit import store
from envaudit.attribute import confirm
from envaudit.attribute.confirm import Experiment, plan
from envaudit.attribute.rank import is_tensorflow_install, rank_causes
from envaudit.attribute.trials import confirm_causes
from envaudit.compare.types import TensorComparison
from envaudit.errors import EnvauditError
from envaudit.fingerprint import gpu
from envaudit.fingerprint.types import SCHEMA, Change, Fingerprint
from envaudit.tf32 import (
    NO_GPU,
    TF32_PATH,
    compare_tf32,
    decide,
    fingerprint_capabilities,
    from_manifest,
    manifest_problem,
    suspected,
)
from envaudit.workload.__main__ import main as child_main
from envaudit.workload.child import run_child
from envaudit.workload.types import keyed_arrays


def machine(gpu_section: dict | None = None) -> Fingerprint:
    data = {"schema": SCHEMA, "fingerprint_id": "fp-test", "cpu": {"usable_cores": 2}}
    if gpu_section is not None:
        data["gpu"] = gpu_section
    return Fingerprint(data)


# --- the state: whether TF32 applies, and its effective value -----------------------------------


def test_on_the_cpu_tf32_does_not_apply_whatever_the_switch():
    for option, enabled in (("default", True), ("on", True), ("off", False)):
        state = decide(option, enabled, ["CPU:0", "CPU:0"], {})
        assert (state.applies, state.effective, state.reason, state.gpus) == (
            False, "not_applicable", NO_GPU, {})


@pytest.mark.parametrize(("capability", "enabled", "effective"), [
    ("7.5", True, "not_applicable"),  # Turing: no TF32 tensor cores
    ("8.0", True, "on"),  # Ampere: the first that has them
    ("8.0", False, "off"),
    ("9.0", True, "on"),
    (None, True, "not_applicable"),  # unknown: never claimed
])
def test_a_gpu_applies_tf32_from_compute_capability_8_0(capability, enabled, effective):
    state = decide("default", enabled, ["GPU:0", "CPU:0"], {"GPU:0": capability, "GPU:1": "8.0"})
    assert state.gpus == {"GPU:0": capability}  # only the GPUs that computed an array
    assert (state.applies, state.effective) == (effective != "not_applicable", effective)
    assert ("applies" if state.applies else "not applicable") in state.reason


def test_nvml_capability_is_used_only_when_every_gpu_has_the_same():
    h100 = machine(gpu.probe(FakeNVML(load_recording("h100_sxm5_x2.json")), environ={}))
    assert fingerprint_capabilities(h100) == ("9.0", "9.0")
    state = decide("on", True, ["GPU:1"], {}, fingerprint_capabilities(h100))
    assert (state.gpus, state.effective) == ({"GPU:1": "9.0"}, "on")
    mixed = decide("on", True, ["GPU:0"], {}, ("9.0", "7.5"))  # which one is GPU:0? unknown
    assert (mixed.gpus, mixed.applies) == ({"GPU:0": None}, False)
    assert fingerprint_capabilities(machine({"available": False, "reason": "no driver"})) == ()


# --- the bundle's field: written, read back, refused when malformed ------------------------------


def test_a_manifest_state_reads_back_the_same_decision():
    state = decide("off", False, ["GPU:0"], {"GPU:0": "8.6"})
    assert state.to_manifest() == {"option": "off", "enabled": False, "gpus": {"GPU:0": "8.6"}}
    assert from_manifest(state.to_manifest()) == state
    assert from_manifest(None) is None  # a bundle recorded before envaudit recorded TF32


@pytest.mark.parametrize("value", [
    {"option": "off", "enabled": False},
    {"option": "off", "enabled": False, "gpus": {}, "applies": True},
    {"option": "fast", "enabled": False, "gpus": {}},
    {"option": "off", "enabled": "false", "gpus": {}},
    {"option": "off", "enabled": False, "gpus": {"GPU:0": "8.0; rm -rf /"}},
    {"option": "off", "enabled": False, "gpus": {"/dev/nvidia0": "8.0"}},
    {"option": "off", "enabled": False, "gpus": ["GPU:0"]},
    "off",
])
def test_a_malformed_tf32_field_is_refused(value):
    assert manifest_problem(value)


def test_the_store_refuses_a_bundle_whose_tf32_is_malformed(tf32_off_bundle, tmp_path):
    bundle = copy_bundle(tf32_off_bundle, tmp_path / "forged")
    reseal(bundle, lambda m: m["tf32"].update(enabled="yes"))
    with pytest.raises(EnvauditError, match="tf32"):
        store.load_bundle(bundle)
    reseal(bundle, lambda m: m.pop("tf32"))  # an older bundle: readable, "not recorded"
    assert store.load_bundle(bundle).tf32 is None


# --- the check's comparison and the suspected change ---------------------------------------------


def _array(status: str, device: str) -> TensorComparison:
    return TensorComparison("conv", "stage", "conv", (2,), "float32", False, 1e-3, 1e-3, 1.0,
                            8192.0, 1.0, 1e-7, 1e-4, 1000.0, status, device=device,
                            golden_device=device)


GOLDEN_OFF = decide("off", False, ["GPU:0"], {"GPU:0": "8.0"})
CURRENT_ON = decide("default", True, ["GPU:0"], {"GPU:0": "8.0"})
CPU_GOLDEN = decide("default", True, ["CPU:0"], {})


def test_the_line_is_shown_where_tf32_applies_or_the_states_differ():
    cpu_both = compare_tf32(CPU_GOLDEN, decide("off", False, ["CPU:0"], {}))
    assert not cpu_both.shown  # not applicable on both sides: nothing to say
    assert compare_tf32(None, decide("on", True, ["CPU:0"], {})).shown is False
    moved = compare_tf32(GOLDEN_OFF, CURRENT_ON)
    assert moved.shown and moved.line == (
        "TF32 on here (--tf32 default; GPU:0 has compute capability 8.0), off in the golden"
        " (--tf32 off; GPU:0 has compute capability 8.0)")
    unrecorded = compare_tf32(None, CURRENT_ON)
    assert unrecorded.shown and unrecorded.line.endswith("not recorded in the golden")


def test_tf32_is_suspected_only_for_precision_lost_on_a_gpu_with_it_on_here_alone():
    lost_on_gpu = [_array("changed", "GPU:0"), _array("precision_loss", "GPU:0")]
    change = suspected(compare_tf32(GOLDEN_OFF, CURRENT_ON), lost_on_gpu)
    assert change == Change(TF32_PATH, "off", "on", "tf32", True, "tensorflow")
    assert suspected(compare_tf32(CPU_GOLDEN, CURRENT_ON), lost_on_gpu).golden == "not applicable"
    for check, arrays in (
            (compare_tf32(GOLDEN_OFF, CURRENT_ON), [_array("precision_loss", "CPU:0")]),
            (compare_tf32(GOLDEN_OFF, CURRENT_ON), [_array("changed", "GPU:0")]),
            (compare_tf32(CURRENT_ON, CURRENT_ON), lost_on_gpu),  # on in the golden too
            (compare_tf32(None, CURRENT_ON), lost_on_gpu),  # not recorded: nothing to put back
            (compare_tf32(GOLDEN_OFF, decide("off", False, ["GPU:0"], {"GPU:0": "8.0"})),
             lost_on_gpu)):
        assert suspected(check, arrays) is None


# --- confirmation: ranked with the precision family, re-run with TF32 off through the API --------


def test_the_tf32_change_is_its_own_likely_cause_never_the_tensorflow_install():
    tf32 = Change(TF32_PATH, "off", "on", "tf32", True, "tensorflow")
    upgrade = Change("tensorflow.version", "2.20.0", "2.21.0", "tensorflow", True)
    causes = rank_causes([upgrade, tf32], ["conv", "matmul"], "conv", [], True)
    by_path = {c.path: c for c in causes}
    assert by_path[TF32_PATH].confidence == "likely" and by_path[TF32_PATH].related == ()
    assert TF32_PATH not in by_path["tensorflow.version"].related
    assert not is_tensorflow_install(TF32_PATH)  # no environment bisection is offered for it
    assert "it can move the families that changed (conv, matmul, precision)" in (
        by_path[TF32_PATH].evidence)


def test_the_plan_re_runs_with_tf32_off_and_tells_the_child(monkeypatch, tmp_path):
    tf32 = suspected(compare_tf32(GOLDEN_OFF, CURRENT_ON), [_array("precision_loss", "GPU:0")])
    assert tf32 is not None
    changes = [tf32, Change("env.OMP_NUM_THREADS", "2", "4", "numerics-env", True)]
    causes = rank_causes(changes, ["conv"], "conv", [], True)
    planned = plan(changes, machine(), machine(), causes)
    assert [(e.label, e.env, e.tf32) for e in planned][0] == (
        "TF32 turned off through TensorFlow's API", {}, "off")
    golden = {"probe/x": np.array([1.5, -0.0], np.float32)}
    started: list[tuple[str, ...]] = []

    def child(python, out, modes, extra=(), **kwargs):  # the child put TF32 off: golden bits
        started.append(tuple(extra))
        np.savez(out, **(golden if "--tf32=off" in extra else {"probe/x": np.zeros(2)}))
        return type("Done", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(confirm, "run_child", child)
    done = confirm_causes(causes, changes, machine(), machine(), golden, 1,
                          child=("--tf32=default",))
    assert started[0] == ("--tf32=default", "--tf32=off")  # its own last: the child takes it
    assert done.reruns[0] == "TF32 off"
    assert (done.causes[0].path, done.causes[0].confidence) == (TF32_PATH, "confirmed")
    assert Experiment("x", {}, (TF32_PATH,), tf32="off").child_key != Experiment(
        "x", {}, (TF32_PATH,)).child_key  # never served by a child that keeps TF32 as it was


def test_the_child_refuses_a_tf32_value_it_does_not_know(tmp_path, capsys):
    assert child_main([str(tmp_path / "out.npz"), "eager", "--tf32=fast"]) == 2
    assert "--tf32=on|off|default" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()


# --- real TensorFlow on the CPU ------------------------------------------------------------------


def test_switched_sets_the_switch_for_the_body_and_puts_it_back():
    from envaudit.workload import tf32_switch

    before, _ = tf32_switch.reading()
    for option, inside in (("off", False), ("on", True), ("default", before)):
        with tf32_switch.switched(option):
            assert tf32_switch.reading()[0] is inside
        assert tf32_switch.reading()[0] is before


def test_record_with_tf32_off_keeps_the_state_as_not_applicable(tf32_off_bundle):
    manifest = json.loads((tf32_off_bundle / "manifest.json").read_text())
    assert manifest["tf32"] == {"option": "off", "enabled": False, "gpus": {}}
    state = store.load_bundle(tf32_off_bundle).tf32
    assert (state.effective, state.reason) == ("not_applicable", NO_GPU)


def test_check_with_tf32_off_is_accepted_and_changes_nothing_on_the_cpu(tf32_off_bundle):
    proc = run_cli("check", "--golden", str(tf32_off_bundle), "--tf32", "off", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "identical"
    tf32 = result["tf32"]
    assert (tf32["current"]["option"], tf32["current"]["enabled"]) == ("off", False)
    assert tf32["current"]["effective"] == tf32["golden"]["effective"] == "not_applicable"
    assert tf32["shown"] is False


def test_a_real_child_applies_tf32_off_and_computes_the_golden_bits(tf32_off_bundle, tmp_path):
    bundle = store.load_bundle(tf32_off_bundle)
    out = tmp_path / "child" / "out.npz"
    out.parent.mkdir()
    proc = run_child(sys.executable, out, ["eager"], ("--tf32=off",), env=dict(os.environ),
                     timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        arrays = {name: npz[name] for name in npz.files}
    golden = keyed_arrays({"eager": bundle.stages_by_mode["eager"]}, bundle.probes)
    assert set(golden) <= set(arrays)
    assert all(arrays[k].tobytes() == v.tobytes() for k, v in golden.items())


def test_an_unknown_option_is_one_line_and_exit_2(tf32_off_bundle: Path):
    proc = run_cli("check", "--golden", str(tf32_off_bundle), "--tf32", "fast")
    assert proc.returncode == 2 and "--tf32" in proc.stderr and "Traceback" not in proc.stderr


def test_the_text_report_prints_the_line_only_when_shown():
    from dataclasses import replace

    from rich.console import Console
    from test_render_check import make_result

    from envaudit.render import check_text

    def text(result) -> str:
        console = Console(width=200, record=True, no_color=True)
        console.print(check_text.render(result))
        return console.export_text()

    moved = compare_tf32(GOLDEN_OFF, CURRENT_ON)
    assert moved.line in text(replace(make_result(), tf32=moved))
    assert "TF32" not in text(make_result())  # not applicable on both sides
