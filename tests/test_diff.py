"""``envaudit diff`` and ``envaudit.fingerprint.diff``: paths, values, categories, exit codes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envaudit.errors import EnvauditError
from envaudit.fingerprint import Fingerprint, capture, diff, load_fingerprint
from envaudit.fingerprint.types import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]


def run_envaudit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envaudit", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fingerprints")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    paths = {"a": folder / "a.json", "b": folder / "b.json"}
    # b also differs in a logging variable: an informational change that is there on every run
    # (capture times and free memory may happen to be equal)
    b_env = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    for name, extra in (("a", {}), ("b", b_env)):
        result = run_envaudit("fingerprint", "--format", "json", "-o", str(paths[name]),
                              env={**env, **extra})
        assert result.returncode == 0, result.stderr
    return paths


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return capture().to_dict()


def edited(tree: dict[str, Any], **paths: Any) -> Fingerprint:
    """A copy of ``tree`` with dotted paths (``__`` for ``.``) set; ``...`` deletes."""
    tree = copy.deepcopy(tree)
    for dotted, value in paths.items():
        *parents, last = dotted.split("__")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return Fingerprint(tree)


def test_diff_of_onednn_fingerprints_exits_1_and_names_the_variable(files):
    result = run_envaudit("diff", str(files["a"]), str(files["b"]))
    assert result.returncode == 1, result.stderr
    assert "env.TF_ENABLE_ONEDNN_OPTS" in result.stdout
    assert "1 numerics-relevant change(s)" in result.stdout
    # the group holding the numerics-relevant change comes first; the logging variable is folded
    lines = result.stdout.splitlines()
    assert lines[4] == "environment variables: 2 fields changed (1 numerics-relevant)"
    assert lines[5].split() == ["numerics", "env.TF_ENABLE_ONEDNN_OPTS", "(absent)", "0"]
    assert lines[6] == "  + 1 more field folded: --verbose lists it"
    assert "env.TF_CPP_MIN_LOG_LEVEL" not in result.stdout


def test_diff_json_lists_the_change_first(files):
    result = run_envaudit("diff", str(files["a"]), str(files["b"]), "--format", "json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["numerics_changed"] is True
    assert document["changes"][0] == {
        "path": "env.TF_ENABLE_ONEDNN_OPTS", "golden": None, "current": "0",
        "category": "numerics-env", "numerics": True,
        "origin": "environment variables", "minutia": False,
    }
    assert document["golden"]["fingerprint_id"] == json.loads(files["a"].read_text())[
        "fingerprint_id"
    ]
    # the ids are shown once, beside each side; their difference is not listed as a change
    assert "fingerprint_id" not in {c["path"] for c in document["changes"]}


def test_diff_with_itself_exits_0(files):
    result = run_envaudit("diff", str(files["a"]), str(files["a"]))
    assert result.returncode == 0, result.stderr
    assert "identical fingerprints" in result.stdout
    as_json = run_envaudit("diff", str(files["a"]), str(files["a"]), "--format", "json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["changes"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}', "is not an envaudit fingerprint"),
        ("garbage, not json", "is not valid JSON"),
        (b"\x7fELF\x02\x01\x01\x00\xff\xfe", "is not a text file"),
        ('{"schema": "envaudit.fingerprint/99", "fingerprint_id": "x"}', "schema"),
        (None, "does not exist"),
        ("folder", "folder without manifest.json"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    if content == "folder":
        bad.mkdir()
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    result = run_envaudit("diff", str(files["a"]), str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("envaudit: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_golden_bundle_folder_is_read_from_its_verified_manifest(files, tmp_path):
    from test_store import write

    fingerprint = Fingerprint.from_json(files["b"].read_text())
    bundle = write(tmp_path / "bundle", fingerprint)
    assert load_fingerprint(str(bundle)).fingerprint_id == fingerprint.fingerprint_id
    result = run_envaudit("diff", str(bundle), str(files["b"]))
    assert result.returncode == 0, result.stderr

    # A bundle's manifest is checked like any golden: an edited one is refused, not read.
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["fingerprint"]["env"]["OMP_NUM_THREADS"] = "3"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EnvauditError, match="was modified"):
        load_fingerprint(str(bundle))
    (bundle / "manifest.json").write_text(json.dumps({"schema": "envaudit.bundle/1"}))
    with pytest.raises(EnvauditError, match="is not an envaudit golden manifest"):
        load_fingerprint(str(bundle))


def test_cpu_flags_differ_per_flag(golden):
    flags = golden["cpu"]["flags"]
    current = edited(golden, cpu__flags=[f for f in flags if f != "avx2"] + ["amx_tile"])
    changes = {c.path: c for c in diff(Fingerprint(golden), current)}
    assert changes["cpu.flags.avx2"].golden == "avx2"
    assert changes["cpu.flags.avx2"].current is None
    assert changes["cpu.flags.amx_tile"].golden is None
    assert changes["cpu.flags.amx_tile"].current == "amx_tile"
    assert changes["cpu.flags.avx2"].category == "cpu" and changes["cpu.flags.avx2"].numerics


def test_categories_of_typical_upgrades(golden):
    gpu = {
        "available": True, "driver_version": "550.54.15", "cuda_driver_version": "12.4",
        "device_count": 1, "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                        "uuid": "GPU-1", "compute_capability": "9.0"}],
    }
    upgraded_gpu = copy.deepcopy(gpu)
    upgraded_gpu["driver_version"] = "560.35.03"
    upgraded_gpu["devices"][0]["uuid"] = "GPU-2"
    a = edited(golden, gpu=gpu, tensorflow__nvidia_wheels={"nvidia-cudnn-cu12": "9.1.0.70"})
    b = edited(
        golden,
        gpu=upgraded_gpu,
        tensorflow__nvidia_wheels={"nvidia-cudnn-cu12": "9.3.0.75"},
        tensorflow__build_info__cuda_version="12.3",
        tensorflow__version="2.99.0",
        packages__rich={"version": "0.0.1"},
        memory__available_bytes=1,
        env__TF_CPP_MIN_LOG_LEVEL="3",
    )
    changes = {c.path: (c.category, c.numerics) for c in diff(a, b)}
    assert changes["gpu.driver_version"] == ("driver", True)
    assert changes["gpu.devices.0.uuid"] == ("gpu", False)
    assert changes["tensorflow.nvidia_wheels.nvidia-cudnn-cu12"] == ("cudnn", True)
    assert changes["tensorflow.build_info.cuda_version"] == ("cuda", True)
    assert changes["tensorflow.version"] == ("tensorflow", True)
    assert changes["packages.rich.version"] == ("packages", False)
    assert changes["memory.available_bytes"] == ("info", False)
    assert changes["env.TF_CPP_MIN_LOG_LEVEL"] == ("numerics-env", False)


def test_order_is_numerics_first_then_category_then_path(golden):
    b = edited(golden, memory__available_bytes=1, env__OMP_NUM_THREADS="1",
               tensorflow__version="2.99.0", packages__numpy={"version": "0.1"},
               cpu__model_name="Other CPU")
    changes = diff(Fingerprint(golden), b)
    keys = [(not c.numerics, CATEGORIES.index(c.category), c.path) for c in changes]
    assert keys == sorted(keys)
    assert [c.path for c in changes if c.numerics] == [
        "tensorflow.version", "env.OMP_NUM_THREADS", "packages.numpy.version",
    ]


def test_gpu_appearing_is_a_numerics_change(golden):
    no_gpu = {"available": False, "reason": "NVML: NVML Shared Library Not Found"}
    with_gpu = edited(golden, gpu={"available": True, "driver_version": "550.54.15",
                                   "device_count": 1, "devices": []})
    changes = {c.path: c for c in diff(edited(golden, gpu=no_gpu), with_gpu)}
    assert changes["gpu"].golden == no_gpu and changes["gpu"].numerics
    assert changes["gpu"].current is None
    assert changes["gpu.available"].current is True and changes["gpu.available"].numerics
    assert changes["gpu.driver_version"].category == "driver"


def test_only_the_reason_changing_is_informational(golden):
    other = edited(golden, gpu={"available": False, "reason": "NVML: Driver Not Loaded"})
    base = edited(golden, gpu={"available": False, "reason": "NVML: NVML Shared Library Not Found"})
    (change,) = [c for c in diff(base, other) if c.path == "gpu"]
    assert change.numerics is False


def test_loaded_libraries_compare_only_when_both_sides_observed_them(golden):
    loaded = {"libcudnn": {"version": "9", "path": "/x/libcudnn.so.9"}}
    newer = {"libcudnn": {"version": "9.3", "path": "/x/libcudnn.so.9.3"}}
    # the side without TensorFlow imported (this test process may have imported it)
    without_tf = edited(golden, tensorflow__loaded_libraries=...).data
    with_tf = edited(without_tf, tensorflow__loaded_libraries=loaded)
    changes = diff(Fingerprint(without_tf), with_tf)
    assert changes and not any(c.numerics for c in changes if "loaded_libraries" in c.path)
    (version,) = [c for c in diff(with_tf, edited(without_tf, tensorflow__loaded_libraries=newer))
                  if c.path == "tensorflow.loaded_libraries.libcudnn.version"]
    assert version.category == "cudnn" and version.numerics
