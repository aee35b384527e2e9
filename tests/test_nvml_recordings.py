"""Every NVML recording under tests/data/nvml replays through the fingerprint's probe, and
tools/record_nvml.py writes recordings that do.

A recording dropped into tests/data/nvml (from a GPU machine, by tools/record_nvml.py) is
exercised here without a test of its own: it must replay through ``FakeNVML`` (the stand-in the
fingerprint tests use) to a gpu section that agrees with its answers, and recording it again
(record_nvml's ``Recorder`` driven by the replay) must give back the same section. The recorder's
GPU branch is tested this way, since no GPU is here; its no-driver branch runs for real.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pynvml
import pytest
from nvml_replay import RECORDINGS, FakeNVML, load_recording, nvml_error

from envaudit.fingerprint import gpu

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("record_nvml", ROOT / "tools" / "record_nvml.py")
record_nvml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record_nvml)

ALL = sorted(p.name for p in RECORDINGS.glob("*.json"))
FAKE_GPU = re.compile(r"^GPU-00000000-0000-0000-0000-0000000000\d\d$")
FAKE_MIG = re.compile(r"^MIG-00000000-0000-0000-00\d\d-0000000000\d\d$")
# A MIG-enabled GPU with two instances in slots 0 and 2 (a 3g.40gb and a 1g.10gb) and slot 1 empty,
# in pynvml's shapes: what tools/record_nvml.py writes for such a host.
MIG_HOST = {
    "nvmlInit": None, "nvmlShutdown": None,
    "nvmlSystemGetDriverVersion": "535.129.03", "nvmlSystemGetCudaDriverVersion": 12020,
    "nvmlDeviceGetCount": 1,
    "devices": [{
        "nvmlDeviceGetName": "NVIDIA A100-SXM4-80GB",
        "nvmlDeviceGetUUID": "GPU-3b9e2d71-0c4a-5f18-9e2d-4a6b8c0d1e2f",
        "nvmlDeviceGetSerial": "1323621012345",
        "nvmlDeviceGetMigMode": [1, 1],
        "nvmlDeviceGetMaxMigDeviceCount": 3,
        "mig_devices": [
            {"nvmlDeviceGetName": "NVIDIA A100-SXM4-80GB MIG 3g.40gb",
             "nvmlDeviceGetUUID": "MIG-4c1f2a3b-5d6e-5f70-8192-a3b4c5d6e7f8",
             "nvmlDeviceGetMemoryInfo": {"total": 42949672960, "free": 42500000000,
                                         "used": 449672960},
             "nvmlDeviceGetAttributes": {"multiprocessorCount": 42, "gpuInstanceSliceCount": 3,
                                         "computeInstanceSliceCount": 3, "memorySizeMB": 40192},
             "nvmlDeviceGetGpuInstanceId": 2, "nvmlDeviceGetComputeInstanceId": 0},
            {"nvml_error": "NVML_ERROR_NOT_FOUND"},
            {"nvmlDeviceGetName": "NVIDIA A100-SXM4-80GB MIG 1g.10gb",
             "nvmlDeviceGetUUID": "MIG-GPU-3b9e2d71-0c4a-5f18-9e2d-4a6b8c0d1e2f/9/0",
             "nvmlDeviceGetMemoryInfo": {"total": 10200547328, "free": 10000000000,
                                         "used": 200547328},
             "nvmlDeviceGetAttributes": {"multiprocessorCount": 14, "gpuInstanceSliceCount": 1,
                                         "computeInstanceSliceCount": 1, "memorySizeMB": 9728},
             "nvmlDeviceGetGpuInstanceId": 9, "nvmlDeviceGetComputeInstanceId": 0},
        ],
    }],
}


def without_ids(section: dict[str, Any]) -> dict[str, Any]:
    """A gpu section without the identifiers a recording replaces by fakes."""
    devices = [{k: v for k, v in d.items() if k not in ("uuid", "serial")}
               for d in section.get("devices", [])]
    return {**section, "devices": devices} if "devices" in section else section


@pytest.mark.parametrize("name", ALL)
def test_every_recording_replays_through_the_probe(name):
    recording = load_recording(name)
    fake = FakeNVML(recording)
    section = gpu.probe(fake, environ={})

    init_error = nvml_error(recording.get("nvmlInit"))
    if init_error is not None:
        assert section == {"available": False, "reason": f"NVML: {init_error}"}
        assert fake.calls == ["nvmlInit"]
        return
    assert section["available"] is True
    assert section["device_count"] == len(recording["devices"])
    assert [d["index"] for d in section["devices"]] == list(range(len(recording["devices"])))
    for device, answers in zip(section["devices"], recording["devices"]):
        if isinstance(answers.get("nvmlDeviceGetName"), str):
            assert device["name"] == answers["nvmlDeviceGetName"]
    assert fake.calls[0] == "nvmlInit" and fake.calls[-1] == "nvmlShutdown"
    if "_recorded_with" in recording:  # written by tools/record_nvml.py: identifiers are fakes
        uuids = [d.get("nvmlDeviceGetUUID") for d in recording["devices"]]
        assert all(FAKE_GPU.match(u) for u in uuids if isinstance(u, str))


@pytest.mark.parametrize("name", ALL)
def test_recording_a_replayed_machine_gives_back_its_section(name):
    original = load_recording(name)
    again = record_nvml.fake_identifiers(record_nvml.record(FakeNVML(original), gpu.probe))

    # the section the probe gave while recording, identifiers faked, is what the file replays to
    assert gpu.probe(FakeNVML(again)) == again["_fingerprint_gpu"]
    assert again["_fingerprint_gpu"] == gpu.probe(FakeNVML(record_nvml.fake_identifiers(original)))
    for device in again.get("devices", []):
        uuid = device.get("nvmlDeviceGetUUID")
        assert uuid is None or not isinstance(uuid, str) or FAKE_GPU.match(uuid)


def test_the_recorder_only_reads():
    fake = FakeNVML(load_recording("h100_sxm5_x2.json"))
    record_nvml.record(fake, gpu.probe)
    assert fake.calls and all(
        re.fullmatch(r"nvmlInit|nvmlShutdown|nvml(System|Device)Get\w+|nvmlDeviceIs\w+", call)
        for call in fake.calls)


def test_mig_devices_are_recorded_with_fake_uuids_and_their_empty_slots():
    recorded = record_nvml.fake_identifiers(record_nvml.record(FakeNVML(MIG_HOST)))
    device = recorded["devices"][0]
    migs = device["mig_devices"]

    assert device["nvmlDeviceGetUUID"] == "GPU-00000000-0000-0000-0000-000000000001"
    assert device["nvmlDeviceGetSerial"] == "00001"
    assert device["nvmlDeviceGetMaxMigDeviceCount"] == 3
    assert len(migs) == 3 and migs[1] == {"nvml_error": "NVML_ERROR_NOT_FOUND"}
    assert migs[0]["nvmlDeviceGetUUID"] == "MIG-00000000-0000-0000-0001-000000000001"
    # the old MIG form names its GPU: replaced as a whole, so no real identifier remains
    assert migs[2]["nvmlDeviceGetUUID"] == "MIG-00000000-0000-0000-0001-000000000003"
    assert migs[2]["nvmlDeviceGetAttributes"]["multiprocessorCount"] == 14
    assert migs[0]["nvmlDeviceGetMemoryInfo"]["total"] == 42949672960
    assert migs[0]["nvmlDeviceGetGpuInstanceId"] == 2
    text = json.dumps(recorded)
    assert "3b9e2d71" not in text and "4c1f2a3b" not in text and "1323621012345" not in text


def test_the_replayer_answers_mig_handles_like_pynvml():
    fake = FakeNVML(MIG_HOST)
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(handle, 2)

    assert fake.nvmlDeviceIsMigDeviceHandle(mig) and not fake.nvmlDeviceIsMigDeviceHandle(handle)
    assert fake.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig) == handle
    assert fake.nvmlDeviceGetAttributes(mig).multiprocessorCount == 14
    assert fake.nvmlDeviceGetName(mig) == "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetMigDeviceHandleByIndex(handle, 1)
    assert fake.nvmlDeviceGetHandleByUUID(MIG_HOST["devices"][0]["nvmlDeviceGetUUID"]) == 0
    # a GPU without MIG mode answers as NVML does there
    plain = FakeNVML(load_recording("h100_sxm5_x2.json"))
    with pytest.raises(pynvml.NVMLError_NotSupported):
        plain.nvmlDeviceGetMigDeviceHandleByIndex(plain.nvmlDeviceGetHandleByIndex(0), 0)


def test_the_no_driver_machine_is_recorded_as_nvml_answers_for_real(tmp_path):
    """The real pynvml on this machine: what it answers is what the recording says."""
    out = tmp_path / "nvml.json"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "record_nvml.py"), str(out)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    recording = json.loads(out.read_text(encoding="utf-8"))
    replayed = gpu.probe(FakeNVML(recording), environ={})
    if not gpu.nvml_library_loads() or nvml_error(recording.get("nvmlInit")) is not None:
        assert run.stdout.startswith("nvml recording: unavailable: NVML: ")
        assert replayed == gpu.probe(environ={})  # the same reason the live probe gives
        assert set(recording) == {"_about", "_recorded_with", "_fingerprint_gpu", "nvmlInit"}
        assert recording["_fingerprint_gpu"] == replayed
    else:  # a driver answers here
        assert run.stdout.startswith("nvml recording: ok: ")
        assert without_ids(replayed) == without_ids(gpu.probe(environ={}))


def test_a_bad_command_line_is_exit_2():
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "record_nvml.py")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and "usage:" in run.stderr


class CtypesNVML:
    """Answers as pynvml's own code does on a driver: a new pointer object per handle lookup (the
    same address for the same GPU), ctypes structures, bytes from an older nvidia-ml-py."""

    NVMLError = pynvml.NVMLError
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM

    def nvmlInit(self) -> None:
        return None

    nvmlShutdown = nvmlInit

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        return ctypes.cast(ctypes.c_void_p(0x1000 + 0x100 * index), pynvml.c_nvmlDevice_t)

    def _index(self, handle: Any) -> int:
        return (ctypes.cast(handle, ctypes.c_void_p).value - 0x1000) // 0x100

    def nvmlDeviceGetUUID(self, handle: Any) -> bytes:
        return f"GPU-1234abcd-0000-1111-2222-33334444555{self._index(handle)}".encode()

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.free, memory.used = 150 << 30, 149 << 30, 1 << 30
        return memory

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        info = pynvml.nvmlPciInfo_t()
        info.busId = f"00000000:{0x1B + self._index(handle):02X}:00.0".encode()
        info.bus = 0x1B + self._index(handle)
        return info

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, kind: int) -> int:
        return 1980 + self._index(handle)

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


def test_pynvml_handles_and_structures_are_recorded_per_gpu():
    recording = record_nvml.fake_identifiers(record_nvml.record(CtypesNVML()))
    first, second = recording["devices"]

    assert first["nvmlDeviceGetUUID"] == "GPU-00000000-0000-0000-0000-000000000001"
    assert second["nvmlDeviceGetUUID"] == "GPU-00000000-0000-0000-0000-000000000002"
    assert first["nvmlDeviceGetMemoryInfo"] == {"total": 150 << 30, "free": 149 << 30,
                                                "used": 1 << 30}
    assert second["nvmlDeviceGetPciInfo"]["busId"] == "00000000:1C:00.0"
    assert second["nvmlDeviceGetPciInfo"]["bus"] == 0x1C
    assert second["nvmlDeviceGetMaxClockInfo"] == {"NVML_CLOCK_SM": 1981}
    assert first["nvmlDeviceGetMigMode"] == {"nvml_error": "NVML_ERROR_NOT_SUPPORTED"}
    assert "mig_devices" not in first
    json.dumps(recording)  # plain data throughout
    fake = FakeNVML(recording)
    assert fake.nvmlDeviceGetMemoryInfo(fake.nvmlDeviceGetHandleByIndex(1)).total == 150 << 30
