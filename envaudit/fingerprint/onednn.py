"""What oneDNN and TensorFlow make of a CPU: oneDNN's instruction-set levels, the highest one a CPU
has, a cap set by variable, and whether TensorFlow turns oneDNN on by default.

Pure functions over plain data (a fingerprint's ``cpu.flags`` under the Linux kernel's names, and
variable values): no probe, no import of TensorFlow. Read by the summary of a fingerprint
(``summary.py``) and by the confirmation re-runs (``attribute/confirm.py`` caps a CPU's level to
emulate the golden one).

TensorFlow's default, from ``tensorflow/core/util/port.cc`` (``DefaultOneDnnPolicy`` and
``IsMklEnabled``): on Linux x86 oneDNN's custom operations are on when the CPU has AVX512_VNNI,
AVX512_BF16, AVX_VNNI or one of the AMX sets, off otherwise; ``TF_ENABLE_ONEDNN_OPTS`` set to
0/false or 1/true (any case) overrides it, any other value is ignored with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

# oneDNN ISA caps, most capable first, with the CPU flags each needs.
ISA_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AVX512_CORE_AMX", ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16")),
    ("AVX512_CORE_BF16", ("avx512_bf16", "avx512_vnni")),
    ("AVX512_CORE_VNNI", ("avx512_vnni", "avx512f", "avx512bw", "avx512vl")),
    ("AVX512_CORE", ("avx512f", "avx512bw", "avx512vl")),
    ("AVX2_VNNI", ("avx_vnni", "avx2")),
    ("AVX2", ("avx2", "fma")),
    ("AVX", ("avx",)),
    ("SSE41", ("sse4_1",)),
)
# Every level a cap variable may name, least capable first (oneDNN's dnnl_cpu_isa_t order;
# AVX10_1_512 is AVX512_CORE_FP16 renamed). ALL and DEFAULT cap nothing.
CAP_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
             "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512",
             "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
             "AVX10_1_512_AMX_FP16")
CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN reads the first one set
# The CPU features for which TensorFlow turns oneDNN on by default on Linux x86 (kernel names).
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                        "amx_bf16")
SWITCH = "TF_ENABLE_ONEDNN_OPTS"


def max_isa(flags: Sequence[str]) -> str | None:
    """The most capable oneDNN level whose every flag the CPU has (None: not an x86 CPU oneDNN
    knows)."""
    have = set(flags)
    for level, needed in ISA_LEVELS:
        if all(flag in have for flag in needed):
            return level
    return None


def isa_cap(env: dict[str, str]) -> tuple[str, str] | None:
    """(variable, level) of the cap oneDNN reads from ``env``, or None when nothing caps it."""
    for name in CAP_VARIABLES:
        value = env.get(name)
        if isinstance(value, str) and value.strip():
            level = value.strip().upper()
            return None if level in ("ALL", "DEFAULT") else (name, level)
    return None


def effective_isa(flags: Sequence[str], env: dict[str, str]) -> tuple[str | None, str | None]:
    """(the level oneDNN's kernels use, the variable that capped it or None): the CPU's highest
    level, lowered by a cap that names a lower known level."""
    level = max_isa(flags)
    cap = isa_cap(env)
    if cap is None or cap[1] not in CAP_ORDER:
        return level, None
    if level is None or CAP_ORDER.index(cap[1]) < CAP_ORDER.index(level):
        return cap[1], cap[0]
    return level, None


def default_on(flags: Sequence[str], system: str | None, arch: str | None) -> bool | None:
    """Whether TensorFlow turns oneDNN on by default here (None: not a Linux x86 machine, where
    TensorFlow's rule is another one)."""
    if system != "Linux" or arch not in ("x86_64", "AMD64", "i686"):
        return None
    return any(flag in flags for flag in ONEDNN_DEFAULT_FLAGS)


def switched(env: dict[str, str]) -> bool | None:
    """What ``TF_ENABLE_ONEDNN_OPTS`` forces (None: unset, or a value TensorFlow ignores)."""
    value = str(env.get(SWITCH, "")).strip().lower()
    return {"1": True, "true": True, "0": False, "false": False}.get(value)
