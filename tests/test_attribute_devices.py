"""Device-aware causes, from recorded fingerprints of CPU-only and GPU machines.

The GPU sections are NVML's recorded answers (tests/data/nvml/, replayed by ``FakeNVML``); the
rest is this machine's own fingerprint. A change that cannot reach the device that computed what
moved is "cannot affect", never a cause: on a pair of runs on the CPU every GPU-stack change
(driver, CUDA, cuDNN, GPU, the CUDA wheels, the CUDA numbers of a TensorFlow build), and on a pair
of runs on a GPU a CPU instruction-set change, unless something the CPU computed moved too.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
from test_fingerprint_gpu import FakeNVML, load_recording

from envaudit.attribute import reach
from envaudit.attribute.rank import rank_causes
from envaudit.compare.tensors import compare_tensor
from envaudit.fingerprint import Fingerprint, capture, diff
from envaudit.fingerprint.gpu import probe as gpu_probe


@pytest.fixture(scope="module")
def here() -> dict:
    return capture().to_dict()


def machine(base: dict, nvml: str, *, tensorflow: dict | None = None,
            packages: dict | None = None, visible: str | None = None,
            cpu_flags: list[str] | None = None) -> Fingerprint:
    """This machine's fingerprint with the GPU section of an NVML recording, and the TensorFlow
    build, installed distributions (None: not installed), CUDA_VISIBLE_DEVICES and CPU flags
    given."""
    data = copy.deepcopy(base)
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    data["gpu"] = gpu_probe(FakeNVML(load_recording(nvml)), environ)
    if visible is not None:
        data["env"]["CUDA_VISIBLE_DEVICES"] = visible
    if tensorflow:
        data["tensorflow"].update(tensorflow)
    for name, version in (packages or {}).items():
        if version is None:
            data["packages"].pop(name, None)
        else:
            data["packages"][name] = {"version": version}
    if cpu_flags is not None:
        data["cpu"]["flags"] = cpu_flags
    return Fingerprint(data)


CPU_PACKAGES = {"tensorflow": None, "tensorflow-cpu": "2.20.0"}
CUDA_PACKAGES = {"tensorflow": "2.21.0", "tensorflow-cpu": None}
CPU_BUILD = {"distribution": "tensorflow-cpu", "version": "2.20.0",
             "build_info": {"is_cuda_build": False, "is_rocm_build": False}}
CUDA_BUILD = {"distribution": "tensorflow", "version": "2.21.0",
              "build_info": {"is_cuda_build": True, "is_rocm_build": False,
                             "cuda_version": "12.5.1", "cudnn_version": "9"}}


def moved(device: str, golden_device: str | None, names=("stem", "block1")) -> list:
    """Arrays that moved, computed on these devices."""
    golden = np.linspace(0, 1, 64, dtype=np.float32)
    current = golden + np.float32(1e-3)
    return [replace(compare_tensor(n, "stage", n, golden, current), device=device,
                    golden_device=golden_device) for n in names]


def test_on_a_cpu_only_pair_every_gpu_stack_change_cannot_affect(here):
    # The golden machine has no driver; this one has two H100s that CUDA_VISIBLE_DEVICES hides,
    # a CUDA build of TensorFlow and its CUDA wheels: both ran every array on the CPU.
    golden = machine(here, "driver_not_loaded.json", tensorflow=CPU_BUILD, packages=CPU_PACKAGES)
    current = machine(here, "h100_sxm5_x2.json", tensorflow=CUDA_BUILD, visible="",
                      packages={**CUDA_PACKAGES, "nvidia-cudnn-cu12": "9.3.0.75",
                                "nvidia-cublas-cu12": "12.5.3.2"})
    changes = diff(golden, current)
    gpu_stack = [c for c in changes if c.numerics and reach.device_reach(c) == {"gpu"}]
    assert {c.category for c in gpu_stack} >= {"gpu", "cuda", "cudnn"}
    devices = reach.evidence(moved("CPU:0", "CPU:0"), golden)
    assert devices.known == {"cpu"}

    cannot = reach.unreachable(changes, devices)
    assert {u.path for u in cannot} == {c.path for c in gpu_stack}
    assert all(u.reason.startswith("cannot affect: ran on CPU") for u in cannot)
    causes = rank_causes(changes, ["conv"], "stem", [], False, devices=devices)
    ranked_heads = {c.path for c in causes}
    assert not ranked_heads & {c.path for c in gpu_stack}
    # The TensorFlow release leads, its build and distribution fields with it.
    top = causes[0]
    assert top.path == "tensorflow.version" and top.confidence == "likely"
    assert {"tensorflow.distribution", "tensorflow.build_info.cuda_version",
            "packages.tensorflow-cpu.version", "packages.tensorflow.version"} <= set(top.related)
    assert "the arrays that moved were computed on CPU:0 in both runs" in top.evidence


def test_an_older_bundle_without_devices_is_cpu_only_when_its_fingerprint_proves_it(here):
    golden = machine(here, "driver_not_loaded.json", tensorflow=CPU_BUILD)
    current = machine(here, "driver_not_loaded.json", tensorflow=CUDA_BUILD)
    devices = reach.evidence(moved("CPU:0", None), golden)
    assert devices.known == {"cpu"}
    assert "the CPU (its fingerprint has no GPU) in the golden run" in devices.shown
    cannot = reach.unreachable(diff(golden, current), devices)
    assert "tensorflow.build_info.cuda_version" in {u.path for u in cannot}


def test_when_the_golden_side_may_have_used_a_gpu_nothing_is_ruled_unreachable(here):
    golden = machine(here, "h100_sxm5_x2.json", tensorflow=CUDA_BUILD)  # GPUs, no devices kept
    current = machine(here, "driver_not_loaded.json", tensorflow=CPU_BUILD)
    devices = reach.evidence(moved("CPU:0", None), golden)
    assert devices.known is None
    assert reach.unreachable(diff(golden, current), devices) == []
    causes = rank_causes(diff(golden, current), ["conv"], "stem", [], False, devices=devices)
    assert any(c.path and c.path.startswith("gpu.") for c in causes)


# Instruction sets the golden machine of a CPU change has and the current one lacks: added to this
# machine's own flags, so the pair differs on an AVX2-only CPU as on an AVX-512 one.
AVX512_FLAGS = ("avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx512vl")


@pytest.mark.parametrize("cpu", ["this machine", "AVX2 only"])
def test_on_a_gpu_pair_a_cpu_change_cannot_affect_what_the_gpu_computed(here, cpu):
    own = here["cpu"]["flags"]
    if cpu == "AVX2 only":  # the machine this test once failed on, whatever runs it now
        own = [f for f in own if not f.startswith("avx512")]
        assert not [f for f in own if f.startswith("avx512")]
    flags = sorted({*own, *AVX512_FLAGS})
    golden = machine(here, "h100_sxm5_x2.json", cpu_flags=flags)
    current = machine(here, "rtx4090_geforce.json", cpu_flags=[f for f in flags
                                                                if not f.startswith("avx512")])
    changes = diff(golden, current)
    cpu_changes = {c.path for c in changes if c.numerics and c.category == "cpu"}
    assert {f"cpu.flags.{flag}" for flag in AVX512_FLAGS} <= cpu_changes
    on_gpu = reach.evidence(moved("GPU:0", "GPU:0"), golden)
    assert on_gpu.known == {"gpu"}
    cannot = {u.path: u.reason for u in reach.unreachable(changes, on_gpu)}
    assert cpu_changes <= set(cannot)
    assert all(cannot[p].startswith("cannot affect: ran on GPU") for p in cpu_changes)
    ranked = rank_causes(changes, ["conv"], "stem", [], False, devices=on_gpu)
    assert ranked[0].path.startswith("gpu.")  # another GPU leads
    # The decoded images are computed on the CPU even on a GPU machine: if they moved too, the
    # CPU change can reach what moved and is ranked again.
    mixed = reach.evidence([*moved("GPU:0", "GPU:0"), *moved("CPU:0", "CPU:0", ("decode",))],
                           golden)
    assert mixed.known == {"cpu", "gpu"}
    assert not {u.path for u in reach.unreachable(changes, mixed)} & cpu_changes


@pytest.mark.parametrize(("path", "category", "reach_kinds"), [
    ("env.NVIDIA_TF32_OVERRIDE", "numerics-env", {"gpu"}),
    ("env.TF_CUDNN_USE_AUTOTUNE", "numerics-env", {"gpu"}),
    ("env.TF_ENABLE_ONEDNN_OPTS", "numerics-env", {"cpu"}),
    ("env.OMP_NUM_THREADS", "numerics-env", {"cpu"}),
    ("env.CUDA_VISIBLE_DEVICES", "numerics-env", {"gpu"}),  # it matters where a GPU ran
    ("env.XLA_FLAGS", "numerics-env", {"cpu", "gpu"}),
    ("gpu.driver_version", "driver", {"gpu"}),
    ("cpu.flags.avx512f", "cpu", {"cpu"}),
    ("tensorflow.version", "tensorflow", {"cpu", "gpu"}),
    ("packages.numpy.version", "packages", {"cpu", "gpu"}),
])
def test_what_each_kind_of_change_can_reach(path, category, reach_kinds):
    from envaudit.fingerprint.types import Change

    assert reach.device_reach(Change(path, "a", "b", category, True)) == reach_kinds


# --- devices in bundles -------------------------------------------------------------------------


def test_a_recorded_bundle_keeps_the_device_of_every_array(trained_bundle):
    from envaudit.store import load_bundle
    from envaudit.workload.types import keyed_arrays

    bundle = load_bundle(trained_bundle)
    keys = keyed_arrays(bundle.stages_by_mode, bundle.probes)
    steps = keyed_arrays(bundle.training, {})  # the training steps' arrays too
    assert steps and set(bundle.devices) == set(keys) | set(steps)
    assert set(bundle.devices.values()) == {"CPU:0"}  # this machine has no GPU
    assert bundle.device_names == {}


@pytest.mark.parametrize("devices", [
    {"arrays": {"stage/eager/decode": "GPU:0; rm -rf /"}, "names": {}},
    {"arrays": {"stage/eager/decode": "TPU:0"}, "names": {}},
    {"arrays": {}, "names": {"GPU:0": 7}},
    {"arrays": []},
    "CPU:0",
])
def test_forged_devices_are_refused(golden_bundle, tmp_path, devices):
    import json
    import shutil

    from envaudit.errors import EnvauditError
    from envaudit.store import MANIFEST, _manifest_digest, load_bundle
    target = tmp_path / "forged"
    shutil.copytree(golden_bundle, target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["devices"] = devices
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    (target / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(EnvauditError, match="'devices' must map array keys to devices"):
        load_bundle(target)
