"""Replays a recording of NVML's answers (tests/data/nvml/*.json) as a stand-in ``pynvml`` module.

``FakeNVML`` answers like the ``pynvml`` module of nvidia-ml-py (same function names, same return
shapes, the real ``pynvml.NVMLError`` classes and ``NVML_*`` constants) from one recording; the
format is described in tests/data/nvml/README.md and written by tools/record_nvml.py. A call name
missing from the recording is missing from the fake module, as in an older nvidia-ml-py, so the
probe's "missing from this nvidia-ml-py" branch is exercised by leaving a name out.

Handles: a GPU's handle replays as its NVML index (an int), a MIG device's handle as the pair
(GPU index, MIG index). Constraints for the next editor: every recording under tests/data/nvml must
keep loading here (tests/test_nvml_recordings.py replays them all), so extend the format only by
adding keys.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pynvml

RECORDINGS = Path(__file__).parent / "data" / "nvml"
# Calls whose first argument is not a device handle.
_SYSTEM_CALLS = {"nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetHandleByUUID"}
# pynvml answers these with a tuple; every other pair or list comes back as a list.
_TUPLE_CALLS = {"nvmlDeviceGetCudaComputeCapability"}
# Calls answered from the handles themselves (a GPU without ``mig_devices`` answers Not Supported).
_MIG_CALLS = {"nvmlDeviceGetMigDeviceHandleByIndex", "nvmlDeviceIsMigDeviceHandle",
              "nvmlDeviceGetDeviceHandleFromMigDeviceHandle"}


def load_recording(name: str | Path) -> dict[str, Any]:
    return json.loads((RECORDINGS / name).read_text(encoding="utf-8"))


def nvml_error(answer: Any) -> pynvml.NVMLError | None:
    """The error a recorded answer stands for (``{"nvml_error": "NVML_ERROR_..."}`` or the
    error's number), or None when the answer is a value."""
    if not (isinstance(answer, dict) and "nvml_error" in answer):
        return None
    code = answer["nvml_error"]
    return pynvml.NVMLError(getattr(pynvml, code) if isinstance(code, str) else int(code))


def _value(name: str, answer: Any) -> Any:
    """A recorded value in the shape pynvml returns it."""
    if name in _TUPLE_CALLS:
        return tuple(answer)
    if isinstance(answer, dict):  # a ctypes structure: its fields as attributes
        return types.SimpleNamespace(**answer)
    return answer


def _by_argument(answer: dict[str, Any], argument: Any) -> Any:
    """The answer to a call with one more argument: keyed by the constant's name (clock types),
    else by the argument written as text."""
    for key, value in answer.items():
        if key.startswith("NVML_") and getattr(pynvml, key, None) == argument:
            return value
    return answer[str(argument)]


class FakeNVML:
    """A pynvml stand-in that replays one recording and logs the calls it gets."""

    NVMLError = pynvml.NVMLError

    def __init__(self, recording: dict[str, Any]) -> None:
        self._recording = recording
        self.calls: list[str] = []

    def _devices(self) -> list[dict[str, Any]]:
        return self._recording.get("devices", [])

    def _mig_sets(self) -> list[dict[str, Any]]:
        return [m for d in self._devices() for m in d.get("mig_devices", [])
                if nvml_error(m) is None]

    def _source(self, handle: Any) -> dict[str, Any]:
        if isinstance(handle, tuple):
            return self._devices()[handle[0]]["mig_devices"][handle[1]]
        return self._devices()[handle]

    def _recorded(self, name: str) -> bool:
        if name in _MIG_CALLS or name in ("nvmlDeviceGetHandleByIndex",
                                          "nvmlDeviceGetHandleByUUID"):
            return "devices" in self._recording
        if name.startswith("nvmlDevice") and name not in _SYSTEM_CALLS:
            return any(name in answers for answers in self._devices() + self._mig_sets())
        return name in self._recording

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("NVML_", "NVMLError_")):
            return getattr(pynvml, name)
        if not name.startswith("nvml") or not self._recorded(name):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")

        def call(*args: Any) -> Any:
            self.calls.append(name)
            return self._answer(name, args)

        return call

    def _answer(self, name: str, args: tuple[Any, ...]) -> Any:
        if name in _MIG_CALLS or name in ("nvmlDeviceGetHandleByIndex",
                                          "nvmlDeviceGetHandleByUUID"):
            return self._handle(name, args)
        if name.startswith("nvmlDevice") and name not in _SYSTEM_CALLS:
            source = self._source(args[0])
            if name not in source:
                raise LookupError(f"the recording has no answer to {name} for handle {args[0]}")
            answer = source[name]
            if len(args) > 1 and nvml_error(answer) is None:
                answer = _by_argument(answer, args[1])
        else:
            answer = self._recording[name]
        error = nvml_error(answer)
        if error is not None:
            raise error
        return _value(name, answer)

    def _handle(self, name: str, args: tuple[Any, ...]) -> Any:
        if name == "nvmlDeviceGetHandleByIndex":
            if not 0 <= args[0] < len(self._devices()):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            error = nvml_error(self._devices()[args[0]].get(name))
            if error is not None:
                raise error
            return args[0]
        if name == "nvmlDeviceIsMigDeviceHandle":
            return isinstance(args[0], tuple)
        if name == "nvmlDeviceGetDeviceHandleFromMigDeviceHandle":
            return args[0][0]
        if name == "nvmlDeviceGetHandleByUUID":
            uuid = args[0].decode() if isinstance(args[0], bytes) else args[0]
            for index, device in enumerate(self._devices()):
                if device.get("nvmlDeviceGetUUID") == uuid:
                    return index
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        if isinstance(args[0], tuple):  # a MIG device has no MIG devices of its own
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        migs = self._devices()[args[0]].get("mig_devices")
        if migs is None:  # a GPU without MIG mode enabled
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= args[1] < len(migs):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        error = nvml_error(migs[args[1]])
        if error is not None:
            raise error
        return (args[0], args[1])
