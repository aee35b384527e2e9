"""Where a golden was recorded, against where it is checked: ``recorded_elsewhere``.

A golden from another CPU, GPU or TensorFlow build is compared honestly, but most of what the
check then finds is the move to this machine, not a change anyone made. A first check against the
shipped reference (recorded on the maintainers' machine) must say so before anything else, and say
how to get a baseline of this machine. The check decides it once, here, from the two fingerprints;
renderers only show ``RecordedElsewhere.line``.

Constraints: standard library only, reads fingerprints only (never the machine); a field that
either side could not read (an unavailable marker, an absent field) is never claimed as a
difference; the line is one line, whatever the fingerprints hold (a stranger wrote the golden's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.types import Fingerprint

Kind = Literal["cpu", "instruction_sets", "gpu", "tensorflow"]

# What identifies the hardware and the framework build that computed a golden. Not the driver,
# the settings or the packages: those change on one machine, and the change table lists them.
CPU_PATHS = ("cpu.vendor", "cpu.model_name", "cpu.family", "cpu.model")
TENSORFLOW_PATHS = ("tensorflow.distribution", "tensorflow.version",
                    "tensorflow.build_info.cuda_version", "tensorflow.build_info.cudnn_version",
                    "tensorflow.build_info.is_cuda_build", "tensorflow.build_info.is_rocm_build")
# The widest vector instruction set decides which float kernels run; named as vendors name them.
_ISA_TIERS = (("AMX", "amx_"), ("AVX-512", "avx512f"), ("AVX2", "avx2"), ("AVX", "avx"),
              ("SSE4.2", "sse4_2"), ("SVE", "sve"), ("NEON", "asimd"), ("NEON", "neon"))
_LISTED_FLAGS = 3  # flag names in the line before "+N more": the change table lists them all
RECORD_CANARY = "envaudit record"
RECORD_MODEL = "envaudit record --model MODEL --inputs INPUTS"


@dataclass(frozen=True)
class RecordedElsewhere:
    """A golden recorded on other hardware or another TensorFlow build than this machine's."""

    kinds: tuple[Kind, ...]  # what differs, in this order: cpu, instruction_sets, gpu, tensorflow
    paths: tuple[str, ...]  # the fingerprint fields that differ (flags as ``cpu.flags``)
    details: tuple[str, ...]  # one phrase per kind, golden -> current
    advice: str  # the command that records a golden of this machine
    line: str  # the one line every renderer shows first


def recorded_elsewhere(golden: Fingerprint, current: Fingerprint, *, shipped: bool = False,
                       user_model: bool = False) -> RecordedElsewhere | None:
    """How the golden's machine or build differs from this one, or None when it does not (or
    when neither side could read what would tell). ``shipped``: the golden is envaudit's own
    reference bundle; ``user_model``: it is a golden of the user's model (other advice)."""
    kinds: list[Kind] = []
    paths: list[str] = []
    details: list[str] = []
    cpu = [p for p in CPU_PATHS if _differs(golden, current, p)]
    if cpu:
        kinds.append("cpu")
        paths += cpu
        details.append(_cpu_phrase(golden, current))
    flags = _flags_phrase(golden, current)
    if flags:
        kinds.append("instruction_sets")
        paths.append("cpu.flags")
        details.append(flags)
    gpus = _gpus(golden), _gpus(current)
    if None not in gpus and gpus[0] != gpus[1]:
        kinds.append("gpu")
        paths.append("gpu")
        details.append(f"GPU {_gpu_words(gpus[0])} -> {_gpu_words(gpus[1])}")
    tf = [p for p in TENSORFLOW_PATHS if _differs(golden, current, p)]
    if tf:
        kinds.append("tensorflow")
        paths += tf
        details.append(_tensorflow_phrase(golden, current, tf))
    if not kinds:
        return None
    machine = any(k != "tensorflow" for k in kinds)
    where = ("on another machine" if "tensorflow" not in kinds else
             "on another machine and TensorFlow build" if machine else
             "with another TensorFlow build")
    subject = "the shipped reference was" if shipped else "this golden was"
    advice = RECORD_MODEL if user_model else RECORD_CANARY
    line = (f"{subject} recorded {where} ({'; '.join(details)}); for your own baseline, run:"
            f" {advice}")
    return RecordedElsewhere(tuple(kinds), tuple(paths), tuple(details), advice,
                             _one_line(line))


def _known(fingerprint: Fingerprint, path: str) -> Any:
    """The value at ``path``, or None when it is absent or the probe could not read it."""
    value = fingerprint.get(path)
    parent = fingerprint.get(path.rsplit(".", 1)[0]) if "." in path else None
    if value is None or is_unavailable(value) or is_unavailable(parent):
        return None
    return value


def _differs(golden: Fingerprint, current: Fingerprint, path: str) -> bool:
    a, b = _known(golden, path), _known(current, path)
    return a is not None and b is not None and a != b


def _cpu_phrase(golden: Fingerprint, current: Fingerprint) -> str:
    name_g, name_c = (_known(fp, "cpu.model_name") for fp in (golden, current))
    if name_g is not None and name_c is not None and name_g != name_c:
        return f"CPU {name_g} -> {name_c}"
    # The same marketing name (a virtual machine often shows only "AMD EPYC"): the family and
    # model numbers tell the generations apart.
    name = name_g or name_c or _known(golden, "cpu.vendor") or "CPU"
    return f"CPU {name} {_cpu_numbers(golden)} -> {_cpu_numbers(current)}"


def _cpu_numbers(fingerprint: Fingerprint) -> str:
    family, model = (_known(fingerprint, f"cpu.{k}") for k in ("family", "model"))
    return f"family {family} model {model}"


def _flag_set(fingerprint: Fingerprint) -> frozenset[str] | None:
    flags = _known(fingerprint, "cpu.flags")
    if not isinstance(flags, list) or not flags:
        return None
    return frozenset(str(f) for f in flags)


def _tier(flags: frozenset[str]) -> str:
    for name, flag in _ISA_TIERS:
        if any(f == flag or (flag.endswith("_") and f.startswith(flag)) for f in flags):
            return name
    return "baseline"


def _flags_phrase(golden: Fingerprint, current: Fingerprint) -> str | None:
    """The instruction sets in words: the widest on each side when they differ, else which
    flags only one side has."""
    there, here = _flag_set(golden), _flag_set(current)
    if there is None or here is None or there == here:
        return None
    if _tier(there) != _tier(here):
        return f"{_tier(there)} -> {_tier(here)}"
    parts = []
    if there - here:
        parts.append(f"no {_names(there - here)} here")
    if here - there:
        parts.append(f"{_names(here - there)} only here")
    return ", ".join(parts)


def _names(flags: frozenset[str]) -> str:
    ordered = sorted(flags)
    shown = ", ".join(ordered[:_LISTED_FLAGS])
    more = len(ordered) - _LISTED_FLAGS
    return f"{shown} +{more} more" if more > 0 else shown


def _gpus(fingerprint: Fingerprint) -> tuple[str, ...] | None:
    """The GPU models a fingerprint saw, in device order (empty: none), or None when its GPU
    section is absent."""
    section = fingerprint.get("gpu")
    if section is None:
        return None
    if is_unavailable(section) or fingerprint.get("gpu.available") is not True:
        return ()
    devices = fingerprint.get("gpu.devices")
    if not isinstance(devices, list):
        return None
    names = []
    for device in devices:
        name = device.get("name") if isinstance(device, dict) else None
        if not isinstance(name, str):
            return None  # a board that could not be read: nothing to claim
        names.append(name)
    return tuple(names)


def _gpu_words(names: Sequence[str]) -> str:
    if not names:
        return "none"
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)}x {names[0]}"
    return " + ".join(names)


def _tensorflow_phrase(golden: Fingerprint, current: Fingerprint, paths: Sequence[str]) -> str:
    if "tensorflow.version" in paths or "tensorflow.distribution" in paths:
        return f"TensorFlow {_release(golden)} -> {_release(current)}"
    moved = ", ".join(f"{p.rsplit('.', 1)[1]} {_known(golden, p)} -> {_known(current, p)}"
                      for p in paths)
    return f"TensorFlow build {moved}"


def _release(fingerprint: Fingerprint) -> str:
    version = _known(fingerprint, "tensorflow.version")
    distribution = _known(fingerprint, "tensorflow.distribution")
    if distribution and distribution != "tensorflow":
        return f"{version} ({distribution})"
    return str(version)


def _one_line(text: str) -> str:
    """Fingerprint values are a stranger's: a line break in one must not make two lines."""
    return " ".join(text.split())
