"""Probe: NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

``probe(nvml)`` takes the NVML module as an argument so tests can drive every branch with a fake
that replays recorded NVML answers (tests/data/nvml/). Each NVML call is guarded on its own: a
board that answers ``NVMLError_NotSupported`` for its serial or ECC mode still reports everything
else, and the field records the reason. A board in MIG mode lists its instances (profile, SMs,
memory: a slice computes with fewer SMs than the board), and ``cuda_devices`` says which devices
this process's CUDA runs on (``gpu_selection``). With no driver the section is
``{"available": false, "reason": "NVML: <NVML's error text>"}``. NVML is shut down after reading.

Cost: importing ``pynvml`` takes about 20 ms, as much as the rest of a fingerprint's probes, and
on a machine without an NVIDIA driver it can only fail to load ``libnvidia-ml.so.1``. So on Linux
that library is loaded first, the way ``pynvml`` loads it; where it cannot be, the section is
what ``pynvml`` would have said (``NVML: NVML Shared Library Not Found``) without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from envaudit.fingerprint.gpu_selection import recorded as selected_devices
from envaudit.fingerprint.guard import field, is_unavailable, unavailable

_ENABLED = {0: "disabled", 1: "enabled"}
_NOT_INSTALLED = "nvidia-ml-py is not installed; pip install nvidia-ml-py"
# pynvml's text for NVML_ERROR_LIBRARY_NOT_FOUND (``str(pynvml.NVMLError_LibraryNotFound())``).
NO_LIBRARY = "NVML Shared Library Not Found"
# NVML_ERROR_NOT_FOUND (nvml.h): the answer for a MIG slot that holds no instance.
_NOT_FOUND = 6
_MIG_PROFILE = re.compile(r" MIG (\S+)$")  # "NVIDIA A100-SXM4-80GB MIG 1g.10gb" -> "1g.10gb"


def probe(nvml: Any = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    if nvml is None:
        if "pynvml" not in sys.modules:
            if importlib.util.find_spec("pynvml") is None:
                return unavailable(_NOT_INSTALLED)
            if not nvml_library_loads():
                return unavailable(f"NVML: {NO_LIBRARY}")
        try:
            import pynvml as nvml
        except ImportError:
            return unavailable(_NOT_INSTALLED)
    environ = os.environ if environ is None else environ
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return unavailable(f"NVML: {exc}")
    try:
        return _read(nvml, environ)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


def nvml_library_loads() -> bool:
    """Whether ``libnvidia-ml.so.1`` loads, as ``pynvml`` loads it on Linux (elsewhere ``pynvml``
    looks in other places: say yes and let it look)."""
    if not sys.platform.startswith("linux"):
        return True
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def _call(nvml: Any, name: str, *args: Any) -> Any:
    """One NVML call; its error becomes an unavailable value naming the call."""
    function = getattr(nvml, name, None)
    if function is None:
        return unavailable(f"{name} is missing from this nvidia-ml-py; upgrade nvidia-ml-py")
    try:
        value = function(*args)
    except nvml.NVMLError as exc:
        return unavailable(f"{name}: {exc}")
    return value.decode() if isinstance(value, bytes) else value


def _then(value: Any, convert: Callable[[Any], Any]) -> Any:
    """``convert(value)`` unless the call that produced it failed."""
    return value if is_unavailable(value) else convert(value)


def _read(nvml: Any, environ: Mapping[str, str]) -> dict[str, Any]:
    count = _call(nvml, "nvmlDeviceGetCount")
    devices = [] if is_unavailable(count) else [_device(nvml, i) for i in range(count)]
    section = {
        "available": True,
        "driver_version": _call(nvml, "nvmlSystemGetDriverVersion"),
        "cuda_driver_version": _then(_call(nvml, "nvmlSystemGetCudaDriverVersion"), _cuda_version),
        "nvml_version": _call(nvml, "nvmlSystemGetNVMLVersion"),
        "cuda_visible_devices": environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": environ.get("CUDA_DEVICE_ORDER"),
        "device_count": count,
        "devices": devices,
    }
    section["cuda_devices"] = field(selected_devices, section, environ)
    return section


def _cuda_version(value: int) -> str:
    """NVML's 12040 -> ``"12.4"``."""
    return f"{value // 1000}.{value % 1000 // 10}"


def _device(nvml: Any, index: int) -> dict[str, Any]:
    handle = _call(nvml, "nvmlDeviceGetHandleByIndex", index)
    if is_unavailable(handle):
        return {"index": index, "handle": handle}

    def call(name: str, *args: Any) -> Any:
        return _call(nvml, name, handle, *args)

    def clock(kind: str) -> Any:
        return call("nvmlDeviceGetMaxClockInfo", getattr(nvml, kind))

    mig_mode = _then(call("nvmlDeviceGetMigMode"), _current_pending)
    device = {
        "index": index,
        "name": call("nvmlDeviceGetName"),
        "uuid": call("nvmlDeviceGetUUID"),
        "serial": call("nvmlDeviceGetSerial"),
        "compute_capability": _then(
            call("nvmlDeviceGetCudaComputeCapability"), lambda cc: f"{cc[0]}.{cc[1]}"
        ),
        "memory_total_bytes": _then(call("nvmlDeviceGetMemoryInfo"), lambda m: int(m.total)),
        "ecc_mode": _then(call("nvmlDeviceGetEccMode"), _current_pending),
        "persistence_mode": _then(call("nvmlDeviceGetPersistenceMode"), _ENABLED.get),
        "mig_mode": mig_mode,
        "power_limit_watts": _then(
            call("nvmlDeviceGetPowerManagementLimit"), lambda mw: round(mw / 1000, 3)
        ),
        "max_clocks_mhz": {
            "graphics": clock("NVML_CLOCK_GRAPHICS"),
            "sm": clock("NVML_CLOCK_SM"),
            "memory": clock("NVML_CLOCK_MEM"),
        },
        "pcie": {
            "max_generation": call("nvmlDeviceGetMaxPcieLinkGeneration"),
            "max_width": call("nvmlDeviceGetMaxPcieLinkWidth"),
        },
        "vbios_version": call("nvmlDeviceGetVbiosVersion"),
    }
    if not is_unavailable(mig_mode) and mig_mode["current"] == "enabled":
        device["mig_devices"] = _mig_devices(nvml, handle)
    return device


def _mig_devices(nvml: Any, handle: Any) -> Any:
    """The MIG instances of a board in MIG mode, slot by slot (an empty slot is skipped)."""
    slots = _call(nvml, "nvmlDeviceGetMaxMigDeviceCount", handle)
    if is_unavailable(slots):
        return slots
    found: list[Any] = []
    for slot in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != _NOT_FOUND:
                found.append(unavailable(f"nvmlDeviceGetMigDeviceHandleByIndex: {exc}"))
            continue
        except AttributeError:
            return unavailable("nvmlDeviceGetMigDeviceHandleByIndex is missing from this"
                               " nvidia-ml-py; upgrade nvidia-ml-py")
        found.append(_mig_device(nvml, mig))
    return found


def _mig_device(nvml: Any, handle: Any) -> dict[str, Any]:
    """One MIG instance: its name and profile, where it sits, its SMs and memory."""
    name = _call(nvml, "nvmlDeviceGetName", handle)
    attributes = _call(nvml, "nvmlDeviceGetAttributes", handle)
    return {
        "uuid": _call(nvml, "nvmlDeviceGetUUID", handle),
        "name": name,
        "profile": _then(name, _mig_profile),
        "gpu_instance_id": _call(nvml, "nvmlDeviceGetGpuInstanceId", handle),
        "compute_instance_id": _call(nvml, "nvmlDeviceGetComputeInstanceId", handle),
        "multiprocessor_count": _then(attributes, lambda a: int(a.multiprocessorCount)),
        "memory_total_bytes": _then(attributes, lambda a: int(a.memorySizeMB) << 20),
    }


def _mig_profile(name: str) -> str | None:
    match = _MIG_PROFILE.search(name)
    return match.group(1) if match else None


def _current_pending(pair: Any) -> dict[str, Any]:
    current, pending = pair
    return {"current": _ENABLED.get(current, current), "pending": _ENABLED.get(pending, pending)}
