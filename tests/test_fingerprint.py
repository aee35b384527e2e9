"""``envaudit fingerprint``: the values it records are this machine's real values.

One subprocess capture per module (``captured``) is compared field by field with what the test
reads itself from /proc, sysfs, os.confstr, importlib.metadata and NumPy.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import pytest

from envaudit.fingerprint import capture, cpu, memory, packages, tensorflow_build
from envaudit.fingerprint.fields import describe
from envaudit.fingerprint.identity import fingerprint_id
from envaudit.fingerprint.types import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = [
    "python", "os", "cpu", "memory", "gpu", "tensorflow", "numerics_libs", "env", "packages",
]
EXTRA_ENV = {
    "OMP_NUM_THREADS": "2",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_enable_fast_math=false",
    "MY_SECRET_TOKEN": "hunter2",
    "TF_API_KEY": "abc",
    "NCCL_PASSWORD": "p",
}


def run_envaudit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envaudit", *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


@pytest.fixture(scope="module")
def captured() -> dict[str, Any]:
    result = run_envaudit("fingerprint", "--format", "json", env={**os.environ, **EXTRA_ENV})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cpuinfo_first_block() -> dict[str, str]:
    block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    pairs = (line.partition(":") for line in block.splitlines())
    return {key.strip(): value.strip() for key, _, value in pairs}


def test_top_level_shape_and_id(captured):
    assert list(captured) == ["schema", "fingerprint_id", "captured_at", "envaudit_version",
                              *SECTIONS]
    assert captured["schema"] == SCHEMA
    assert re.fullmatch(r"fp-[0-9a-f]{16}", captured["fingerprint_id"])
    assert captured["fingerprint_id"] == fingerprint_id(captured)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", captured["captured_at"])


def test_tensorflow_version_and_build_info_without_importing_it(captured):
    tf = captured["tensorflow"]
    assert tf["version"] == importlib.metadata.version("tensorflow")
    build_file = Path(tf["location"]) / "python" / "platform" / "build_info.py"
    # Executing build_info.py on its own (it imports only collections) is the reference.
    assert tf["build_info"] == dict(runpy.run_path(str(build_file))["build_info"])
    assert tf["build_info"]["cuda_version"] == "12.5.1"
    assert tf["build_info"]["is_cuda_build"] is True
    assert "cudnn_version" in tf["build_info"]
    assert tf["git_version"]["available"] is False
    assert "imported TensorFlow" in tf["git_version"]["reason"]
    assert "loaded_libraries" not in tf  # TensorFlow was not imported by the capture
    cuda_wheels = {
        packages.normalize(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if packages.normalize(d.metadata["Name"]).startswith("nvidia-")
        and packages.normalize(d.metadata["Name"]) != "nvidia-ml-py"
    }
    assert tf["nvidia_wheels"] == cuda_wheels


def test_cpu_matches_proc_cpuinfo(captured):
    section = captured["cpu"]
    info = cpuinfo_first_block()
    raw = set(info["flags"].split())

    wide = {f for f in raw if f.startswith(("avx512", "amx_"))}
    assert {f for f in section["flags"] if f.startswith(("avx512", "amx_"))} == wide
    assert set(section["flags"]) <= raw
    assert section["flags"] == sorted(section["flags"])
    for flag in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni"):
        assert (flag in section["flags"]) == (flag in raw)
    assert section["vendor"] == info["vendor_id"]
    assert section["model_name"] == info["model name"]
    assert section["family"] == int(info["cpu family"])
    assert section["model"] == int(info["model"])
    assert section["stepping"] == int(info["stepping"])
    assert section["microcode"] == info["microcode"]
    assert section["logical_cores"] == os.cpu_count()
    assert section["usable_cores"] == len(os.sched_getaffinity(0))
    l3 = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    assert section["caches"]["L3"] == int(l3.rstrip("K")) * 1024


def test_this_cpu_has_the_avx512_flags_the_issue_names(captured):
    raw = set(cpuinfo_first_block()["flags"].split())
    flags = set(captured["cpu"]["flags"])
    if "avx512f" not in raw:  # another CPU: then no AVX-512 flag may be claimed either
        assert not {f for f in flags if f.startswith("avx512")}
        return
    assert {"avx512f", "avx512bw", "avx512_bf16", "avx512_vnni"} <= flags
    assert ("avx_vnni" in captured["cpu"]["flags"]) == ("avx_vnni" in raw)
    assert ("amx_tile" in captured["cpu"]["flags"]) == ("amx_tile" in raw)


def test_memory_in_bytes(captured):
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert captured["memory"]["total_bytes"] == int(meminfo["MemTotal"].split()[0]) * 1024
    assert captured["memory"]["swap_total_bytes"] == int(meminfo["SwapTotal"].split()[0]) * 1024
    assert isinstance(captured["memory"]["available_bytes"], int)


def test_os_libc_and_distro(captured):
    section = captured["os"]
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    assert section["libc"] == {"name": name, "version": version}
    assert name == "glibc"
    assert section["arch"] == platform.machine()
    assert section["kernel"] == os.uname().release
    assert section["hostname"] == os.uname().nodename
    lines = Path("/etc/os-release").read_text().splitlines()
    release = dict(line.split("=", 1) for line in lines if "=" in line)
    assert section["distro"]["id"] == release["ID"].strip('"')
    assert ("/.dockerenv" in section["container"]["evidence"]) == Path("/.dockerenv").exists()
    assert section["container"]["detected"] == bool(section["container"]["evidence"])


def test_gpu_unavailable_with_nvml_reason(captured):
    gpu = captured["gpu"]
    if gpu.get("available") is not False:  # a machine with a driver: the GPU branch answered
        assert gpu["driver_version"] and gpu["devices"]
        return
    assert gpu == {"available": False, "reason": gpu["reason"]}
    assert gpu["reason"].startswith("NVML: ")


def test_env_keeps_numerics_vars_and_drops_credentials(captured):
    env = captured["env"]
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
    for dropped in ("MY_SECRET_TOKEN", "TF_API_KEY", "NCCL_PASSWORD", "PATH", "HOME"):
        assert dropped not in env
    assert list(env) == sorted(env)


def test_numerics_libs_match_numpy(captured):
    libs = captured["numerics_libs"]
    config = numpy.show_config(mode="dicts")
    assert libs["numpy"]["version"] == numpy.__version__
    assert libs["numpy"]["build"]["blas"]["name"] == config["Build Dependencies"]["blas"]["name"]
    assert libs["numpy"]["build"]["simd_found"] == config["SIMD Extensions"]["found"]
    runtime = libs["openblas_runtime"]
    if runtime.get("available") is False:  # NumPy without OpenBLAS: the reason says so
        assert "OpenBLAS" in runtime["reason"] or "openblas" in runtime["reason"]
        return
    assert runtime["num_threads"] == 1  # OPENBLAS_NUM_THREADS=1 in the capture's environment
    assert runtime["corename"]


def test_packages_are_every_installed_distribution(captured):
    expected = {}
    for dist in importlib.metadata.distributions():
        expected.setdefault(packages.normalize(dist.metadata["Name"]), dist.version)
    assert {name: info["version"] for name, info in captured["packages"].items()} == expected
    assert captured["packages"]["tensorflow"]["version"] == importlib.metadata.version("tensorflow")
    editable = importlib.metadata.distribution("envaudit").read_text("direct_url.json")
    if editable:
        assert captured["packages"]["envaudit"]["direct_url"]["url"] == json.loads(editable)["url"]


def test_python_section(captured):
    assert captured["python"]["version"] == platform.python_version()
    assert captured["python"]["implementation"] == platform.python_implementation()
    assert captured["python"]["executable"] == sys.executable


def test_capture_is_deterministic_apart_from_time_and_free_memory():
    first, second = capture().to_dict(), capture().to_dict()
    for tree in (first, second):
        tree.pop("captured_at")
        tree["memory"].pop("available_bytes")
    assert json.dumps(first) == json.dumps(second)


def test_capture_does_not_import_tensorflow_and_cli_does_not_import_rich():
    code = (
        "import sys, envaudit.cli\n"
        "rich_at_import = 'rich' in sys.modules\n"
        "from envaudit.fingerprint import capture\n"
        "capture()\n"
        "print(rich_at_import, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.stdout.split() == ["False", "False"], result.stderr


@pytest.mark.slow
def test_with_tensorflow_imported_git_version_and_loaded_libraries_appear_id_unchanged(captured):
    code = (
        "import json, os, sys\n"
        "import tensorflow as tf\n"
        "from envaudit.fingerprint import capture\n"
        "fp = capture()\n"
        "print(json.dumps({'fp': fp.data, 'git': tf.version.GIT_VERSION,"
        " 'compiler': tf.version.COMPILER_VERSION}))\n"
    )
    env = {**os.environ, **EXTRA_ENV, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    tf = out["fp"]["tensorflow"]
    assert tf["git_version"] == out["git"]
    assert tf["compiler"] == out["compiler"]
    assert isinstance(tf["loaded_libraries"], dict)
    # Same machine, same numerics: importing TensorFlow first must not change the id
    # (TF_CPP_MIN_LOG_LEVEL is recorded but is not numerics-relevant).
    assert out["fp"]["fingerprint_id"] == captured["fingerprint_id"]


def test_text_and_md_formats(tmp_path):
    text = run_envaudit("fingerprint")
    assert text.returncode == 0, text.stderr
    assert "fingerprint fp-" in text.stdout and "TensorFlow" in text.stdout
    assert "12.5.1" in text.stdout
    out = tmp_path / "fp.md"
    md = run_envaudit("fingerprint", "--format", "md", "-o", str(out))
    assert md.returncode == 0 and md.stdout == ""
    body = out.read_text()
    assert body.startswith("## Environment fingerprint `fp-")
    assert "| build_info.cuda_version | 12.5.1 |" in body
    assert "redacted:" not in body  # --format md is the unredacted rendering


def test_json_to_file_round_trips(tmp_path):
    out = tmp_path / "fp.json"
    result = run_envaudit("fingerprint", "--format", "json", "-o", str(out))
    assert result.returncode == 0 and result.stdout == ""
    data = json.loads(out.read_text())
    assert data["fingerprint_id"] == fingerprint_id(data)


# --- probes on inputs this machine does not have ---------------------------------------------

GRAVITON3_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs \
paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs \
paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1
"""


def test_arm_cpuinfo_is_normalized(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(GRAVITON3_CPUINFO)
    section = cpu.probe(path)
    assert section["vendor"] == "ARM"
    assert section["family"] == 8
    assert section["model"] == 0xD40
    assert section["flags"] == [
        "asimd", "asimddp", "asimdfhm", "asimdhp", "asimdrdm", "bf16", "fphp", "i8mm",
        "sve", "svebf16", "svei8mm",
    ]


def test_without_proc_cpuinfo_py_cpuinfo_answers(tmp_path):
    section = cpu.probe(tmp_path / "missing")
    assert section["source"] == "py-cpuinfo"
    assert section["vendor"] == cpuinfo_first_block()["vendor_id"]
    assert section["family"] == int(cpuinfo_first_block()["cpu family"])


def test_without_proc_meminfo_psutil_answers(tmp_path):
    section = memory.probe(tmp_path / "missing")
    meminfo = Path("/proc/meminfo").read_text().split()
    assert section["source"] == "psutil"
    assert section["total_bytes"] == int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024


def test_cgroup_v2_limits(tmp_path, monkeypatch):
    from envaudit.fingerprint import os_env

    (tmp_path / "cpu.max").write_text("250000 100000\n")
    (tmp_path / "memory.max").write_text("4294967296\n")
    monkeypatch.setattr(os_env, "_CGROUP_ROOT", tmp_path)
    assert os_env._cpu_quota({}, "/") == 2.5
    assert os_env._memory_limit({}, "/") == 4294967296
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert os_env._cpu_quota({}, "/") is None
    assert os_env._memory_limit({}, "/") is None


def test_old_style_build_info_constants():
    source = "is_cuda_build = True\ncuda_version_number = '10.1'\nmsvcp_dll_names = None\n"
    assert tensorflow_build.parse_build_info(source) == {
        "is_cuda_build": True, "cuda_version_number": "10.1", "msvcp_dll_names": None,
    }


def test_loaded_gpu_libraries_from_recorded_maps(tmp_path):
    site = "/usr/local/lib/python3.11/site-packages/nvidia"
    maps = tmp_path / "maps"
    maps.write_text(
        f"7f1c2a000000-7f1c2a200000 r-xp 00000000 08:01 1234 {site}/cudnn/lib/libcudnn.so.9\n"
        f"7f1c2b000000-7f1c2b200000 r-xp 00000000 08:01 1235 {site}/cudnn/lib/libcudnn_ops.so.9\n"
        "7f1c2c000000-7f1c2c200000 r-xp 00000000 08:01 1236 /usr/local/cuda/lib64/"
        "libcudart.so.12.5.82\n"
        f"7f1c2d000000-7f1c2d200000 r-xp 00000000 08:01 1237 {site}/cublas/lib/libcublasLt.so.12\n"
        f"7f1c2d200000-7f1c2d400000 r--p 00200000 08:01 1237 {site}/cublas/lib/libcublasLt.so.12\n"
        "7f1c2e000000-7f1c2e200000 r-xp 00000000 08:01 1238 /usr/lib/libnccl.so.2.21.5\n"
        "7ffd3a000000-7ffd3a021000 rw-p 00000000 00:00 0 [stack]\n"
    )
    assert tensorflow_build.loaded_gpu_libraries(maps) == {
        "libcublasLt": {"version": "12", "path": f"{site}/cublas/lib/libcublasLt.so.12"},
        "libcudart": {"version": "12.5.82", "path": "/usr/local/cuda/lib64/libcudart.so.12.5.82"},
        "libcudnn": {"version": "9", "path": f"{site}/cudnn/lib/libcudnn.so.9"},
        "libcudnn_ops": {"version": "9", "path": f"{site}/cudnn/lib/libcudnn_ops.so.9"},
        "libnccl": {"version": "2.21.5", "path": "/usr/lib/libnccl.so.2.21.5"},
    }


def test_loaded_driver_math_and_jit_libraries_from_recorded_maps(tmp_path):
    # A CUDA 12 TensorFlow on driver 550 after a convolution, an FFT and a JIT-compiled kernel.
    site = "/usr/local/lib/python3.11/site-packages/nvidia"
    lines = [
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
        "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.550.54.15",
        f"{site}/cufft/lib/libcufft.so.11",
        f"{site}/cusolver/lib/libcusolver.so.11",
        f"{site}/cusparse/lib/libcusparse.so.12",
        f"{site}/nvjitlink/lib/libnvJitLink.so.12",
        f"{site}/cuda_nvrtc/lib/libnvrtc.so.12",
        f"{site}/cuda_nvrtc/lib/libnvrtc-builtins.so.12.4",  # NVRTC's helper, not listed
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15",  # NVML: reads the board only
    ]
    maps = tmp_path / "maps"
    maps.write_text("".join(f"7f1c{i:02d}000000-7f1c{i:02d}200000 r-xp 00000000 08:01 {i} {path}\n"
                            for i, path in enumerate(lines)))
    loaded = tensorflow_build.loaded_gpu_libraries(maps)
    assert {name: entry["version"] for name, entry in loaded.items()} == {
        "libcuda": "550.54.15", "libcufft": "11", "libcusolver": "11", "libcusparse": "12",
        "libnvJitLink": "12", "libnvidia-ptxjitcompiler": "550.54.15", "libnvrtc": "12",
    }
    assert loaded["libcuda"]["path"] == lines[0]
    # The driver's libraries are driver changes; the math libraries CUDA's; both numerics.
    assert describe("tensorflow.loaded_libraries.libcuda.version").category == "driver"
    assert describe("tensorflow.loaded_libraries.libnvidia-ptxjitcompiler.version").category \
        == "driver"
    assert describe("tensorflow.loaded_libraries.libcufft.version").category == "cuda"
    assert describe("tensorflow.loaded_libraries.libcudart.version").category == "cuda"
    assert describe("tensorflow.loaded_libraries.libcudnn_ops.version").category == "cudnn"
    assert all(describe(f"tensorflow.loaded_libraries.{name}.version").numerics for name in loaded)


def test_a_failing_probe_becomes_a_value(monkeypatch):
    from envaudit.fingerprint import python_env

    def broken() -> dict:
        raise RuntimeError("simulated probe failure")

    monkeypatch.setattr(python_env, "probe", broken)
    fp = capture()
    assert fp.data["python"] == {
        "available": False, "reason": "RuntimeError: simulated probe failure"
    }
    assert fp.get("cpu.vendor")  # the other probes still answered


def test_bench_prints_the_ratio_to_import_numpy_and_no_tensorflow():
    # Prints ratios, asserts no time: a loaded machine must not fail the suite.
    result = subprocess.run([sys.executable, "tools/bench_fingerprint.py", "1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tensorflow imported: False" in result.stdout
    ratios = re.findall(r"ratio: cpu (\d+\.\d+)x", result.stdout)
    assert len(ratios) >= 2 and all(float(r) > 0 for r in ratios)  # fingerprint and report
    assert 'python -c "import numpy"' in result.stdout
    assert "torch collect_env" in result.stdout
