"""Probe: the CPU, its cores and caches, and a normalized list of instruction sets.

The instruction sets decide which kernels oneDNN, Eigen, OpenBLAS and NumPy dispatch to, and so
the order of floating-point operations: ``flags`` keeps every AVX-512 and AMX flag the kernel
reports plus the named SSE/AVX/FMA and ARM SIMD flags, under the kernel's own names, sorted.
Linux facts come from /proc/cpuinfo and sysfs (a few milliseconds). py-cpuinfo is used only where
there is no /proc/cpuinfo: its ``get_cpu_info()`` starts a subprocess and takes about a second.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from envaudit.fingerprint.guard import field, unavailable

CPUINFO = Path("/proc/cpuinfo")
_SYSFS_CPU = Path("/sys/devices/system/cpu")

# Flags named explicitly; every ``avx512*`` and ``amx_*`` flag is kept as well.
_X86_FLAGS = frozenset({
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx_vnni", "avx_vnni_int8", "avx_ne_convert", "avx_ifma",
})
_X86_PREFIXES = ("avx512", "amx_")
_ARM_FLAGS = frozenset({
    "neon", "asimd", "asimdhp", "asimddp", "asimdfhm", "asimdrdm", "fphp",
    "sve", "sve2", "svebf16", "svei8mm", "svef32mm", "svef64mm", "bf16", "i8mm", "sme", "sme2",
})
# ARM "CPU implementer" codes (from the Linux kernel's cputype.h).
_ARM_IMPLEMENTERS = {
    "0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x46": "Fujitsu", "0x48": "HiSilicon",
    "0x4e": "NVIDIA", "0x50": "APM", "0x51": "Qualcomm", "0x61": "Apple", "0xc0": "Ampere",
}


def normalize_flags(raw: set[str] | frozenset[str]) -> list[str]:
    """The numerics-relevant instruction sets among the kernel's flags, sorted."""
    return sorted(
        f for f in raw if f in _X86_FLAGS or f in _ARM_FLAGS or f.startswith(_X86_PREFIXES)
    )


def probe(cpuinfo_path: Path = CPUINFO) -> dict[str, Any]:
    try:
        blocks = _cpuinfo_blocks(cpuinfo_path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return _probe_py_cpuinfo(f"no {cpuinfo_path}")
    first = blocks[0] if blocks else {}
    raw = set((first.get("flags") or first.get("Features") or "").split())
    implementer = first.get("CPU implementer")
    return {
        "source": str(cpuinfo_path),
        "vendor": first.get("vendor_id") or _ARM_IMPLEMENTERS.get(implementer or "", implementer),
        "model_name": first.get("model name") or first.get("Processor") or first.get("CPU part"),
        "family": _int(first.get("cpu family") or first.get("CPU architecture")),
        "model": _int(first.get("model") or first.get("CPU part")),
        "stepping": _int(first.get("stepping") or first.get("CPU revision")),
        "microcode": first.get("microcode"),
        "logical_cores": os.cpu_count(),
        "physical_cores": field(_physical_cores, blocks),
        "usable_cores": field(_usable_cores),
        "caches": field(_caches),
        "flags": normalize_flags(raw),
    }


def raw_flags() -> frozenset[str]:
    """All flags of the first CPU in /proc/cpuinfo (empty when unreadable); cached."""
    return _raw_flags_cached()


@functools.lru_cache(maxsize=1)
def _raw_flags_cached() -> frozenset[str]:
    try:
        blocks = _cpuinfo_blocks(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return frozenset()
    first = blocks[0] if blocks else {}
    return frozenset((first.get("flags") or first.get("Features") or "").split())


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    """One ``{key: value}`` per processor; ARM puts shared keys in a block without ``processor``."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    processors = [b for b in blocks if "processor" in b]
    shared = {k: v for b in blocks if "processor" not in b for k, v in b.items()}
    return [{**shared, **b} for b in processors] or ([shared] if shared else [])


def _int(text: str | None) -> int | str | None:
    """Decimal (x86) or ``0x`` hex (ARM) numbers; anything else stays text."""
    if text is None:
        return None
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return text


def _physical_cores(blocks: list[dict[str, str]]) -> int:
    pairs = {(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}
    if pairs:
        return len(pairs)
    cores = {
        (p / "topology" / "core_cpus_list").read_text().strip()
        for p in _SYSFS_CPU.glob("cpu[0-9]*")
        if (p / "topology" / "core_cpus_list").exists()
    }
    if not cores:
        raise OSError(0, "no 'core id' in /proc/cpuinfo and no sysfs topology")
    return len(cores)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def _caches() -> dict[str, int]:
    """Cache sizes of cpu0 in bytes: ``{"L1d": 49152, "L1i": ..., "L2": ..., "L3": ...}``."""
    caches = {}
    for index in sorted((_SYSFS_CPU / "cpu0" / "cache").glob("index[0-9]*")):
        level = (index / "level").read_text().strip()
        kind = (index / "type").read_text().strip()
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        caches[f"L{level}{suffix}"] = _size_bytes((index / "size").read_text().strip())
    if not caches:
        raise OSError(0, "no cache entries in /sys/devices/system/cpu/cpu0/cache")
    return dict(sorted(caches.items()))


def _size_bytes(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def _probe_py_cpuinfo(why: str) -> dict[str, Any]:
    """Where there is no /proc/cpuinfo (macOS, some sandboxes): py-cpuinfo, slow but portable."""
    try:
        import cpuinfo
    except ImportError:
        return unavailable(f"{why} and py-cpuinfo is not installed")
    info = cpuinfo.get_cpu_info()
    caches = {
        name: info[key]
        for name, key in (("L1d", "l1_data_cache_size"), ("L1i", "l1_instruction_cache_size"),
                          ("L2", "l2_cache_size"), ("L3", "l3_cache_size"))
        if isinstance(info.get(key), int)
    }
    return {
        "source": "py-cpuinfo",
        "vendor": info.get("vendor_id_raw"),
        "model_name": info.get("brand_raw"),
        "family": info.get("family"),
        "model": info.get("model"),
        "stepping": info.get("stepping"),
        "microcode": None,
        "logical_cores": os.cpu_count(),
        "physical_cores": unavailable(f"{why}; py-cpuinfo does not count physical cores"),
        "usable_cores": field(_usable_cores),
        "caches": caches or unavailable("py-cpuinfo reported no cache sizes"),
        "flags": normalize_flags(set(info.get("flags", []))),
    }
