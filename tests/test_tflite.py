"""The canary in the tflite modes: converted here, run by LiteRT, checked like any mode.

One recording (graph, tflite and tflite with float16 weights; no training steps, which are not
what is tested here) is shared with the render tests (``conftest.tflite_golden``). What is
checked against it: the converted model is bit-identical run to run in fresh processes; its
conversion gap against graph mode is reported with real numbers, the float16 model's as expected
precision loss; LiteRT's kernels are a setting a check names and confirms (the reference kernels
move every tflite stage from the first convolution on, measured with the runtime itself first);
the conversion is cached and a damaged cache entry is converted again; a bad kernels value or a
forged runtime record is refused in one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli_env, run_cli

from envaudit import store


def _check(golden: Path, *extra: str, **env: str | None) -> tuple[int, dict]:
    proc = run_cli("check", "--golden", str(golden), "--format", "json", "--no-history",
                   *extra, env=cli_env(**env))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def same(tflite_golden) -> tuple[int, dict]:
    return _check(tflite_golden[0])


def test_record_keeps_the_converted_model_and_says_its_conversion_gap(tflite_golden):
    golden, said = tflite_golden
    manifest = json.loads((golden / "manifest.json").read_text())
    assert manifest["modes"] == ["graph", "tflite", "tflite-float16"]
    runtime = manifest["runtimes"]["tflite"]
    assert runtime["kernels"] == "xnnpack" and runtime["optimization"] == "none"
    assert len(runtime["flatbuffer_sha256"]) == 64 and runtime["flatbuffer_bytes"] > 10_000
    assert runtime["converter"].startswith("tensorflow ")
    assert manifest["runtimes"]["tflite-float16"]["optimization"] == "float16"
    assert manifest["runtimes"]["tflite-float16"]["flatbuffer_sha256"] != \
        runtime["flatbuffer_sha256"]
    assert "conversion gap: tflite against graph:" in said
    assert "tflite-float16 against graph: loses precision (expected: its weights are stored in" \
           " float16)" in said


def test_the_converted_model_is_bit_identical_run_to_run(same):
    code, result = same
    assert code == 0 and result["verdict"] == "identical", result["headline"]
    assert {m["mode"]: m["verdict"] for m in result["modes"]} == {
        "graph": "identical", "tflite": "identical", "tflite-float16": "identical"}
    lines = {r["mode"]: r for r in result["runtimes"]}
    assert set(lines) == {"tflite", "tflite-float16"}
    assert lines["tflite"]["golden"]["flatbuffer_sha256"] == \
        lines["tflite"]["current"]["flatbuffer_sha256"]


def test_the_conversion_gap_is_measured_against_graph_mode_with_the_twin(same):
    _code, result = same
    gaps = {g["mode"]: g for g in result["conversion"]}
    plain, half = gaps["tflite"], gaps["tflite-float16"]
    assert plain["reference"] == "graph" and plain["expected"] is None
    # a float32 conversion: different kernels, rounding noise at most, the same detections
    assert plain["status"] in ("identical", "equivalent")
    assert plain["detections"]["matched"] == plain["detections"]["golden"] > 0
    boxes = next(a for a in plain["arrays"] if a["name"] == "boxes")
    assert boxes["golden_error"] is not None and boxes["current_error"] is not None
    # float16 weights: precision lost, and said to be expected, never drift
    assert half["status"] == "precision_loss" and "float16" in half["expected"]
    assert half["first_beyond_noise"] is not None
    stages = {a["name"]: a for a in half["arrays"]}
    assert stages["scores"]["current_error"] > 10 * stages["scores"]["golden_error"]
    assert {a["status"] for a in half["arrays"]} <= {"identical", "rounding", "precision_loss"}


def test_reference_kernels_move_only_tflite_and_are_confirmed(tflite_golden):
    """Measured with the runtime first (``docs/deployment.md``): XNNPACK against the reference
    kernels moves every tflite stage from stem on; the thread count moves nothing here."""
    code, result = _check(tflite_golden[0], ENVAUDIT_TFLITE_KERNELS="reference")
    assert code in (0, 1)
    moved = {m["mode"] for m in result["modes"] if m["verdict"] != "identical"}
    if not moved:  # kernels that round alike on this CPU: nothing to name (said, never silent)
        pytest.skip(f"LiteRT's reference kernels move no tflite stage on this CPU:"
                    f" {result['headline']}")
    assert moved == {"tflite", "tflite-float16"}, result["headline"]
    top = result["causes"][0]
    assert top["path"] == "env.ENVAUDIT_TFLITE_KERNELS"
    assert top["confidence"] == "confirmed", top
    assert "ENVAUDIT_TFLITE_KERNELS: unset -> 'reference' (confirmed)" in result["headline"]
    tflite = next(m for m in result["modes"] if m["mode"] == "tflite")
    assert tflite["first_divergence"]["stage"] == "stem"
    line = next(r for r in result["runtimes"] if r["mode"] == "tflite")
    assert line["current"]["kernels"] == "reference"


def test_the_kernels_option_sets_the_variable_the_fingerprint_records(tmp_path):
    golden = tmp_path / "ref"
    proc = run_cli("record", "--golden", str(golden), "--modes", "tflite", "--steps", "0",
                   "--tflite-kernels", "reference", "--tflite-threads", "2", "--no-history")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((golden / "manifest.json").read_text())
    assert manifest["runtimes"]["tflite"]["kernels"] == "reference"
    assert manifest["runtimes"]["tflite"]["threads"] == 2
    env = manifest["fingerprint"]["env"]
    assert env["ENVAUDIT_TFLITE_KERNELS"] == "reference"
    assert env["ENVAUDIT_TFLITE_THREADS"] == "2"
    # without --modes tflite's graph mode there is no reference to measure the gap against here
    # in the bundle, but the recording ran graph beside it and said the gap
    assert "conversion gap: tflite against graph" in proc.stderr
    assert manifest["modes"] == ["tflite"]


def test_a_bad_kernels_value_is_one_line(tflite_golden):
    proc = run_cli("check", "--golden", str(tflite_golden[0]), "--no-history",
                   env=cli_env(ENVAUDIT_TFLITE_KERNELS="fastest"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "envaudit: error: ENVAUDIT_TFLITE_KERNELS='fastest' is not one of xnnpack, builtin,"
        " reference; set one of them or unset it"]


def test_a_forged_runtime_record_is_refused(tflite_golden, tmp_path):
    bundle = tmp_path / "forged"
    shutil.copytree(tflite_golden[0], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    runtimes = manifest["runtimes"]
    runtimes["tflite"]["interpreter"] = "\x1b]8;;http://evil\x07click\x1b]8;;\x07"
    manifest["manifest_sha256"] = store._manifest_digest(manifest)  # resealed: a stranger's
    (bundle / store.MANIFEST).write_text(json.dumps(manifest))
    proc = run_cli("check", "--golden", str(bundle), "--no-history")
    assert proc.returncode == 2
    assert "'runtimes.tflite.interpreter'" in proc.stderr and "malformed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_conversions_are_cached_by_model_optimization_and_converter(tmp_path, monkeypatch):
    """In this process: the second conversion comes from the cache, bit for bit; a damaged
    entry is converted again; another converter version is another entry."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import tensorflow as tf

    from envaudit.workload import tflite

    traced = tf.function(lambda x: (tf.nn.relu(x * 3.0 - 1.0),), autograph=False)

    def make():
        concrete = traced.get_concrete_function(tf.TensorSpec([2, 3], tf.float32))
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete], traced)

    first = tflite.convert(make, "test model", None)
    again = tflite.convert(make, "test model", None)
    assert not first.cached and again.cached and again.flatbuffer == first.flatbuffer
    assert tflite.ConvertedModel(again).run([[[1, 2, 3], [0, -1, 0.5]]])[0].tolist() == [
        [2, 5, 8], [0, 0, 0.5]]
    entry = next((tmp_path / "cache" / "envaudit" / "tflite").glob("*.tflite"))
    entry.write_bytes(entry.read_bytes()[:100])  # damaged: its digest no longer matches
    assert not tflite.convert(make, "test model", None).cached
    assert not tflite.convert(make, "test model", "float16").cached
    monkeypatch.setattr(tflite, "converter_version", lambda: "tensorflow 99.0 (next)")
    assert not tflite.convert(make, "test model", None).cached
    assert len(list((tmp_path / "cache" / "envaudit" / "tflite").glob("*.tflite"))) == 3


def test_exposing_every_stage_changes_no_bit_of_the_converted_outputs(tmp_path, monkeypatch):
    """The canary's converted model returns every stage; the model a device would run returns
    only scores and boxes. Exposing the stages could change what the converter fuses: it does
    not, here (also measured with float16 and int8 weights and the reference kernels)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import numpy as np
    import tensorflow as tf

    from envaudit.workload.architecture import CORE
    from envaudit.workload.assets import load_assets
    from envaudit.workload.detector import Detector, decode_images
    from envaudit.workload.modes import ModeRunner
    from envaudit.workload.tflite import ConvertedModel, convert

    assets = load_assets()
    runner = ModeRunner(Detector(assets.weights))
    decoded = decode_images(assets.encoded)
    every = tf.function(lambda d: tuple(runner._core(d)[n] for n in CORE), autograph=False)
    final = tf.function(lambda d: (runner._core(d)["scores"], runner._core(d)["boxes"]),
                        autograph=False)
    outputs = []
    for name, traced in (("every stage", every), ("final outputs", final)):
        concrete = traced.get_concrete_function(tf.TensorSpec(decoded.shape, tf.uint8))
        conversion = convert(lambda c=concrete, t=traced:
                             tf.lite.TFLiteConverter.from_concrete_functions([c], t), name, None)
        outputs.append(ConvertedModel(conversion).run([decoded.numpy()]))
    assert np.array_equal(outputs[0][CORE.index("scores")], outputs[1][0])
    assert np.array_equal(outputs[0][CORE.index("boxes")], outputs[1][1])
