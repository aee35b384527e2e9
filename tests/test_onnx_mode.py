"""The canary in the onnx mode: converted with tf2onnx, run by ONNX Runtime, or not run with why.

The mode is an optional extra (``envaudit[onnx]``), so what runs depends on this environment:
- without tf2onnx and onnxruntime (the project's own environment; where the extra is installed,
  modules that raise "not installed" stand in front of it), a recording that asks for the mode
  records the others, keeps the reason with the install command, and a check says the golden has
  no onnx mode and passes;
- with a tf2onnx that fails to convert (a fake one, put first on the path of the real envaudit
  subprocess, that also writes to stderr), the reason names the versions and what failed, and
  nothing of what it wrote, nor a traceback, reaches the user;
- with ``envaudit[onnx]`` installed, the converted canary is recorded and checked like any mode in
  a fresh process with a fresh cache (same graph digest, same bits), its conversion gap measured
  against graph mode, and a stage replays alone. Where the extra is not installed these skip and
  say so.
"""

from __future__ import annotations

import importlib.util
import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli

INSTALLED = all(importlib.util.find_spec(name) is not None
                for name in ("tf2onnx", "onnx", "onnxruntime"))
EXTRA = "envaudit[onnx] (tf2onnx, onnxruntime)"


def _first_on_path(folder: Path, modules: dict[str, str]) -> str:
    """A PYTHONPATH with ``modules`` (name -> source) ahead of what is installed."""
    folder.mkdir()
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source)
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)


def _record(path: Path, **env: str | None) -> tuple[dict, str]:
    proc = run_cli("record", "--golden", str(path), "--modes", "graph,onnx", "--steps", "0",
                   "--no-history", env=cli_env(**env))
    assert proc.returncode == 0, proc.stderr
    return json.loads((path / "manifest.json").read_text()), proc.stderr


def test_without_the_extra_the_mode_is_not_run_and_says_how_to_install(tmp_path):
    # where the extra is installed, modules that are not there stand in front of it
    absent = {name: f'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n'
              for name in ("tf2onnx", "onnx", "onnxruntime")}
    path = _first_on_path(tmp_path / "absent", absent) if INSTALLED else None
    manifest, said = _record(tmp_path / "golden", PYTHONPATH=path)
    assert manifest["modes"] == ["graph"]
    assert "onnx" not in manifest.get("runtimes", {})
    why = manifest["not_run"]["onnx"]
    assert "tf2onnx is not installed" in why and "onnxruntime is not installed" in why
    assert "pip install 'envaudit[onnx]'" in why
    assert "Traceback" not in said

    proc = run_cli("check", "--golden", str(tmp_path / "golden"), "--format", "json",
                   "--no-history")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "identical"
    assert [m["mode"] for m in result["modes"]] == ["graph"]
    assert "the golden recorded no onnx mode" in proc.stderr
    assert "pip install 'envaudit[onnx]'" in proc.stderr


FAKE_TF2ONNX = '''
import os, sys
__version__ = "0.0.fake"

class convert:
    @staticmethod
    def from_function(function, input_signature=None, opset=None):
        sys.stderr.write("tf2onnx chatter from Python\\n")
        os.write(2, b"tf2onnx chatter from C\\n")
        raise ValueError("tf2onnx cannot map op FakeOp for this TensorFlow\\nsecond line")
'''


def test_a_conversion_that_fails_is_not_run_with_its_reason_and_no_noise(tmp_path):
    path = _first_on_path(tmp_path / "fakes", {
        "tf2onnx": FAKE_TF2ONNX, "onnx": '__version__ = "0.0.fake"\n',
        "onnxruntime": '__version__ = "0.0.fake"\n'
                       'def get_available_providers():\n    return ["CPUExecutionProvider"]\n'})
    manifest, said = _record(tmp_path / "golden", PYTHONPATH=path)
    assert manifest["modes"] == ["graph"]
    why = manifest["not_run"]["onnx"]
    assert why.startswith("onnx mode: tf2onnx cannot convert the canary")
    assert "tf2onnx 0.0.fake" in why
    assert f"TensorFlow {metadata.version('tensorflow')}" in why
    assert why.endswith("ValueError: tf2onnx cannot map op FakeOp for this TensorFlow")
    assert "chatter" not in said and "Traceback" not in said, said


@pytest.fixture(scope="module")
def converted_golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if not INSTALLED:
        pytest.skip(f"{EXTRA} is not installed here: pip install -e '.[onnx]' runs the real"
                    " conversion (the mode's not-run reason is tested instead)")
    path = tmp_path_factory.mktemp("onnx") / "golden"
    manifest, said = _record(path, XDG_CACHE_HOME=str(path.parent / "cache-record"))
    assert "Traceback" not in said
    return path, manifest


def test_the_converted_canary_is_recorded_with_what_converted_and_ran_it(converted_golden):
    _path, manifest = converted_golden
    assert manifest["modes"] == ["graph", "onnx"], manifest.get("not_run")
    runtime = manifest["runtimes"]["onnx"]
    assert runtime["converter"] == f"tf2onnx {metadata.version('tf2onnx')}, opset 17"
    assert runtime["interpreter"] == f"onnxruntime {metadata.version('onnxruntime')}"
    assert "CPUExecutionProvider" in runtime["providers"].split(",")
    assert len(runtime["graph_sha256"]) == 64 and runtime["flatbuffer_bytes"] > 100_000
    assert runtime["cached"] is False
    # tf2onnx sets TF_CPP_MIN_LOG_LEVEL when its converter is imported: not the user's setting
    assert "TF_CPP_MIN_LOG_LEVEL" not in manifest["fingerprint"]["env"]


def test_the_converted_canary_checks_identical_in_a_fresh_process_and_cache(converted_golden):
    """Converted again elsewhere (tf2onnx writes other bytes each time), the graph digest and
    every bit are the same, and the gap from graph mode is rounding noise at most."""
    path, _manifest = converted_golden
    proc = run_cli("check", "--golden", str(path), "--modes", "graph,onnx", "--format", "json",
                   "--no-history", env=cli_env(XDG_CACHE_HOME=str(path.parent / "cache-check")))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {m["mode"]: m["verdict"] for m in result["modes"]} == {
        "graph": "identical", "onnx": "identical"}
    runtime = next(r for r in result["runtimes"] if r["mode"] == "onnx")
    assert runtime["current"]["cached"] is False
    assert runtime["current"]["graph_sha256"] == runtime["golden"]["graph_sha256"]
    gap = next(g for g in result["conversion"] if g["mode"] == "onnx")
    assert gap["reference"] == "graph" and gap["status"] in ("identical", "equivalent")
    assert gap["detections"]["matched"] == gap["detections"]["golden"] > 0


def test_a_stage_replays_alone_in_the_onnx_mode(converted_golden):
    from envaudit.store import load_bundle
    from envaudit.workload import replay_stages
    from envaudit.workload.assets import load_assets

    stages = load_bundle(converted_golden[0]).stages_by_mode["onnx"]
    replayed = replay_stages(load_assets(), stages, ["stem", "scores", "nms"], mode="onnx")
    for name, value in replayed.items():
        golden = stages[name]
        assert value.shape == golden.shape and value.dtype == golden.dtype, name
        scale = float(np.abs(golden).max())
        assert float(np.abs(value - golden).max()) <= 1e-5 * scale, name
    # NMS runs in TensorFlow around the converted core, on the same inputs: the same bits
    assert replayed["nms"].tobytes() == stages["nms"].tobytes()
