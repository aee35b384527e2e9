"""The NVML probe: the GPU branch replayed from recorded NVML answers, the no-driver branch real.

``FakeNVML`` (tests/nvml_replay.py) answers like the ``pynvml`` module of nvidia-ml-py (same
function names, same return shapes, the real ``pynvml.NVMLError`` classes) from a JSON recording
in tests/data/nvml/. A name missing from the recording is missing from the fake module, as in an
older nvidia-ml-py.
"""

from __future__ import annotations

import pynvml
from nvml_replay import FakeNVML, load_recording

from envaudit.fingerprint import gpu

__all__ = ["FakeNVML", "load_recording"]  # other tests import the replayer from here


def test_h100_node_is_parsed_into_every_field():
    fake = FakeNVML(load_recording("h100_sxm5_x2.json"))
    environ = {"CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    section = gpu.probe(fake, environ=environ)

    assert section["available"] is True
    assert section["driver_version"] == "550.54.15"
    assert section["cuda_driver_version"] == "12.4"
    assert section["nvml_version"] == "12.550.54.15"
    assert section["cuda_visible_devices"] == "1,0"
    assert section["cuda_device_order"] == "PCI_BUS_ID"
    assert section["device_count"] == 2
    assert section["devices"][0] == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-5d8a1c1e-3f0e-8b9a-6f52-1c3e9a7d2b40",
        "serial": "1654922051234",
        "compute_capability": "9.0",
        "memory_total_bytes": 85520809984,
        "ecc_mode": {"current": "enabled", "pending": "enabled"},
        "persistence_mode": "enabled",
        "mig_mode": {"current": "disabled", "pending": "disabled"},
        "power_limit_watts": 700.0,
        "max_clocks_mhz": {"graphics": 1980, "sm": 1980, "memory": 2619},
        "pcie": {"max_generation": 5, "max_width": 16},
        "vbios_version": "96.00.89.00.01",
    }
    assert section["devices"][1]["index"] == 1
    assert section["devices"][1]["uuid"] == "GPU-a07c44f2-91d6-2e3b-c8f0-77b1d5e6a913"
    assert fake.calls[0] == "nvmlInit" and fake.calls[-1] == "nvmlShutdown"


def test_unset_cuda_env_is_recorded_as_none():
    section = gpu.probe(FakeNVML(load_recording("h100_sxm5_x2.json")), environ={})
    assert section["cuda_visible_devices"] is None
    assert section["cuda_device_order"] is None


def test_geforce_not_supported_fields_are_unavailable_with_the_reason():
    fake = FakeNVML(load_recording("rtx4090_geforce.json"))
    section = gpu.probe(fake, environ={})
    device = section["devices"][0]

    for key, call in (("serial", "nvmlDeviceGetSerial"), ("ecc_mode", "nvmlDeviceGetEccMode"),
                      ("mig_mode", "nvmlDeviceGetMigMode")):
        assert device[key] == {"available": False, "reason": f"{call}: Not Supported"}
    # everything else on the board still reads
    assert device["name"] == "NVIDIA GeForce RTX 4090"
    assert device["compute_capability"] == "8.9"
    assert device["memory_total_bytes"] == 25757220864
    assert device["persistence_mode"] == "disabled"
    assert device["power_limit_watts"] == 450.0
    assert device["max_clocks_mhz"] == {"graphics": 3120, "sm": 3120, "memory": 10501}
    # an nvidia-ml-py without nvmlSystemGetNVMLVersion
    assert section["nvml_version"]["available"] is False
    assert "nvmlSystemGetNVMLVersion is missing" in section["nvml_version"]["reason"]
    assert "nvmlShutdown" in fake.calls


def test_mig_enabled_a100_and_a_permission_error():
    section = gpu.probe(FakeNVML(load_recording("a100_sxm4_mig.json")), environ={})
    device = section["devices"][0]

    assert section["driver_version"] == "535.129.03"
    assert section["cuda_driver_version"] == "12.2"
    assert device["mig_mode"] == {"current": "enabled", "pending": "enabled"}
    assert device["compute_capability"] == "8.0"
    assert device["pcie"] == {
        "max_generation": 4,
        "max_width": {
            "available": False,
            "reason": "nvmlDeviceGetMaxPcieLinkWidth: Insufficient Permissions",
        },
    }


def test_driver_not_loaded_is_one_unavailable_section():
    fake = FakeNVML(load_recording("driver_not_loaded.json"))
    assert gpu.probe(fake) == {"available": False, "reason": "NVML: Driver Not Loaded"}
    assert fake.calls == ["nvmlInit"]


def test_no_driver_branch_for_real():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        expected_reason = f"NVML: {exc}"
    else:
        pynvml.nvmlShutdown()
        assert gpu.probe()["available"] is True  # a driver is there: the GPU branch answers
        return
    assert gpu.probe() == {"available": False, "reason": expected_reason}
    assert expected_reason in (
        "NVML: NVML Shared Library Not Found",
        "NVML: Driver Not Loaded",
    )
