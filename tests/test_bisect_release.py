"""An upgrade confirmed for real: a golden recorded under tensorflow-cpu 2.20 and NumPy 2.3.5,
checked here under tensorflow 2.21 and NumPy 2.4.6 on the CPU, with ``--bisect``.

The environments are built with uv from the package index (its wheels are cached in the real
user's uv cache, ``conftest.real_uv_cache``). Where the golden side or an environment cannot be
built because the index is out of reach, the test is skipped with the reason; CI has the index.
"""

from __future__ import annotations

import json

import pytest
from conftest import cli_env, real_uv_cache, run_cli


def _bisect(golden, **env) -> tuple[int, dict, str]:
    proc = run_cli("check", "--golden", str(golden), "--bisect", "--format", "json",
                   env=cli_env(UV_CACHE_DIR=real_uv_cache(), **env))
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope="module")
def bisected(other_release_golden) -> dict:
    code, report, _err = _bisect(other_release_golden)
    failure = report["bisection"]["failure"]
    if failure and ("fetch" in failure or "registry" in failure or "resolv" in failure):
        pytest.skip(f"the package index is out of reach: {failure}")
    return report


@pytest.mark.slow
def test_the_tensorflow_release_is_confirmed_and_numpy_ruled_out(bisected):
    causes = {c["path"]: c for c in bisected["causes"] if c["path"]}
    top = bisected["causes"][0]
    assert top["path"] == "tensorflow.version" and top["confidence"] == "confirmed"
    assert {"tensorflow.distribution", "packages.tensorflow-cpu.version",
            "tensorflow.build_info.is_cuda_build"} <= set(top["related"])
    assert any("reproduced the golden bits exactly" in e and "tensorflow-cpu==2.20.0" in e
               for e in top["evidence"])
    numpy = next(c for p, c in causes.items() if p.startswith(("packages.numpy",
                                                                "numerics_libs.numpy")))
    assert numpy["confidence"] == "ruled_out"
    assert "ruled out by environment bisection: restoring it changes nothing" in \
        numpy["evidence"]
    assert "confirmed" in bisected["headline"] and "tensorflow.version" in bisected["headline"]


@pytest.mark.slow
def test_cuda_build_fields_cannot_affect_a_run_on_the_cpu(bisected):
    cannot = {u["path"]: u["reason"] for u in bisected["cannot_affect"]}
    assert "tensorflow.build_info.cuda_version" in cannot
    # GPU-stack fields cannot reach a run on the CPU; NumPy's build and OpenBLAS reach only its
    # float64 references; nothing else is set aside
    on_cpu = {path for path, reason in cannot.items()
              if reason.startswith("cannot affect: ran on CPU")}
    assert {"tensorflow.build_info.cuda_version", "tensorflow.build_info.cudnn_version"} <= on_cpu
    assert all("only NumPy's float64 references" in reason
               for path, reason in cannot.items() if path not in on_cpu)
    ranked = {c["path"] for c in bisected["causes"]}
    assert not ranked & set(cannot)
    devices = {s["device"] for s in bisected["stages"]} | {s["golden_device"]
                                                          for s in bisected["stages"]}
    assert devices == {"CPU:0"}


@pytest.mark.slow
def test_the_package_sets_tried_are_reported_and_cached(bisected, other_release_golden):
    trials = bisected["bisection"]["trials"]
    assert trials[0]["label"] == "the whole golden package set"
    assert {"tensorflow-cpu==2.20.0", "numpy==2.3.5"} <= set(trials[0]["pins"])
    alone = {tuple(t["groups"]): t for t in trials}
    assert alone[("tensorflow",)]["outcome"] == "reproduced"
    # NumPy is ruled out: alone, or beside the other changes (the onnx extra's onnxruntime, where
    # it is installed) when TensorFlow alone gave the golden bits back
    assert "numpy" in bisected["bisection"]["ruled_out"]
    assert all(t["outcome"] == "unchanged" for t in trials if t["groups"] == ["numpy"])
    _code, again, _err = _bisect(other_release_golden)
    assert [t["cached"] for t in again["bisection"]["trials"]] == [True] * len(trials)
    assert [c["confidence"] for c in again["causes"]] == \
        [c["confidence"] for c in bisected["causes"]]


@pytest.mark.slow
def test_offline_the_check_completes_and_the_cause_stays_likely(other_release_golden, tmp_path):
    index = "http://127.0.0.1:9/simple"  # nothing listens there: the index is out of reach
    plain = run_cli("check", "--golden", str(other_release_golden), "--no-confirm")
    offline = {"UV_INDEX_URL": index, "UV_DEFAULT_INDEX": index, "UV_FIND_LINKS": "",
               "PIP_INDEX_URL": index, "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
               "UV_HTTP_RETRIES": "1", "UV_HTTP_TIMEOUT": "5",
               "XDG_CACHE_HOME": str(tmp_path / "cache")}  # no environment built before
    proc = run_cli("check", "--golden", str(other_release_golden), "--bisect", "--no-confirm",
                   "--format", "json",
                   env=cli_env(UV_CACHE_DIR=str(tmp_path / "uv-cache"), **offline))
    assert proc.returncode == plain.returncode  # the exit code is the check's
    assert "Traceback" not in proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line]
    assert len(notes) == 1 and notes[0].startswith(
        "envaudit: note: --bisect could not build any environment: ")
    report = json.loads(proc.stdout)
    top = next(c for c in report["causes"] if c["path"] == "tensorflow.version")
    assert top["confidence"] == "likely"
    assert any("the environment could not be built: uv pip install failed" in e
               for e in top["evidence"])
