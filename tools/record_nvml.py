"""Record NVML's raw answers on this machine, in the format of tests/data/nvml/ (its README.md).

    python tools/record_nvml.py OUT.json

What it records: the system calls, then per GPU a fixed sweep (``DEVICE_CALLS``, the max clocks of
every clock type, and MIG: ``nvmlDeviceGetMaxMigDeviceCount`` and each MIG device's name, UUID,
memory, attributes (SM count, slices) and instance ids), and then every call that
``envaudit.fingerprint.gpu.probe`` makes, answered by pynvml through ``Recorder``, so a call the
probe gains later is recorded without a change here. The file replays through
tests/nvml_replay.py (``FakeNVML``), so a recording can become test data as it is.

Constraints for the next editor:

- Read-only: only ``nvmlDeviceGet*``/``nvmlSystemGet*`` queries; no NVML setter, no GPU setting
  touched. Every call is guarded on its own: its error is recorded (``{"nvml_error": NAME}``),
  never raised out of the sweep.
- Identifiers never leave as they are: GPU and MIG UUIDs and serials are replaced by stable fakes
  (``fake_identifiers``) everywhere in the file before it is written.
- No driver (or no ``libnvidia-ml``): the file records ``nvmlInit``'s error, as
  tests/data/nvml/driver_not_loaded.json does, and the status line says so. Without nvidia-ml-py
  nothing is written. The exit status is 0 either way (2 only for a bad command line).
- Standard library and ``pynvml`` only; envaudit is imported only for its probe and is optional.
"""

from __future__ import annotations

import ctypes
import json
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

SYSTEM_CALLS = ("nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion",
                "nvmlSystemGetNVMLVersion")
DEVICE_CALLS = ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetSerial",
                "nvmlDeviceGetIndex", "nvmlDeviceGetPciInfo",
                "nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetMemoryInfo",
                "nvmlDeviceGetAttributes", "nvmlDeviceGetEccMode", "nvmlDeviceGetPersistenceMode",
                "nvmlDeviceGetMigMode", "nvmlDeviceGetMaxMigDeviceCount",
                "nvmlDeviceGetPowerManagementLimit", "nvmlDeviceGetMaxPcieLinkGeneration",
                "nvmlDeviceGetMaxPcieLinkWidth", "nvmlDeviceGetVbiosVersion")
CLOCK_TYPES = ("NVML_CLOCK_GRAPHICS", "NVML_CLOCK_SM", "NVML_CLOCK_MEM", "NVML_CLOCK_VIDEO")
MIG_CALLS = ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetMemoryInfo",
             "nvmlDeviceGetAttributes", "nvmlDeviceGetGpuInstanceId",
             "nvmlDeviceGetComputeInstanceId")
# Calls whose first argument is not a device handle, and those of them not recorded (the
# recording's handles are found by index; a UUID lookup replays from the recorded UUIDs).
_NOT_ON_A_HANDLE = {"nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
                    "nvmlDeviceGetHandleByUUID", "nvmlDeviceGetHandleByPciBusId"}
_UNRECORDED = {"nvmlDeviceGetHandleByUUID", "nvmlDeviceGetHandleByPciBusId"}
_MIG_ENABLED = 1  # pynvml.NVML_DEVICE_MIG_ENABLE


def plain(value: Any) -> Any:
    """pynvml's answer as JSON data: strings decoded, ctypes values and structures unpacked."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, ctypes.Array)):
        return [plain(v) for v in value]
    if isinstance(value, ctypes._SimpleCData):
        return plain(value.value)
    if isinstance(value, ctypes.Structure):
        return {field[0]: plain(getattr(value, field[0])) for field in value._fields_}
    if hasattr(value, "__dict__"):  # pynvml's "friendly objects"
        return {k: plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


def _address(handle: Any) -> Any:
    """A handle as a dict key: pynvml's handles are pointers (the same GPU, the same address);
    a stand-in's handles (tests/nvml_replay.py) are plain values already."""
    if isinstance(handle, ctypes._Pointer):
        return ctypes.cast(handle, ctypes.c_void_p).value
    return handle if isinstance(handle, (int, tuple, str)) else id(handle)


class Recorder:
    """A pynvml stand-in that passes every call to pynvml and writes its answer (or its error)
    into ``recording``, under the handle's GPU or MIG device."""

    def __init__(self, nvml: Any) -> None:
        self.NVMLError = nvml.NVMLError
        self.recording: dict[str, Any] = {}
        self._nvml = nvml
        self._slots: dict[Any, dict[str, Any]] = {}  # handle address -> its answers

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._nvml, name)
        if not name.startswith("nvml") or not callable(attribute):
            return attribute
        return lambda *args: self.call(name, *args)

    def call(self, name: str, *args: Any) -> Any:
        on_handle = name.startswith("nvmlDevice") and name not in _NOT_ON_A_HANDLE
        target = self._slots.get(_address(args[0])) if on_handle else self.recording
        extra = args[1:] if on_handle else ()
        try:
            value = getattr(self._nvml, name)(*args)
        except self._nvml.NVMLError as exc:
            answer: Any = {"nvml_error": self.error_name(exc)}
            self._place(name, args, answer, target, extra)
            raise
        self._place(name, args, value, target, extra)
        return value

    @staticmethod
    def error_name(exc: Exception) -> str | int:
        """The name of the error's ``NVML_ERROR_*`` constant in the module that raised it (its
        number where that module has no name for it)."""
        code = getattr(exc, "value", None)
        module = sys.modules.get(type(exc).__module__)
        names = sorted(n for n in dir(module)
                       if n.startswith("NVML_ERROR_") and getattr(module, n) == code)
        return names[0] if names else code

    def _place(self, name: str, args: tuple[Any, ...], value: Any,
               target: dict[str, Any] | None, extra: tuple[Any, ...]) -> None:
        failed = isinstance(value, dict) and "nvml_error" in value
        if name == "nvmlDeviceGetHandleByIndex":
            devices = self.recording.setdefault("devices", [])
            while len(devices) <= args[0]:
                devices.append({})
            if failed:
                devices[args[0]][name] = value
            else:
                self._slots[_address(value)] = devices[args[0]]
        elif name == "nvmlDeviceGetMigDeviceHandleByIndex":
            if target is None:
                return
            migs = target.setdefault("mig_devices", [])
            while len(migs) <= args[1]:
                migs.append({})
            if failed:
                migs[args[1]] = value
            else:
                self._slots[_address(value)] = migs[args[1]]
        elif target is not None and name not in _UNRECORDED:
            answer = value if failed else plain(value)
            if extra:
                target.setdefault(name, {})[self._argument_key(name, extra[0])] = answer
            else:
                target[name] = answer

    def _argument_key(self, name: str, argument: Any) -> str:
        if "Clock" in name:
            for clock in CLOCK_TYPES:
                if getattr(self._nvml, clock, None) == argument:
                    return clock
        return str(argument)


def _guarded(call: Callable[..., Any], *args: Any) -> Any:
    """One call; its error is already in the recording, so here it only means 'no value'."""
    try:
        return call(*args)
    except Exception:  # NVMLError, or a function this nvidia-ml-py lacks
        return None


def _sweep_device(nvml: Recorder, index: int) -> None:
    handle = _guarded(nvml.call, "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return
    # hasattr: a name this nvidia-ml-py lacks stays out of the recording, as the replayer expects
    for name in DEVICE_CALLS:
        if hasattr(nvml, name):
            _guarded(nvml.call, name, handle)
    for clock in CLOCK_TYPES:
        if hasattr(nvml, clock):
            _guarded(nvml.call, "nvmlDeviceGetMaxClockInfo", handle, getattr(nvml, clock))
    mode = _guarded(nvml.call, "nvmlDeviceGetMigMode", handle)
    if not mode or mode[0] != _MIG_ENABLED:
        return
    for slot in range(_guarded(nvml.call, "nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
        mig = _guarded(nvml.call, "nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
        for name in MIG_CALLS if mig is not None else ():
            if hasattr(nvml, name):
                _guarded(nvml.call, name, mig)


def record(nvml: Any, probe: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Every answer of the sweep, then of ``probe(recorder)`` (the fingerprint's NVML probe),
    whose section is kept as ``_fingerprint_gpu``: what a replay of the recording must give
    back in this process's environment."""
    recorder = Recorder(nvml)
    try:
        recorder.call("nvmlInit")
    except Exception:  # recorded: the file says why there is nothing else
        if probe is not None:
            recorder.recording["_fingerprint_gpu"] = plain(probe(recorder))
        return recorder.recording
    try:
        for name in SYSTEM_CALLS:
            if hasattr(nvml, name):
                _guarded(recorder.call, name)
        for index in range(_guarded(recorder.call, "nvmlDeviceGetCount") or 0):
            _sweep_device(recorder, index)
        if probe is not None:
            recorder.recording["_fingerprint_gpu"] = plain(probe(recorder))
    finally:
        _guarded(recorder.call, "nvmlShutdown")
    return recorder.recording


def fake_identifiers(recording: dict[str, Any]) -> dict[str, Any]:
    """The recording with the n-th GPU's UUID and serial, and its MIG devices' UUIDs, replaced by
    stable fakes, wherever they occur (a MIG UUID of the old form holds its GPU's UUID)."""
    fakes: dict[str, str] = {}
    serials: dict[str, str] = {}
    for n, device in enumerate(recording.get("devices", []), start=1):
        for j, mig in enumerate(device.get("mig_devices", []), start=1):
            if isinstance(mig.get("nvmlDeviceGetUUID"), str):
                fakes[mig["nvmlDeviceGetUUID"]] = f"MIG-00000000-0000-0000-{n:04d}-{j:012d}"
        if isinstance(device.get("nvmlDeviceGetUUID"), str):
            fakes[device["nvmlDeviceGetUUID"]] = f"GPU-00000000-0000-0000-0000-{n:012d}"
        if isinstance(device.get("nvmlDeviceGetSerial"), str):
            serials[device["nvmlDeviceGetSerial"]] = f"{n:05d}"

    def replace(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        if isinstance(value, str):
            if value in serials:  # a whole string only: digits may occur inside other values
                return serials[value]
            for real in sorted(fakes, key=len, reverse=True):
                value = value.replace(real, fakes[real])
        return value

    return replace(recording)


def _about(recording: dict[str, Any]) -> str:
    init = recording.get("nvmlInit")
    if isinstance(init, dict) and "nvml_error" in init:
        return f"NVML on a machine where nvmlInit fails with {init['nvml_error']}."
    names = sorted({str(d.get("nvmlDeviceGetName")) for d in recording.get("devices", [])})
    return (f"NVML answers of {len(recording.get('devices', []))} GPU(s) ({', '.join(names)}), "
            f"driver {recording.get('nvmlSystemGetDriverVersion')}, recorded by "
            "tools/record_nvml.py; UUIDs and serials replaced by fakes.")


def _probe() -> Callable[[Any], Any] | None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from envaudit.fingerprint import gpu
    except ImportError:
        return None
    return gpu.probe


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/record_nvml.py OUT.json", file=sys.stderr)
        return 2
    try:
        import pynvml
    except ImportError:
        print("nvml recording: unavailable: nvidia-ml-py is not installed here; nothing written")
        return 0
    probe = _probe()
    recording = fake_identifiers(record(pynvml, probe))
    recorded = {"tool": "tools/record_nvml.py", "nvidia-ml-py": metadata.version("nvidia-ml-py"),
                "with_the_fingerprint_probe": probe is not None}
    document = {"_about": _about(recording), "_recorded_with": recorded, **recording}
    Path(argv[0]).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    init = recording.get("nvmlInit")
    if isinstance(init, dict) and "nvml_error" in init:
        reason = pynvml.NVMLError(getattr(pynvml, init["nvml_error"], 0))
        print(f"nvml recording: unavailable: NVML: {reason}; wrote that answer to {argv[0]}")
    else:
        devices = recording.get("devices", [])
        migs = sum(1 for d in devices for m in d.get("mig_devices", []) if "nvml_error" not in m)
        print(f"nvml recording: ok: {len(devices)} GPU(s), {migs} MIG device(s), "
              f"driver {recording.get('nvmlSystemGetDriverVersion')}, written to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
