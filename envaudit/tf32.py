"""TF32 as envaudit's own setting: the option, the state a run recorded, and what a check makes
of the golden's state and its own.

TensorFlow decides TF32 (fp32 matrix products and convolutions on tensor cores, with 10-bit
mantissas) by one process-wide switch, ``tf.config.experimental.enable_tensor_float_32_execution``
(on by default), not by an environment variable: ``TF_ENABLE_TF32`` and the
``TF_ENABLE_*_TENSOR_OP_MATH_FP32`` names are not read by current TensorFlow, and
``NVIDIA_TF32_OVERRIDE`` can only force it off (``envaudit/settings.py``). envaudit's ``--tf32
on|off|default`` sets that switch before any TensorFlow op runs (``workload/tf32_switch.py``;
``default`` leaves TensorFlow's own choice), in the check, the recording and every re-run child,
and records the effective state with whether it applies here: only a GPU of compute capability 8.0
or more (Ampere and later) has TF32 tensor cores, so on the CPU it is "not applicable".

Constraints: plain data and decisions, no TensorFlow (the store validates a manifest's ``tf32``
with ``manifest_problem`` before anything is imported; a bundle is someone else's data, so what it
says is checked strictly and can only ever lead to a re-run with TF32 *off*). Renderers show
``Tf32Check.line`` when ``Tf32Check.shown``; they decide nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Change

if TYPE_CHECKING:
    from envaudit.compare.types import TensorComparison
    from envaudit.fingerprint.types import Fingerprint

Tf32Option = Literal["default", "on", "off"]
OPTIONS: tuple[Tf32Option, ...] = get_args(Tf32Option)
Effective = Literal["on", "off", "not_applicable"]
# Ampere (compute capability 8.0) is the first NVIDIA architecture with TF32 tensor cores; on an
# older GPU TensorFlow computes fp32 in full precision whatever the switch says.
MIN_CAPABILITY = (8, 0)
NO_GPU = "not applicable: no GPU computed an array"

# The synthetic change a check ranks and confirms when TF32 explains lost precision on a GPU: a
# path of its own (not the TensorFlow install's group), the kernel families TF32 moves (cuBLAS
# matrix products, cuDNN convolutions) and reduced precision.
TF32_PATH = "tensorflow.tf32"
TF32_CATEGORY = "tf32"
TF32_FAMILIES = frozenset({"conv", "matmul", "precision"})
TF32_WHY = ("TensorFlow's TF32 switch lets fp32 matrix products and convolutions run on tensor"
            " cores with 10-bit mantissas")

_GPU = re.compile(r"GPU:\d{1,3}")
_CAPABILITY = re.compile(r"(\d{1,2})\.(\d{1,2})")
_MANIFEST_KEYS = ["enabled", "gpus", "option"]


def capability_at_least(capability: str | None, least: tuple[int, int] = MIN_CAPABILITY) -> bool:
    match = _CAPABILITY.fullmatch(capability or "")
    return bool(match) and (int(match.group(1)), int(match.group(2))) >= least


@dataclass(frozen=True)
class Tf32State:
    """What one run had: the option asked for, TensorFlow's switch as it computed
    (``tensor_float_32_execution_enabled()``), the GPUs that computed its arrays with their
    compute capability (None: unknown), and what follows from them."""

    option: Tf32Option
    enabled: bool
    gpus: Mapping[str, str | None]  # "GPU:0" -> "8.0"; empty: no GPU computed an array
    applies: bool  # a GPU with TF32 tensor cores computed an array
    effective: Effective  # the switch where it applies, else "not_applicable"
    reason: str  # why it applies or not, in words

    def to_manifest(self) -> dict[str, Any]:
        """The bundle manifest's ``tf32``: what was read; the rest follows from it on reading."""
        return {"option": self.option, "enabled": self.enabled, "gpus": dict(self.gpus)}

    @property
    def words(self) -> str:
        return "not applicable" if self.effective == "not_applicable" else self.effective


def decide(option: Tf32Option, enabled: bool, computed_on: Iterable[str],
           capabilities: Mapping[str, str | None],
           fallback: Sequence[str] = ()) -> Tf32State:
    """The state of a run whose arrays were computed on ``computed_on`` (``CPU:0``, ``GPU:0``)
    with TensorFlow's switch ``enabled``. ``capabilities``: each GPU's compute capability as
    TensorFlow reported it; ``fallback``: the NVML fingerprint's, used when TensorFlow said nothing
    and every GPU of the machine has the same one (the only case where it cannot be the wrong
    GPU's)."""
    distinct = set(fallback)
    shared = next(iter(distinct)) if len(distinct) == 1 else None
    gpus = {d: capabilities.get(d) or shared for d in sorted(set(computed_on)) if _GPU.fullmatch(d)}
    return _state(option, enabled, gpus)


def _state(option: Tf32Option, enabled: bool, gpus: Mapping[str, str | None]) -> Tf32State:
    tensor_cores = [d for d, cc in gpus.items() if capability_at_least(cc)]
    if not gpus:
        reason = NO_GPU
    elif tensor_cores:
        reason = "applies: " + ", ".join(f"{d} has compute capability {gpus[d]}"
                                         for d in tensor_cores)
    else:
        reason = ("not applicable: " + ", ".join(
            f"{d} has compute capability {cc or 'unknown'}" for d, cc in gpus.items())
            + f" (TF32 needs {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]})")
    applies = bool(tensor_cores)
    effective: Effective = ("on" if enabled else "off") if applies else "not_applicable"
    return Tf32State(option, enabled, dict(gpus), applies, effective, reason)


def require_option(option: str) -> None:
    """Refuses an option that is not ``on``, ``off`` or ``default`` (the public API's callers)."""
    if option not in OPTIONS:
        raise EnvauditError(f"--tf32 {option!r} is not one of {', '.join(OPTIONS)}")


def manifest_problem(value: Any) -> str | None:
    """What is wrong with a manifest's ``tf32`` (someone else's data), or None."""
    if not isinstance(value, dict) or sorted(value) != _MANIFEST_KEYS:
        return "'tf32' must hold exactly its option, enabled and gpus"
    if value["option"] not in OPTIONS or not isinstance(value["enabled"], bool):
        return f"'tf32.option' must be one of {', '.join(OPTIONS)} and 'tf32.enabled' true or false"
    gpus = value["gpus"]
    if not isinstance(gpus, dict) or len(gpus) > 64 or not all(
            isinstance(k, str) and _GPU.fullmatch(k)
            and (v is None or isinstance(v, str) and _CAPABILITY.fullmatch(v))
            for k, v in gpus.items()):
        return "'tf32.gpus' must map GPU:N to a compute capability such as \"8.0\", or null"
    return None


def from_manifest(value: Any) -> Tf32State | None:
    """The recorded state of a manifest's ``tf32`` (validated first by the store); None when the
    bundle was recorded before envaudit recorded TF32."""
    if value is None or manifest_problem(value):
        return None
    return _state(value["option"], value["enabled"], value["gpus"])


def fingerprint_capabilities(fingerprint: Fingerprint) -> tuple[str, ...]:
    """Every GPU's compute capability as NVML told the fingerprint (none where it could not)."""
    gpu = fingerprint.data.get("gpu")
    devices = gpu.get("devices") if isinstance(gpu, dict) else None
    if not isinstance(devices, list):
        return ()
    found = (d.get("compute_capability") for d in devices if isinstance(d, dict))
    return tuple(cc for cc in found if isinstance(cc, str) and _CAPABILITY.fullmatch(cc))


@dataclass(frozen=True)
class Tf32Check:
    """The golden's TF32 state beside this run's, and whether a report shows them."""

    golden: Tf32State | None  # None: the golden was recorded before envaudit recorded TF32
    current: Tf32State
    shown: bool  # TF32 applies on either side, or the two effective states differ
    line: str  # the sentence a report shows


def compare_tf32(golden: Tf32State | None, current: Tf32State) -> Tf32Check:
    differs = golden is not None and golden.effective != current.effective
    shown = current.applies or bool(golden and golden.applies) or differs
    here = f"TF32 {current.words} here (--tf32 {current.option}; {_why(current)})"
    there = ("not recorded in the golden" if golden is None else
             f"{golden.words} in the golden (--tf32 {golden.option}; {_why(golden)})")
    return Tf32Check(golden, current, shown, f"{here}, {there}")


def _why(state: Tf32State) -> str:
    """The reason without its verdict ("applies: ", "not applicable: "), which the line says."""
    return state.reason.partition(": ")[2]


def child_arguments(option: Tf32Option) -> tuple[str, ...]:
    """The argument that makes a workload child set TF32 as ``option`` says (none for
    ``default``): ``python -m envaudit.workload`` reads it (``workload/__main__.py``)."""
    return () if option == "default" else (f"--tf32={option}",)


def suspected(check: Tf32Check | None, differing: Sequence[TensorComparison]) -> Change | None:
    """``tensorflow.tf32: 'off' -> 'on'`` (or ``'not applicable' -> 'on'``) when precision was
    lost on arrays a GPU computed, this run had TF32 on and the golden recorded it off or not
    applicable: a change the ranking weighs with reduced precision, and a re-run with TF32 off
    (``attribute/confirm.py``) can confirm."""
    if check is None or check.golden is None or check.current.effective != "on" \
            or check.golden.effective == "on":
        return None
    if not any(a.status == "precision_loss" and (a.device or "").startswith("GPU")
               for a in differing):
        return None
    return Change(TF32_PATH, check.golden.words, "on", TF32_CATEGORY, True, "tensorflow")
