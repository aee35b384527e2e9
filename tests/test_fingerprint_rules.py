"""The field table, ``diff`` and the redaction policy, driven by recorded inputs only.

What the machine running the tests happens to be never decides what is tested: a CPU-only capture
(the fingerprint stored in golden/reference, recorded without a GPU) and GPU sections rebuilt from
the NVML recordings in tests/data/nvml give both branches of every GPU rule; root and non-root
homes, host and user names come in as an injected ``Identity``; the salt folder is under
tmp_path (the salt's own rules: test_redaction_salt.py). Every rule of ``fields._RULES`` is
checked on a path it decides and on a neighbour just outside it; expected values are literals.
"""

from __future__ import annotations

import copy
import functools
import getpass
import json
import os
import pwd
import string
import types
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_fingerprint_gpu import FakeNVML, load_recording

from envaudit import cli
from envaudit.fingerprint import Change, Fingerprint, diff, fields, gpu, redact
from envaudit.fingerprint.diff import group
from envaudit.fingerprint.fields import classify, classify_leaf, describe, describe_leaf
from envaudit.fingerprint.identity import fingerprint_id, identity_fields
from envaudit.fingerprint.redact import Identity, Redactor, hashed
from envaudit.fingerprint.salt import installation_salt
from envaudit.fingerprint.types import CATEGORIES, ORIGINS, ChangeGroup

REFERENCE = Path(__file__).resolve().parents[1] / "golden" / "reference" / "manifest.json"
NO_NVML = {"available": False, "reason": "NVML: NVML Shared Library Not Found"}
SALT = b"test-salt"
ALICE = Identity.of(hostnames=["build-7"], users=["alice"], homes=["/home/alice/"])
ROOT = Identity.of(hostnames=["build-7"], users=["root"], homes=["/root"])
REDACTED = "[redacted]"


@functools.cache
def _reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def cpu_only() -> dict[str, Any]:
    """The recorded CPU-only capture (a fresh copy)."""
    return json.loads(_reference())["fingerprint"]


def with_gpu(recording: str) -> dict[str, Any]:
    """The CPU-only capture with the GPU section an NVML recording gives."""
    tree = cpu_only()
    tree["gpu"] = gpu.probe(FakeNVML(load_recording(recording)), environ={})
    return tree


def change(path: str, golden: Any, current: Any, *kind: Any) -> Change:
    return Change(path, golden, current, *kind)


# -- the rule table: each rule on a path it decides, and on a neighbour just outside it ---------

PY, OS_, CPU, MEM, GPU = (("python", False, "python", False), ("os", False, "os", False),
                          ("cpu", False, "cpu", False), ("info", False, "memory", False),
                          ("gpu", False, "gpu", False))
GPU_MINUTIA = ("gpu", False, "gpu", True)
OTHER = ("info", False, "other", False)
TF, TF_BUILD = ("tensorflow", True, "tensorflow", False), ("tensorflow", True,
                                                             "tensorflow build", False)
NP_BUILD = ("packages", True, "numpy build", False)
# (rule, a path it decides, its kind, a neighbour it does not decide, the neighbour's kind)
RULE_CASES = [
    ("schema", "schema", ("info", False, "envaudit", False), "schema_version", OTHER),
    ("fingerprint_id", "fingerprint_id", ("info", False, "envaudit", False), "fingerprint", OTHER),
    ("captured_at", "captured_at", ("info", False, "envaudit", True), "captured", OTHER),
    ("envaudit_version", "envaudit_version", ("info", False, "envaudit", False), "envaudit",
     OTHER),
    ("python.version", "python.version", ("python", True, "python", False),
     "python.version_info", PY),
    ("python.implementation", "python.implementation", ("python", True, "python", False),
     "python.prefix", PY),
    ("python.compiler", "python.compiler", ("python", False, "python", True),
     "python.executable", PY),
    ("python.build", "python.build", ("python", False, "python", True), "python.virtual_env", PY),
    ("python", "python.conda_prefix", PY, "python3", OTHER),
    ("os.arch", "os.arch", ("os", True, "os", False), "os.system", OS_),
    ("os.libc", "os.libc.version", ("os", True, "os", False), "os.kernel", OS_),
    ("os.distro.id", "os.distro.id", ("os", True, "os", False), "os.distro.pretty_name", OS_),
    ("os.distro.version_id", "os.distro.version_id", ("os", True, "os", False),
     "os.distro.version_codename", OS_),
    ("os.hostname", "os.hostname", ("info", False, "os", False), "os.hostnames", OS_),
    ("os.container.evidence", "os.container.evidence", ("os", False, "os", True),
     "os.container.runtime", OS_),
    ("os.virtualization", "os.virtualization.dmi_vendor", ("os", False, "os", True),
     "os.limits.cpu_quota_cores", OS_),
    ("os.limits.cgroup_version", "os.limits.cgroup_version", ("os", False, "os", True),
     "os.limits.memory_limit_bytes", OS_),
    ("os", "os.kernel", OS_, "osx", OTHER),
    ("cpu.vendor", "cpu.vendor", ("cpu", True, "cpu", False), "cpu.vendor_id", CPU),
    ("cpu.family", "cpu.family", ("cpu", True, "cpu", False), "cpu.logical_cores", CPU),
    ("cpu.model", "cpu.model", ("cpu", True, "cpu", False), "cpu.model_name", CPU),
    ("cpu.flags", "cpu.flags.avx512f", ("cpu", True, "cpu flags", False), "cpu.physical_cores",
     CPU),
    ("cpu.usable_cores", "cpu.usable_cores", ("cpu", True, "cpu", False), "cpu.logical_cores",
     CPU),
    ("cpu.stepping", "cpu.stepping", ("cpu", False, "cpu", True), "cpu.model",
     ("cpu", True, "cpu", False)),
    ("cpu.microcode", "cpu.microcode", ("cpu", False, "cpu", True), "cpu.family",
     ("cpu", True, "cpu", False)),
    ("cpu.caches", "cpu.caches.L2", ("cpu", False, "cpu", True), "cpu.usable_cores",
     ("cpu", True, "cpu", False)),
    ("cpu.source", "cpu.source", ("cpu", False, "cpu", True), "cpu.sources", CPU),
    ("cpu", "cpu.physical_cores", CPU, "cpus", OTHER),
    ("memory.available_bytes", "memory.available_bytes", ("info", False, "memory", True),
     "memory.total_bytes", MEM),
    ("memory.source", "memory.source", ("info", False, "memory", True),
     "memory.swap_total_bytes", MEM),
    ("memory", "memory.total_bytes", MEM, "memory_total", OTHER),
    ("gpu.available", "gpu.available", ("gpu", True, "gpu", False), "gpu.reason", GPU),
    ("gpu.driver_version", "gpu.driver_version", ("driver", True, "driver", False),
     "gpu.nvml_version", ("gpu", False, "driver", True)),
    ("gpu.cuda_driver_version", "gpu.cuda_driver_version", ("driver", True, "driver", False),
     "gpu.cuda_visible_devices", GPU),
    ("gpu.nvml_version", "gpu.nvml_version", ("gpu", False, "driver", True),
     "gpu.driver_version", ("driver", True, "driver", False)),
    ("gpu.device_count", "gpu.device_count", ("gpu", True, "gpu", False),
     "gpu.cuda_device_order", GPU),
    ("gpu.devices.*.name", "gpu.devices.1.name", ("gpu", True, "gpu", False),
     "gpu.devices.1.serial", GPU_MINUTIA),
    ("gpu.devices.*.compute_capability", "gpu.devices.0.compute_capability",
     ("gpu", True, "gpu", False), "gpu.devices.0.uuid", GPU_MINUTIA),
    ("gpu.devices.*.mig_mode.current", "gpu.devices.0.mig_mode.current",
     ("gpu", True, "gpu", False), "gpu.devices.0.mig_mode.pending", GPU_MINUTIA),
    ("gpu.devices.*.memory_total_bytes", "gpu.devices.0.memory_total_bytes", GPU,
     "gpu.devices.0.power_limit_watts", GPU_MINUTIA),
    ("gpu.devices.*.ecc_mode", "gpu.devices.0.ecc_mode.current", GPU,
     "gpu.devices.0.persistence_mode", GPU_MINUTIA),
    ("gpu.devices.*.available", "gpu.devices.0.available", GPU, "gpu.devices.0.index",
     GPU_MINUTIA),
    ("gpu.devices.*.mig_devices.*.uuid", "gpu.devices.0.mig_devices.1.uuid", GPU_MINUTIA,
     "gpu.devices.0.mig_devices.1.multiprocessor_count", GPU),
    ("gpu.devices.*.mig_devices", "gpu.devices.0.mig_devices.2.profile", GPU,
     "gpu.devices.0.mig_mode.current", ("gpu", True, "gpu", False)),
    ("gpu.devices", "gpu.devices.0.vbios_version", GPU_MINUTIA, "gpu.device_count",
     ("gpu", True, "gpu", False)),
    ("gpu.cuda_devices.0.name", "gpu.cuda_devices.0.name", ("gpu", True, "gpu", False),
     "gpu.cuda_devices.1.name", GPU),
    ("gpu.cuda_devices.0.compute_capability", "gpu.cuda_devices.0.compute_capability",
     ("gpu", True, "gpu", False), "gpu.cuda_devices.0.label", GPU),
    ("gpu.cuda_devices.0.multiprocessor_count", "gpu.cuda_devices.0.multiprocessor_count",
     ("gpu", True, "gpu", False), "gpu.cuda_devices.1.multiprocessor_count", GPU),
    ("gpu.cuda_devices.*.uuid", "gpu.cuda_devices.0.uuid", GPU_MINUTIA,
     "gpu.cuda_devices.available", GPU),
    ("gpu.cuda_devices", "gpu.cuda_devices.1.compute_capability", GPU, "gpu.devices.0.name",
     ("gpu", True, "gpu", False)),
    ("gpu", "gpu.cuda_visible_devices", GPU, "gpus", OTHER),
    ("tensorflow.build_info.cuda_version", "tensorflow.build_info.cuda_version",
     ("cuda", True, "tensorflow build", False), "tensorflow.build_info.is_cuda_build", TF_BUILD),
    ("tensorflow.build_info.cudnn_version", "tensorflow.build_info.cudnn_version",
     ("cudnn", True, "tensorflow build", False), "tensorflow.build_info.is_rocm_build",
     TF_BUILD),
    ("tensorflow.build_info.cuda_compute_capabilities",
     "tensorflow.build_info.cuda_compute_capabilities",
     ("tensorflow", True, "tensorflow build", True), "tensorflow.build_info.is_tensorrt_build",
     TF_BUILD),
    ("tensorflow.build_info.cpu_compiler", "tensorflow.build_info.cpu_compiler",
     ("tensorflow", True, "tensorflow build", True), "tensorflow.build_info.cuda_version",
     ("cuda", True, "tensorflow build", False)),
    ("tensorflow.build_info", "tensorflow.build_info.is_cuda_build", TF_BUILD,
     "tensorflow.version", TF),
    ("tensorflow.nvidia_wheels.nvidia-cudnn*", "tensorflow.nvidia_wheels.nvidia-cudnn-cu12",
     ("cudnn", True, "cuda libraries", False), "tensorflow.nvidia_wheels.nvidia-cublas-cu12",
     ("cuda", True, "cuda libraries", False)),
    ("tensorflow.nvidia_wheels", "tensorflow.nvidia_wheels.nvidia-cublas-cu12",
     ("cuda", True, "cuda libraries", False), "tensorflow.distribution", TF),
    ("tensorflow.loaded_libraries.libcuda", "tensorflow.loaded_libraries.libcuda.version",
     ("driver", True, "driver", False), "tensorflow.loaded_libraries.libcudart.version",
     ("cuda", True, "cuda libraries", False)),
    ("tensorflow.loaded_libraries.libnvidia-ptxjitcompiler",
     "tensorflow.loaded_libraries.libnvidia-ptxjitcompiler.path", ("driver", True, "driver", False),
     "tensorflow.loaded_libraries.libnvJitLink.path", ("cuda", True, "cuda libraries", False)),
    ("tensorflow.loaded_libraries.libcudnn*", "tensorflow.loaded_libraries.libcudnn.path",
     ("cudnn", True, "cuda libraries", False), "tensorflow.loaded_libraries.libcublas.path",
     ("cuda", True, "cuda libraries", False)),
    ("tensorflow.loaded_libraries", "tensorflow.loaded_libraries.libcublas.path",
     ("cuda", True, "cuda libraries", False), "tensorflow.location",
     ("tensorflow", False, "tensorflow", False)),
    ("tensorflow.git_version", "tensorflow.git_version",
     ("tensorflow", False, "tensorflow build", True), "tensorflow.version", TF),
    ("tensorflow.compiler", "tensorflow.compiler", ("tensorflow", False, "tensorflow build", True),
     "tensorflow.available", TF),
    ("tensorflow.location", "tensorflow.location", ("tensorflow", False, "tensorflow", False),
     "tensorflow.distribution", TF),
    ("tensorflow", "tensorflow.version", TF, "tensorflow_hub", OTHER),
    ("numerics_libs.numpy.version", "numerics_libs.numpy.version",
     ("packages", True, "numpy", False), "numerics_libs.numpy.build.blas.version", NP_BUILD),
    ("numerics_libs.numpy.build.simd_*", "numerics_libs.numpy.build.simd_found",
     ("packages", True, "numpy build", True), "numerics_libs.numpy.build.blas.name", NP_BUILD),
    ("numerics_libs.numpy.build.*.openblas_configuration",
     "numerics_libs.numpy.build.blas.openblas_configuration",
     ("packages", True, "numpy build", True), "numerics_libs.numpy.build.blas.version",
     NP_BUILD),
    ("numerics_libs.numpy.build.compilers", "numerics_libs.numpy.build.compilers.c",
     ("packages", True, "numpy build", True), "numerics_libs.numpy.build.lapack.found",
     NP_BUILD),
    ("numerics_libs.numpy.build", "numerics_libs.numpy.build.lapack.name", NP_BUILD,
     "numerics_libs.numpy.version", ("packages", True, "numpy", False)),
    ("numerics_libs.openblas_runtime.library", "numerics_libs.openblas_runtime.library",
     ("packages", True, "openblas runtime", True), "numerics_libs.openblas_runtime.corename",
     ("packages", True, "openblas runtime", False)),
    ("numerics_libs.openblas_runtime.config", "numerics_libs.openblas_runtime.config",
     ("packages", True, "openblas runtime", True), "numerics_libs.openblas_runtime.num_threads",
     ("packages", True, "openblas runtime", False)),
    ("numerics_libs.openblas_runtime", "numerics_libs.openblas_runtime.corename",
     ("packages", True, "openblas runtime", False), "numerics_libs.numpy.available",
     ("packages", True, "numpy", False)),
    ("numerics_libs", "numerics_libs.scipy.version", ("packages", True, "numpy", False),
     "numerics", OTHER),
    # Device selection: recorded, never numerics (what it selects counts, gpu.cuda_devices).
    *[(f"env.{name}", f"env.{name}", ("numerics-env", False, "environment variables", False),
       f"env.{name}_X", ("numerics-env", True, "environment variables", False))
      for name in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
                   "HIP_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")],
    ("env", "env.TF_ENABLE_ONEDNN_OPTS", ("numerics-env", True, "environment variables", False),
     "env.TF_CPP_MIN_LOG_LEVEL", ("numerics-env", False, "environment variables", True)),
    ("packages", "packages.available", ("packages", False, "packages", False),
     "packages.numpy.version", ("packages", True, "packages", False)),
]


@pytest.mark.parametrize(("rule", "inside", "kind", "outside", "outside_kind"), RULE_CASES,
                         ids=[case[0] for case in RULE_CASES])
def test_rule_decides_its_path_and_not_its_neighbour(rule, inside, kind, outside, outside_kind):
    assert astuple(describe(inside)) == kind
    assert astuple(describe(outside)) == outside_kind


def test_every_rule_of_the_table_has_a_case_in_table_order():
    # A new rule without a case fails here; so does a rule whose kind changed without its case.
    assert [(rule, *kind) for rule, _inside, kind, _o, _ok in RULE_CASES] == list(fields._RULES)
    assert {rule[1] for rule in fields._RULES} <= set(CATEGORIES)
    assert {rule[3] for rule in fields._RULES} <= set(ORIGINS)


@pytest.mark.parametrize(("path", "kind"), [
    # distributions, decided per name; "packages.available" is the unreadable section's marker
    ("packages", ("packages", False, "packages", False)),
    ("packages.numpy", ("packages", True, "packages", False)),
    ("packages.numpy.version", ("packages", True, "packages", False)),
    ("packages.rich.version", ("packages", False, "packages", True)),
    ("packages.tensorflow-cpu.version", ("packages", True, "packages", False)),
    ("packages.nvidia-cudnn-cu12.version", ("cudnn", True, "cuda libraries", False)),
    ("packages.nvidia-cublas-cu12.version", ("cuda", True, "cuda libraries", False)),
    ("packages.nvidia-ml-py.version", ("packages", False, "packages", True)),  # NVML bindings
    ("packages.nvidia-ml-py3.version", ("packages", False, "packages", True)),
    # variables: logging and Terraform's TF_* are quiet, whole names only
    ("env", ("numerics-env", True, "environment variables", False)),
    ("env.TF_CPP_MIN_LOG_LEVEL", ("numerics-env", False, "environment variables", True)),
    ("env.TF_INPUT", ("numerics-env", False, "environment variables", True)),
    ("env.TF_INPUTS", ("numerics-env", True, "environment variables", False)),
    ("env.NCCL_DEBUG_SUBSYS", ("numerics-env", False, "environment variables", True)),
    ("env.NCCL_ALGO", ("numerics-env", True, "environment variables", False)),
    ("env.XTF_LOG", ("numerics-env", True, "environment variables", False)),
    # a section nobody wrote a rule for
    ("fleet.node", ("info", False, "other", False)),
])
def test_branches_outside_the_table(path, kind):
    assert astuple(describe(path)) == kind


def test_unreadable_fields_answer_for_whether_they_could_be_read():
    marker = {"available": False, "reason": "nvmlDeviceGetMigMode: Not Supported"}
    assert classify("gpu.devices.0.compute_capability") == ("gpu", True)
    assert classify("gpu.devices.0.uuid") == ("gpu", False)
    assert classify_leaf("gpu", NO_NVML) == ("gpu", True)  # gpu.available decides
    assert classify_leaf("gpu", {"available": True}) == ("gpu", False)  # not a marker
    assert classify_leaf("gpu.nvml_version", marker) == ("gpu", False)
    assert classify_leaf("packages", marker) == ("packages", False)
    assert astuple(describe_leaf("gpu.devices.0.mig_mode", marker)) == GPU_MINUTIA
    assert astuple(describe_leaf("gpu.devices.0.ecc_mode", marker)) == GPU
    assert astuple(describe_leaf("gpu.devices.0.ecc_mode", "enabled")) == GPU


# -- recorded captures: CPU-only and GPU ------------------------------------------------------

H100_NUMERICS = [
    ("gpu.available", True),
    # The device CUDA runs on first (TensorFlow's GPU:0): one of two alike boards.
    ("gpu.cuda_devices.0.compute_capability", "9.0"),
    ("gpu.cuda_devices.0.name", "NVIDIA H100 80GB HBM3"),
    ("gpu.cuda_driver_version", "12.4"), ("gpu.device_count", 2),
    ("gpu.devices.0.compute_capability", "9.0"), ("gpu.devices.0.mig_mode.current", "disabled"),
    ("gpu.devices.0.name", "NVIDIA H100 80GB HBM3"),
    ("gpu.devices.1.compute_capability", "9.0"), ("gpu.devices.1.mig_mode.current", "disabled"),
    ("gpu.devices.1.name", "NVIDIA H100 80GB HBM3"), ("gpu.driver_version", "550.54.15"),
]


def test_the_recorded_cpu_only_capture_hashes_its_gpu_as_unavailable():
    tree = cpu_only()
    assert tree["gpu"] == NO_NVML
    assert [pair for pair in identity_fields(tree) if pair[0].startswith("gpu")] == [
        ("gpu", "unavailable")]
    assert fingerprint_id(tree) == tree["fingerprint_id"] == "fp-c55c940bf31bb18a"
    # another reason for the same absence is the same environment
    no_driver = with_gpu("driver_not_loaded.json")
    assert no_driver["gpu"] == {"available": False, "reason": "NVML: Driver Not Loaded"}
    assert fingerprint_id(no_driver) == "fp-c55c940bf31bb18a"


@pytest.mark.parametrize(("recording", "pairs"), [
    ("h100_sxm5_x2.json", H100_NUMERICS),
    ("a100_sxm4_mig.json", [
        ("gpu.available", True), ("gpu.cuda_driver_version", "12.2"), ("gpu.device_count", 1),
        ("gpu.devices.0.compute_capability", "8.0"),
        ("gpu.devices.0.mig_mode.current", "enabled"),
        ("gpu.devices.0.name", "NVIDIA A100-SXM4-80GB"), ("gpu.driver_version", "535.129.03")]),
    # a GeForce cannot read its MIG mode: the marker is a detail, not a numerics field
    ("rtx4090_geforce.json", [
        ("gpu.available", True), ("gpu.cuda_devices.0.compute_capability", "8.9"),
        ("gpu.cuda_devices.0.name", "NVIDIA GeForce RTX 4090"),
        ("gpu.cuda_driver_version", "12.4"), ("gpu.device_count", 1),
        ("gpu.devices.0.compute_capability", "8.9"),
        ("gpu.devices.0.name", "NVIDIA GeForce RTX 4090"), ("gpu.driver_version", "550.54.15")]),
])
def test_recorded_gpu_sections_hash_exactly_the_gpu_numerics_fields(recording, pairs):
    tree = with_gpu(recording)
    assert [pair for pair in identity_fields(tree) if pair[0].startswith("gpu")] == pairs
    others = [pair for pair in identity_fields(tree) if not pair[0].startswith("gpu")]
    assert others == [pair for pair in identity_fields(cpu_only()) if pair[0] != "gpu"]


def test_a_gpu_appearing_is_listed_numerics_first():
    changes = diff(Fingerprint(cpu_only()), Fingerprint(with_gpu("h100_sxm5_x2.json")))
    numerics = [c for c in changes if c.numerics]
    assert numerics == [
        change("gpu.cuda_driver_version", None, "12.4", "driver", True, "driver", False),
        change("gpu.driver_version", None, "550.54.15", "driver", True, "driver", False),
        change("gpu", NO_NVML, None, "gpu", True, "gpu", False),
        change("gpu.available", None, True, "gpu", True, "gpu", False),
        *[change(path, None, value, "gpu", True, "gpu", False)
          for path, value in H100_NUMERICS if path.startswith("gpu.cuda_devices.")],
        change("gpu.device_count", None, 2, "gpu", True, "gpu", False),
        *[change(path, None, value, "gpu", True, "gpu", False)
          for path, value in H100_NUMERICS if path.startswith("gpu.devices.")],
    ]
    assert changes[:len(numerics)] == tuple(numerics)
    rest = changes[len(numerics):]
    assert len(rest) == 35 and {c.category for c in rest} == {"gpu"}
    # Which of two alike boards CUDA numbers first is not NVML's to say: its UUID is a reason.
    assert (rest[0].path, rest[0].current["available"]) == ("gpu.cuda_devices.0.uuid", False)
    assert change("gpu.devices.0.ecc_mode.current", None, "enabled", *GPU) in rest
    assert rest[-1] == change("gpu.nvml_version", None, "12.550.54.15", "gpu", False, "driver",
                              True)
    assert change("gpu.devices.0.uuid", None, "GPU-5d8a1c1e-3f0e-8b9a-6f52-1c3e9a7d2b40",
                  *GPU_MINUTIA) in rest


def test_a_gpu_disappearing_is_a_numerics_change_of_the_section():
    changes = diff(Fingerprint(with_gpu("a100_sxm4_mig.json")), Fingerprint(cpu_only()))
    assert change("gpu", None, NO_NVML, "gpu", True, "gpu", False) in changes
    assert change("gpu.available", True, None, "gpu", True, "gpu", False) in changes


def test_another_board_and_fields_only_one_side_can_read():
    changes = diff(Fingerprint(with_gpu("h100_sxm5_x2.json")),
                   Fingerprint(with_gpu("rtx4090_geforce.json")))
    by_path = {c.path: c for c in changes}
    assert [c.path for c in changes if c.numerics] == [
        "gpu.cuda_devices.0.compute_capability", "gpu.cuda_devices.0.name",
        "gpu.device_count", "gpu.devices.0.compute_capability", "gpu.devices.0.mig_mode.current",
        "gpu.devices.0.name", "gpu.devices.1.compute_capability",
        "gpu.devices.1.mig_mode.current", "gpu.devices.1.name"]
    serial = {"available": False, "reason": "nvmlDeviceGetSerial: Not Supported"}
    assert by_path["gpu.devices.0.serial"] == change("gpu.devices.0.serial", "1654922051234",
                                                     serial, *GPU_MINUTIA)
    mig = {"available": False, "reason": "nvmlDeviceGetMigMode: Not Supported"}
    assert by_path["gpu.devices.0.mig_mode"] == change("gpu.devices.0.mig_mode", None, mig,
                                                       *GPU_MINUTIA)
    assert "gpu.driver_version" not in by_path  # the same driver on both boxes


def test_unreadable_on_both_sides_is_informational_whatever_the_reasons():
    no_driver = with_gpu("driver_not_loaded.json")
    assert diff(Fingerprint(cpu_only()), Fingerprint(no_driver)) == (
        change("gpu", NO_NVML, no_driver["gpu"], "gpu", False, "gpu", False),)
    other = with_gpu("rtx4090_geforce.json")
    other["gpu"]["devices"][0]["serial"]["reason"] = "nvmlDeviceGetSerial: Unknown Error"
    assert diff(Fingerprint(with_gpu("rtx4090_geforce.json")), Fingerprint(other)) == (
        change("gpu.devices.0.serial",
               {"available": False, "reason": "nvmlDeviceGetSerial: Not Supported"},
               {"available": False, "reason": "nvmlDeviceGetSerial: Unknown Error"},
               *GPU_MINUTIA),)


def _diff_exit_code(tmp_path: Path, capsys, golden: dict, current: dict) -> tuple[int, dict]:
    paths = []
    for name, tree in (("golden.json", golden), ("current.json", current)):
        (tmp_path / name).write_text(json.dumps(tree), encoding="utf-8")
        paths.append(str(tmp_path / name))
    code = cli.main(["diff", *paths, "--format", "json", "--no-redact"])
    return code, json.loads(capsys.readouterr().out)


def test_diff_exits_1_only_for_a_numerics_change(tmp_path, capsys):
    code, document = _diff_exit_code(tmp_path, capsys, cpu_only(),
                                      with_gpu("h100_sxm5_x2.json"))
    assert (code, document["counts"]) == (1, {"numerics": 13, "informational": 35})
    volatile = cpu_only()
    volatile.update(captured_at="2030-01-01T00:00:00Z", fingerprint_id="fp-0000000000000000")
    volatile["os"]["hostname"] = "elsewhere"
    volatile["memory"]["available_bytes"] = 1
    volatile["env"]["TF_CPP_MIN_LOG_LEVEL"] = "3"
    code, document = _diff_exit_code(tmp_path, capsys, cpu_only(), volatile)
    assert (code, document["counts"]) == (0, {"numerics": 0, "informational": 4})
    code, document = _diff_exit_code(tmp_path, capsys, cpu_only(),
                                      with_gpu("driver_not_loaded.json"))
    assert (code, document["counts"]) == (0, {"numerics": 0, "informational": 1})


# -- diff on small trees -----------------------------------------------------------------------

FLAG = ("cpu", True, "cpu flags", False)


def flags(old: list | None, new: list | None) -> tuple[Change, ...]:
    golden = {"cpu": {"vendor": "x"} if old is None else {"vendor": "x", "flags": old}}
    current = {"cpu": {"vendor": "x"} if new is None else {"vendor": "x", "flags": new}}
    return diff(Fingerprint(golden), Fingerprint(current))


def test_list_elements_are_named_one_change_each():
    assert flags(["avx2", "fma", "sse4_2"], ["fma", "avx512f", "sse4_2", "amx_tile"]) == (
        change("cpu.flags.amx_tile", None, "amx_tile", *FLAG),
        change("cpu.flags.avx2", "avx2", None, *FLAG),
        change("cpu.flags.avx512f", None, "avx512f", *FLAG),
    )
    assert flags(["fma"], ["fma", "avx2"]) == (change("cpu.flags.avx2", None, "avx2", *FLAG),)
    assert flags(["fma", "avx2"], ["fma"]) == (change("cpu.flags.avx2", "avx2", None, *FLAG),)
    assert flags(None, ["fma"]) == (change("cpu.flags.fma", None, "fma", *FLAG),)
    assert flags(["fma", "avx2"], ["fma", "avx2"]) == ()


def test_a_reordered_or_empty_list_is_one_change_with_both_sides():
    assert flags(["fma", "avx2"], ["avx2", "fma"]) == (
        change("cpu.flags", ["fma", "avx2"], ["avx2", "fma"], *FLAG),)
    # an empty list against none: the side without the field says None, not []
    assert flags([], None) == (change("cpu.flags", [], None, *FLAG),)
    assert flags(None, []) == (change("cpu.flags", None, [], *FLAG),)


def test_list_elements_that_json_cannot_write_compare_by_their_text():
    golden = Fingerprint({"python": {"paths": [Path("/opt/a"), Path("/opt/b")]}})
    current = Fingerprint({"python": {"paths": [Path("/opt/b"), Path("/opt/c")]}})
    assert diff(golden, current) == (
        change("python.paths./opt/a", Path("/opt/a"), None, *PY),
        change("python.paths./opt/c", None, Path("/opt/c"), *PY),
    )


def test_null_on_one_side_and_absent_on_the_other_is_no_change():
    with_null = Fingerprint({"python": {"conda_prefix": None, "version": "3.11.7"}})
    without = Fingerprint({"python": {"version": "3.11.7"}})
    assert diff(with_null, without) == diff(without, with_null) == ()


def test_the_derived_id_is_skipped_and_every_later_field_still_compared():
    golden = {"schema": "envaudit.fingerprint/1", "fingerprint_id": "fp-a", "env": {"X": "1"}}
    current = {"schema": "envaudit.fingerprint/1", "fingerprint_id": "fp-b", "env": {"X": "2"}}
    assert diff(Fingerprint(golden), Fingerprint(current)) == (
        change("env.X", "1", "2", "numerics-env", True, "environment variables", False),)


CUDNN_LIB = ("cudnn", True, "cuda libraries", False)
CUDA_LIB = ("cuda", True, "cuda libraries", False)


def loaded(libraries: dict | None) -> Fingerprint:
    tensorflow: dict[str, Any] = {"version": "2.21.0"}
    if libraries is not None:
        tensorflow["loaded_libraries"] = libraries
    return Fingerprint({"tensorflow": tensorflow})


def test_loaded_libraries_are_numerics_only_when_both_processes_observed_them():
    cudnn = {"libcudnn": {"version": "9", "path": "/x/libcudnn.so.9"}}
    cublas = {"libcublas": {"version": "12", "path": "/x/libcublas.so.12"}}
    assert diff(loaded(cudnn), loaded(cublas)) == (
        change("tensorflow.loaded_libraries.libcublas.path", None, "/x/libcublas.so.12",
               *CUDA_LIB),
        change("tensorflow.loaded_libraries.libcublas.version", None, "12", *CUDA_LIB),
        change("tensorflow.loaded_libraries.libcudnn.path", "/x/libcudnn.so.9", None, *CUDNN_LIB),
        change("tensorflow.loaded_libraries.libcudnn.version", "9", None, *CUDNN_LIB),
    )
    # TensorFlow loaded with no GPU library is an observation too
    assert diff(loaded({}), loaded(cudnn))[0] == change(
        "tensorflow.loaded_libraries", {}, None, *CUDA_LIB)
    # one process did not have TensorFlow imported: nothing it lacks is a finding
    assert diff(loaded(None), loaded(cudnn)) == (
        change("tensorflow.loaded_libraries.libcudnn.path", None, "/x/libcudnn.so.9",
               "cudnn", False, "cuda libraries", False),
        change("tensorflow.loaded_libraries.libcudnn.version", None, "9",
               "cudnn", False, "cuda libraries", False),
    )


def test_order_is_numerics_then_category_then_path():
    golden = {"packages": {"numpy": {"version": "1"}, "rich": {"version": "1"}},
              "env": {"OMP_NUM_THREADS": "1"}, "os": {"hostname": "a", "arch": "x86_64"},
              "gpu": {"driver_version": "1"}, "cpu": {"model": 1, "stepping": 1}}
    current = copy.deepcopy(golden)
    for section, key in (("env", "OMP_NUM_THREADS"), ("os", "hostname"), ("os", "arch"),
                         ("gpu", "driver_version"), ("cpu", "model"), ("cpu", "stepping")):
        current[section][key] = "2"
    current["packages"] = {"numpy": {"version": "2"}, "rich": {"version": "2"}}
    assert [c.path for c in diff(Fingerprint(golden), Fingerprint(current))] == [
        "gpu.driver_version", "cpu.model", "os.arch", "env.OMP_NUM_THREADS",
        "packages.numpy.version", "cpu.stepping", "packages.rich.version", "os.hostname",
    ]


def test_groups_listed_numerics_first_then_folded_then_informational():
    def c(path: str, numerics: bool, origin: str, minutia: bool = False) -> Change:
        return Change(path, 1, 2, "info", numerics, origin, minutia)

    changes = [
        c("e.x", False, "environment variables"), c("m.x", False, "memory"),
        c("y.x", False, "python"), c("n.folded", True, "numpy build", minutia=True),
        c("n.listed", False, "numpy build"), c("k.a", False, "packages"),
        c("k.b", True, "packages"), c("u.x", False, "unknown-b"), c("u.y", False, "unknown-a"),
        c("o.x", False, "other"),
    ]
    assert group(changes) == (
        ChangeGroup("packages", (changes[6], changes[5])),  # a listed numerics change
        ChangeGroup("numpy build", (changes[3], changes[4])),  # numerics only folded
        ChangeGroup("environment variables", (changes[0],)),  # then in ORIGINS order
        ChangeGroup("python", (changes[2],)),
        ChangeGroup("memory", (changes[1],)),
        ChangeGroup("other", (changes[9],)),
        ChangeGroup("unknown-a", (changes[8],)),  # origins nobody listed: last, by name
        ChangeGroup("unknown-b", (changes[7],)),
    )


# Trees over a few keys that rules know, so markers, lists and process-dependent paths occur.
_KEYS = st.sampled_from(["gpu", "env", "cpu", "flags", "available", "reason", "tensorflow",
                         "loaded_libraries", "a", "0"])
_SCALARS = (st.none() | st.booleans() | st.integers(-2, 2) | st.text("ab.", max_size=2)
            | st.floats(allow_nan=False))
_TREES = st.dictionaries(_KEYS, st.recursive(
    _SCALARS | st.lists(_SCALARS, max_size=3),
    lambda inner: st.dictionaries(_KEYS, inner, max_size=3) | st.lists(inner, max_size=2),
    max_leaves=12), max_size=5)


@given(_TREES)
def test_property_a_tree_against_itself_has_no_change(tree):
    assert diff(Fingerprint(tree), Fingerprint(copy.deepcopy(tree))) == ()


@given(_TREES, _TREES)
def test_property_both_directions_list_the_same_paths(a, b):
    forward = diff(Fingerprint(a), Fingerprint(b))
    backward = diff(Fingerprint(b), Fingerprint(a))
    assert sorted(c.path for c in forward) == sorted(c.path for c in backward)
    assert sorted((c.path, repr(c.golden), repr(c.current)) for c in forward) == sorted(
        (c.path, repr(c.current), repr(c.golden)) for c in backward)


# -- redaction: identity, homes, names ---------------------------------------------------------

def policy(*trees: Any, identity: Identity = ALICE) -> Redactor:
    return Redactor.for_trees(*trees, salt=SALT, identity=identity)


def test_identity_of_recorded_inputs_is_normalized():
    identity = Identity.of(hostnames=["", "h1"], users=["", "u"],
                           homes=["/", "", "/a/long/home/", "/b", "/home/MAX/"])
    assert identity == Identity(frozenset({"h1"}), frozenset({"u"}),
                                ("/a/long/home", "/home/MAX", "/b"))  # longest first


@pytest.fixture
def machine(monkeypatch):
    """This machine as the test says it is: names and homes from the environment, getpass, the
    password database and uname."""
    entries = {os.getuid(): types.SimpleNamespace(pw_name="ada-pwd", pw_dir="/srv/homes/ada")}

    def getpwuid(uid: int):
        return entries[uid]

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(getpass, "getuser", lambda: "ada-getpass")
    uname = os.uname()
    monkeypatch.setattr(os, "uname", lambda: types.SimpleNamespace(
        sysname=uname.sysname, nodename="lab-box-1", release=uname.release))
    for name, value in (("USER", "ada"), ("LOGNAME", "ada-login"), ("HOME", "/home//ada/")):
        monkeypatch.setenv(name, value)
    return entries


def test_identity_of_this_machine_collects_every_source(machine):
    # HOME as written and as pathlib normalizes it: a log line may quote either
    assert Identity.of_this_machine() == Identity(
        frozenset({"lab-box-1"}), frozenset({"ada", "ada-login", "ada-getpass", "ada-pwd"}),
        ("/srv/homes/ada", "/home//ada", "/home/ada"))


def test_identity_of_a_machine_that_knows_nothing_of_its_user(machine, monkeypatch):
    machine.clear()  # an arbitrary uid without a passwd entry, as containers run

    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", no_user)
    for name in ("USER", "LOGNAME", "HOME"):
        monkeypatch.delenv(name)
    assert Identity.of_this_machine() == Identity(frozenset({"lab-box-1"}), frozenset(), ())


@pytest.mark.parametrize(("identity", "text", "expected"), [
    (ALICE, "/home/alice", "~"), (ALICE, "/home/alice/", "~/"), (ALICE, "/home/alice:x", "~:x"),
    (ALICE, "'/home/alice'", "'~'"), (ALICE, "/home/alice2", "/home/[user]"),
    (ALICE, "/home/alice.bak/x", "/home/[user]/x"), (ALICE, "x/home/alice", "x/home/[user]"),
    (ALICE, "/Users/carol", "/home/[user]"),
    # not root: /root is another user's home
    (ALICE, "/root", "~root"), (ALICE, "/root/", "~root/"), (ALICE, "/root:/x", "~root:/x"),
    (ALICE, "a /root", "a ~root"), (ALICE, "/rootfs", "/rootfs"), (ALICE, "/root.d", "/root.d"),
    (ALICE, "/mnt/root/x", "/mnt/root/x"), (ALICE, "./root", "./root"),
    (ALICE, "~/root", "~/root"),
    # as root: /root is this user's home
    (ROOT, "/root", "~"), (ROOT, "/root/.cache", "~/.cache"), (ROOT, "/rootfs/lib", "/rootfs/lib"),
    (ROOT, "/mnt/root/x", "/mnt/root/x"), (ROOT, "/home/bob", "/home/[user]"),
])
def test_home_folders_at_their_boundaries(identity, text, expected):
    assert policy(identity=identity).text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("build-7", "[hostname]"), ("build-7.example.com", "[hostname]"),
    ("(build-7)", "([hostname])"), ("build-7/", "[hostname]/"),
    ("at build-7:22", "at [hostname]:22"),
    ("build-70", "build-70"), ("build-7x", "build-7x"), ("xbuild-7", "xbuild-7"),
    ("-build-7", "-build-7"), ("build-7-", "build-7-"), ("a.build-7", "a.build-7"),
    ("build-7_a", "build-7_a"),
    ("alice", "[user]"), ("by alice.", "by [user]."), ("alice_bot", "alice_bot"),
    ("malice", "malice"),
])
def test_host_and_user_names_as_whole_words(text, expected):
    assert policy().text(text) == expected


def test_root_is_never_hidden_as_a_user_name():
    assert policy(identity=ROOT).text("owned by root") == "owned by root"


# -- redaction: GPU identifiers, secrets, the trees involved -----------------------------------

def test_gpu_identifiers_are_hashed_with_the_given_salt():
    assert hashed("GPU-8c3d8b3e-3e26-5a4f-9f3b-2c1d0e9f8a7b", SALT) == "redacted-5ef882479f8f"
    tree = {"gpu": {"devices": [
        {"uuid": "GPU-1", "serial": "1424"}, {"serial": "424"}, "not a device",
        {"uuid": 7, "serial": ""}, {"uuid": {"available": False, "reason": "x"}}]}}
    redactor = policy(tree)
    assert redactor.gpu_ids == frozenset({"GPU-1", "1424", "424"})
    # the longer identifier first, so "1424" is not hashed as "1" + hash("424")
    assert redactor.text("1424 424 GPU-1 MIG-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d") == (
        "redacted-e5f0d775f6a6 redacted-5467557c9a3e redacted-782c3070bbf1"
        " redacted-0be931cb3fea")
    assert policy({"gpu": {"devices": NO_NVML}}).gpu_ids == frozenset()


def test_empty_and_unreadable_hostnames_hide_nothing():
    assert policy({"os": {"hostname": ""}}).text("a b") == "a b"
    unreadable = policy({"os": {"hostname": {"available": False, "reason": "x"}}})
    assert unreadable.identity.hostnames == frozenset({"build-7"})


def test_fingerprints_are_read_like_trees():
    redactor = policy(Fingerprint({"os": {"hostname": "fp-host"}, "env": {"API_KEY": "abcdefgh"}}))
    assert redactor.text("fp-host abcdefgh") == "[hostname] [redacted]"


def test_secret_values_only_in_variables_and_only_when_set():
    token = "0123456789abcdef0123456789abcdef"  # 32 hex digits: a token in a variable
    tree = {"tensorflow": {"build_id": token},
            "env": {"TF_VAR_db_pass": "", "API_KEY": "x", "TF_ID": token, "OMP_NUM_THREADS": "4"}}
    redactor = policy(tree)
    assert redactor.tree(tree) == {
        "tensorflow": {"build_id": REDACTED},  # the same value was a secret in a variable
        "env": {"TF_VAR_db_pass": "", "API_KEY": REDACTED, "TF_ID": REDACTED,
                "OMP_NUM_THREADS": "4"},
    }
    other = policy({"env": {"OMP_NUM_THREADS": "4"}})
    assert other.value("tensorflow.build_id", token) == token
    assert other.tree({"tensorflow": {"build_id": token}}) == {"tensorflow": {"build_id": token}}
    assert other.value("env.TF_ID", token) == REDACTED
    assert other.value("env.API_KEY", 5) == 5


def test_with_secrets_keeps_the_policy_when_nothing_new_is_hidden():
    base = policy()
    assert base.with_secrets([5, None, "", REDACTED]) is base
    more = base.with_secrets(["s3cret-value"])
    assert more.secrets == frozenset({"s3cret-value"})
    assert more.with_secrets(["s3cret-value"]) is more
    assert more.text("a s3cret-value b") == "a [redacted] b"


@given(prefix=st.text(string.ascii_uppercase + "_", max_size=6),
       word=st.sampled_from(["SECRET", "TOKEN", "KEY", "PASS", "PWD", "AUTH", "COOKIE", "SESSION",
                             "PRIVATE", "DSN", "CRED", "SIGNATURE", "SALT", "BEARER", "WEBHOOK",
                             "CONNECTION_STRING"]),
       lower=st.booleans(), suffix=st.sampled_from(["", "_FILE", "_2", "WORD"]),
       value=st.text(st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")),
                     min_size=1, max_size=40))
def test_property_no_secret_named_value_survives(prefix, word, lower, suffix, value):
    assume(value != REDACTED)
    name = prefix + (word.lower() if lower else word) + suffix
    tree = {"os": {"hostname": "build-7"}, "env": {name: value, "TF_ENABLE_ONEDNN_OPTS": "0"}}
    redactor = policy(tree)
    assert list(redactor.tree(tree)["env"].values()) == [REDACTED, "0"]
    quote = repr(value)[0]
    assert redactor.text(repr(value)) == f"{quote}{REDACTED}{quote}"
    assert redactor.text(json.dumps(value)) == f'"{REDACTED}"'
    if len(value) >= 6:  # long enough to be hidden unquoted too
        assert redactor.text(value) == REDACTED


# -- redaction with this installation's salt -------------------------------------------------

def test_redact_and_like_use_this_installation_and_every_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    gpu_1 = redact.hashed("GPU-1", installation_salt())
    reference = Fingerprint({"os": {"hostname": "golden-host"},
                             "gpu": {"devices": [{"uuid": "GPU-1"}]}})
    other = Fingerprint({"os": {"hostname": "current-host"},
                         "notes": "moved from golden-host to current-host, GPU-1",
                         "env": {"TF_VAR_db_pass": "hunter2-hunter2"}})
    assert redact.like(reference, False, other) is other
    assert redact.like(reference, True, other).data == {
        "os": {"hostname": "[hostname]"},
        "notes": f"moved from [hostname] to [hostname], {gpu_1}",
        "env": {"TF_VAR_db_pass": REDACTED},
    }
    tree = {"os": {"hostname": "lab-7"}, "gpu": {"devices": [{"uuid": "GPU-1"}]},
            "notes": "lab-7 GPU-1"}
    assert redact.redact(tree, salt=SALT) == {
        "os": {"hostname": "[hostname]"}, "gpu": {"devices": [{"uuid": "redacted-782c3070bbf1"}]},
        "notes": "[hostname] redacted-782c3070bbf1"}
    assert redact.redact(tree)["notes"] == f"[hostname] {gpu_1}"
